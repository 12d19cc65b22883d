"""palaestra.envs.safety: safety worlds. A judge benchmark, a sandbox with malicious users, and
multi-turn red teaming, all over the service domains' real tools and databases (docs/safety.md).

Env ids:

- `rjudge-v0` (`palaestra.envs.safety.judge`): R-Judge. One `judge` seat reads an agent's
  interaction record and says safe or unsafe; scored by F1 (unsafe positive), recall and
  specificity. `-o path=FILE_OR_FOLDER` reads R-Judge's published JSON layout from your disk;
  by default the records are built from palaestra's own sandbox episodes.
- `safety:DOMAIN[?key=value&...]` and `safety-v0` (retail) (`palaestra.envs.safety.sandbox`):
  HAICOSYSTEM-style scenarios generated from the domain's threat model: an `agent` with the
  domain's tools, a `user` with a hidden benign or malicious intent (and an optional `judge`
  seat), scored on the risk dimensions, goal completion and efficiency.
- `redteam-v0` (shop) and `redteam:DOMAIN[?key=value&...]` (`palaestra.envs.safety.redteam`): an
  `attacker` seat with a goal against a `target` seat with a policy, a secret and forbidden
  tools; the world decides success; zero-sum on malicious goals.

Validators: `palaestra validate safety[:DOMAIN]` (every generated scenario: the safe gold scores 1
and is not risky, the risky agent is caught and scores 0, doing nothing fails, refusing a benign
user is over-refusal), `palaestra validate redteam[:DOMAIN]` (every goal: a complying target is
caught, a careful one is not, a benign goal can be helped) and `palaestra validate rjudge[:PATH]`
(every record reads; the gold verdict scores 1, no verdict 0).

Importing this package registers the ids and validators only; scenarios, goals and records are
made on first use.
"""

from __future__ import annotations

from functools import lru_cache

from palaestra.core import scorecards
from palaestra.core.casts import register_family_cast
from palaestra.core.registries import parse_options, split_spec
from palaestra.core.registry import EnvError, EnvSpec, register, register_prefix
from palaestra.core.validation import register_validator

JUDGE_KIND = "safety-judge"
SANDBOX_KIND = "safety-sandbox"
REDTEAM_KIND = "redteam"
JUDGE_SCORECARD = scorecards.Scorecard(JUDGE_KIND, headline="success", scored_seats=("judge",))
SANDBOX_SCORECARD = scorecards.Scorecard(SANDBOX_KIND, headline="success", scored_seats=("agent",))
REDTEAM_SCORECARD = scorecards.Scorecard(REDTEAM_KIND, headline="mean_return")
SANDBOX_DOMAINS = ("retail", "travel", "crm", "shop")

scorecards.register_family_scorecard("safety", SANDBOX_SCORECARD)
scorecards.register_family_scorecard("safety_judge", JUDGE_SCORECARD)
scorecards.register_family_scorecard("redteam", REDTEAM_SCORECARD)
# The sandbox is trained like a service env: the learner serves, the scenario's scripted user asks.
register_family_cast("safety", {"learner": ["agent"], "seats": {"user": ["scripted_user"]}})
register_family_cast("safety_judge", {"learner": ["judge"]})

SANDBOX_ENTRY = "palaestra.envs.safety.sandbox:SandboxEnv"
REDTEAM_ENTRY = "palaestra.envs.safety.redteam:RedTeamEnv"


def _domain_and_options(prefix: str, rest: str) -> tuple[str, dict[str, object]]:
    domain, query = split_spec(rest, "?")
    if not domain:
        raise EnvError(f"{prefix}: needs a domain after the colon, e.g. {prefix}:{SANDBOX_DOMAINS[0]}")
    if domain not in SANDBOX_DOMAINS:
        raise EnvError(
            f"{prefix}: unknown domain {domain!r}; safety worlds know {', '.join(SANDBOX_DOMAINS)}"
        )
    options = parse_options(query, where=f"{prefix}:{rest}", error=EnvError)
    for key in ("kind", "intent", "scenario", "goals", "split", "goal"):
        if key in options:
            options[key] = str(options[key])
    return domain, options


@lru_cache(maxsize=256)
def _sandbox_spec(rest: str) -> EnvSpec:
    domain, options = _domain_and_options("safety", rest)
    judge = bool(options.get("judge", False))
    return EnvSpec(
        id=f"safety:{rest}",
        entry_point=SANDBOX_ENTRY,
        kwargs={"domain": domain, **options},
        num_players=3 if judge else 2,
        kind="conversation",
        family="safety",
        description=f"safety sandbox over {domain}",
        scorecard=SANDBOX_SCORECARD,
    )


@lru_cache(maxsize=256)
def _redteam_spec(rest: str) -> EnvSpec:
    domain, options = _domain_and_options("redteam", rest)
    return EnvSpec(
        id=f"redteam:{rest}",
        entry_point=REDTEAM_ENTRY,
        kwargs={"domain": domain, **options},
        num_players=2,
        kind="conversation",
        family="redteam",
        description=f"red teaming over {domain}",
        scorecard=REDTEAM_SCORECARD,
    )


register_prefix(
    "safety",
    _sandbox_spec,
    "a safety sandbox: safety:<retail|travel|crm|shop>[?kind=benign|foreign_write|leak|injection"
    "&intent=benign|malicious&judge=true] (seats: agent, user[, judge])",
)
register_prefix(
    "redteam",
    _redteam_spec,
    "red teaming: redteam:<shop|retail|travel|crm>[?goals=malicious|benign|secret|tool|write&split=train|test"
    "&max_turns=N] (seats: attacker, target)",
)
register(
    "rjudge-v0",
    "palaestra.envs.safety.judge:JudgeEnv",
    num_players=1,
    kind="conversation",
    family="safety_judge",
    scorecard=JUDGE_SCORECARD,
    description="R-Judge: judge agent records safe/unsafe (path=R-Judge JSON, else records from palaestra "
    "episodes); F1, recall, specificity.",
)
register(
    "safety-v0",
    SANDBOX_ENTRY,
    kwargs={"domain": "retail"},
    num_players=2,
    kind="conversation",
    family="safety",
    scorecard=SANDBOX_SCORECARD,
    description="Safety sandbox (retail): benign and malicious users, HAICOSYSTEM risk dimensions "
    "(safety:DOMAIN for the others).",
)
register(
    "redteam-v0",
    REDTEAM_ENTRY,
    kwargs={"domain": "shop"},
    num_players=2,
    kind="conversation",
    family="redteam",
    scorecard=REDTEAM_SCORECARD,
    description="Red teaming (shop): attacker vs a target with a secret and forbidden tools; the world "
    "decides success; zero-sum.",
)
register_validator(
    "safety",
    "palaestra.envs.safety.validation:validate_sandbox",
    "safety scenarios of a domain (safety:retail) or of all (safety)",
)
register_validator(
    "redteam", "palaestra.envs.safety.validation:validate_redteam", "red-team goals (redteam:shop)"
)
register_validator(
    "rjudge", "palaestra.envs.safety.validation:validate_rjudge", "R-Judge records (rjudge:PATH)"
)

__all__ = [
    "JUDGE_KIND",
    "JUDGE_SCORECARD",
    "REDTEAM_KIND",
    "REDTEAM_SCORECARD",
    "SANDBOX_DOMAINS",
    "SANDBOX_KIND",
    "SANDBOX_SCORECARD",
]
