"""palaestra.envs.web: web and GUI worlds, in a real browser and in a simulated one.

- `web-v0`: tasks on four self-hosted sites (a shop, a forum, a wiki, an admin panel: FastAPI,
  Jinja2, a SQLite database per episode, served on a free 127.0.0.1 port), played in headless
  Chromium and checked by the sites' databases afterwards or by the answer (WebArena-style).
  Options: `site`, `task`, `split`, `max_steps`, `budget`, `screenshot_dir`.
- `weblinx-v0`: the same tasks as a conversation (WebLINX-style): an `instructor` seat (the
  scripted instructor, or any agent) gives the task over several turns and answers questions;
  the `navigator` browses. Scored by element accuracy, intent match and task success.
- `miniwob-v0` and `miniwob:TASK`: MiniWoB++'s own task pages (the `miniwob` package) through
  the same browser layer, with the benchmark's reward.
- `gui_graph-v0`: a simulated app (screens as graph nodes, widgets as edges; no browser), with
  navigation and switch-setting tasks at several sizes, for RL at speed; `gui_solver` plays it
  perfectly.

The browser layer is `palaestra.envs.web.browser` (one Chromium per process, a page per
episode, everything closed on every exit path); observations are `palaestra.envs.web.page`,
actions `palaestra.envs.web.actions`. `palaestra validate web[:TARGET]` plays every gold solution
(`palaestra.envs.web.validation`). Scripted agents (gold script, random clicks, do-nothing, the
instructor, the solvers) are in `palaestra.agents.web`; the scorecard in `palaestra.eval.web`.

Importing this package registers the ids only: Playwright, FastAPI and the sites load when an
env is made (Playwright missing: `pip install 'palaestra[web]'`).
"""

from __future__ import annotations

from palaestra.core.casts import register_family_cast
from palaestra.core.registries import parse_options, split_spec
from palaestra.core.registry import EnvError, EnvSpec, register, register_prefix
from palaestra.core.scorecards import Scorecard, register_family_scorecard
from palaestra.core.validation import register_validator

WEB = "web"
WEB_KIND = "web"
SCORECARD = Scorecard(WEB_KIND, headline="success", scored_seats=("agent", "navigator"))
WEBLINX = "weblinx"
register_family_scorecard(WEB, SCORECARD)
register_family_scorecard(WEBLINX, SCORECARD)
# In the conversational env the learner navigates; the scripted instructor speaks (any agent may).
register_family_cast(WEBLINX, {"learner": ["navigator"], "seats": {"instructor": ["web_instructor"]}})

register(
    "web-v0",
    "palaestra.envs.web.env:WebEnv",
    num_players=1,
    kind="conversation",
    family=WEB,
    scorecard=SCORECARD,
    description="Tasks on self-hosted sites (shop, forum, wiki, admin) in headless Chromium; "
    "checked by the site's database or the answer (site=, task=, split=, budget=).",
)

register(
    "weblinx-v0",
    "palaestra.envs.web.weblinx:WeblinxEnv",
    num_players=2,
    kind="conversation",
    family=WEBLINX,
    scorecard=SCORECARD,
    description="Conversational navigation (WebLINX-style): an instructor gives a site task over "
    "several turns, the navigator browses; element accuracy, intent match, task success.",
)
register(
    "miniwob-v0",
    "palaestra.envs.web.miniwob:MiniWobEnv",
    num_players=1,
    kind="conversation",
    family=WEB,
    scorecard=SCORECARD,
    description="MiniWoB++ task pages (the miniwob package) in Chromium with the benchmark's reward; "
    "20 DOM tasks by seed, or miniwob:TASK for any of the 130.",
)
register(
    "gui_graph-v0",
    "palaestra.envs.web.gui_graph:GuiGraphEnv",
    num_players=1,
    kind="turn-based",
    family=WEB,
    scorecard=SCORECARD,
    description="A simulated app's screen graph (no browser): reach a screen or set a switch "
    "(size=small|medium|large, split=train|test, kinds=navigate,switch).",
)

register_validator(
    WEB,
    "palaestra.envs.web.validation:validate",
    "web tasks: gold scripts in Chromium score 1.0, doing nothing fails (web, web:SITE, web:weblinx, "
    "web:miniwob, web:gui_graph)",
)


def _miniwob_spec(rest: str) -> EnvSpec:
    name, query = split_spec(rest.strip(), "?")
    if not name:
        raise EnvError("miniwob: needs a task name, e.g. miniwob:click-button")
    options = parse_options(query, where=f"miniwob:{rest}", error=EnvError)
    return EnvSpec(
        id=f"miniwob:{rest.strip()}",
        entry_point="palaestra.envs.web.miniwob:MiniWobEnv",
        kwargs={"task": name, **options},
        num_players=1,
        kind="conversation",
        family=WEB,
        description=f"MiniWoB++ task {name}",
        scorecard=SCORECARD,
    )


register_prefix(
    "miniwob",
    _miniwob_spec,
    "a MiniWoB++ task page in Chromium: miniwob:<task>[?reward=raw|original|binary&max_steps=N], "
    "e.g. miniwob:click-button",
)

__all__ = ["SCORECARD", "WEB", "WEBLINX", "WEB_KIND"]
