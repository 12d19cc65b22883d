"""palaestra.envs.workspace: a living workspace. Coworker tasks over several days on real services
that change on their own, code-repository tasks, time-aware tool use, all reachable over MCP.

Env ids (one seat, `agent`):

- `workspace-v0`: multi-day tasks over files (.xlsx, PDF), mail, calendar and a knowledge base in
  the episode's sandbox folder; the world changes between days (announced or silently); weighted
  checkers per day and at the end (ClawMark, docs/references.md §7). `palaestra.envs.workspace.env`.
- `code-v0`: generated Python repositories of several sizes with a task each (fix a bug, add a
  feature, answer an architecture question); hidden tests decide; tests run in a limited
  subprocess. `palaestra.envs.workspace.code_env`.
- `tictoc-v0`: a user asks about facts over a day while the world clock moves; some facts go
  stale at known times; scored on answers and on re-calling tools exactly when needed (TicToc,
  docs/references.md §5). `palaestra.envs.workspace.tictoc`.

All three take the turn-control options (`turn_policy=fixed|reminders|extensions`, `turn_limit`,
`remind_at`, `extension_turns`, `max_extensions`; `palaestra.envs.workspace.turns`). Every
workspace service and the service domains' tools can be served over MCP
(`palaestra.envs.workspace.mcp_server`, `palaestra mcp serve TARGET`). `palaestra validate
workspace` checks every task (`palaestra.envs.workspace.validation`).

Importing this package registers the ids, the scorecard and the validator; the optional libraries
(openpyxl, pypdf, mcp: `pip install 'palaestra[workspace]'`) load only when used.
"""

from __future__ import annotations

from palaestra.core import scorecards
from palaestra.core.registry import register
from palaestra.core.validation import register_validator

KIND = "workspace"
SCORECARD = scorecards.Scorecard(kind=KIND, headline="success", scored_seats=("agent",))
scorecards.register_family_scorecard("workspace", SCORECARD)

ENVS = {
    "workspace-v0": (
        "palaestra.envs.workspace.env:WorkspaceEnv",
        "multi-day coworker tasks over files, xlsx, PDF, mail, calendar, knowledge base; the world changes",
    ),
    "code-v0": (
        "palaestra.envs.workspace.code_env:CodeEnv",
        "generated Python repositories (a few to a few hundred files): fix, add, explain; hidden tests",
    ),
    "tictoc-v0": (
        "palaestra.envs.workspace.tictoc:TicTocEnv",
        "time-aware tool use: facts go stale as the clock moves; re-call when needed, not otherwise",
    ),
}
for _env_id, (_entry, _description) in ENVS.items():
    register(
        _env_id,
        _entry,
        num_players=1,
        kind="conversation",
        family="workspace",
        description=_description,
        scorecard=SCORECARD,
    )

register_validator(
    "workspace",
    "palaestra.envs.workspace.validation:validate",
    "workspace tasks: gold plans score 1.0 on every day, doing nothing and stale plans fail "
    "(workspace:days|code|tictoc for one world)",
)

__all__ = ["ENVS", "KIND", "SCORECARD"]
