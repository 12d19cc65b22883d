"""Team worlds: multi-agent teams on checkable reasoning tasks, each member a seat.

Every world deals one task of `palaestra.envs.reasoning` per episode (`task=arithmetic|largest|
sorting|logic_grid|a reasoning-gym dataset`, `difficulty`, `split=train|test`; the same seed deals
the same task as `reasoning:TASK`, the single-agent baseline) and scores the team's final answer
with the task's verifier; every seat gets that score. The worlds (`palaestra.envs.teams.base` for
what they share):

- `debate-v0`: N debaters, R rounds, majority or a judge seat (MAD);
- `dynadebate-v0`: debate with diverse initial paths, a process critic and a verifier tool;
- `critic_loop-v0`: an assistant and a critic (AutoGen-style);
- `malt-v0`: generator -> verifier -> refiner (MALT);
- `agentflow-v0`: planner -> executor (calculator / restricted Python) -> verifier -> generator,
  around an evolving memory (AgentFlow);
- `discussion-v0`: the discussion paradigms `memory`, `report`, `relay`, `debate`;
- `coa:WORLD`: any of them played by one seat in one context (Chain-of-Agents distillation).

Scorecard kind `team` (`palaestra.eval.teams`: accuracy against the members' solo answers,
consensus, answer flips, problem drift, monopolization, cost). Scripted members:
`palaestra.agents.teams`. The default training cast is the learner in every seat (one policy,
role-conditioned prompts); a cast can put it in one role. `palaestra validate teams` plays every
world with gold, silent and wrong members.
"""

from __future__ import annotations

from palaestra.core.casts import register_family_cast
from palaestra.core.registry import EnvSpec, register, register_prefix
from palaestra.core.scorecards import Scorecard, register_family_scorecard
from palaestra.core.validation import register_validator

FAMILY = "teams"
SCORECARD = Scorecard(kind="team", headline="success")
register_family_scorecard(FAMILY, SCORECARD)
register_family_cast(FAMILY, {"learner": "all"})

TEAM_WORLDS: dict[str, tuple[str, int, str, str]] = {
    "debate-v0": (
        "palaestra.envs.teams.debate:DebateEnv",
        3,
        "simultaneous",
        "Multi-agent debate on a checkable task: debaters, rounds, final=majority|judge, "
        "visibility=all|ring|none.",
    ),
    "dynadebate-v0": (
        "palaestra.envs.teams.debate:DynaDebateEnv",
        4,
        "simultaneous",
        "DynaDebate: diverse initial paths, a process critic, a verifier tool "
        "(verify=disagreement|always|never).",
    ),
    "critic_loop-v0": (
        "palaestra.envs.teams.pipelines:CriticLoopEnv",
        2,
        "turn-based",
        "An assistant answers, a critic approves or asks for a revision (AutoGen-style), up to `rounds` "
        "answers.",
    ),
    "malt-v0": (
        "palaestra.envs.teams.pipelines:MaltEnv",
        3,
        "turn-based",
        "MALT: a generator answers, a verifier judges it, a refiner gives the team's answer (passes).",
    ),
    "agentflow-v0": (
        "palaestra.envs.teams.pipelines:AgentFlowEnv",
        4,
        "turn-based",
        "AgentFlow: planner, executor (calculator / restricted Python), verifier, generator; evolving "
        "memory.",
    ),
    "discussion-v0": (
        "palaestra.envs.teams.discussion:DiscussionEnv",
        3,
        "turn-based",
        "A round-robin discussion; paradigm=memory|report|relay|debate; final=majority|last.",
    ),
}
"""id -> (entry point, seats with the default options, kind, description)."""

for _id, (_entry, _seats, _kind, _description) in TEAM_WORLDS.items():
    register(
        _id,
        _entry,
        num_players=_seats,
        kind=_kind,  # type: ignore[arg-type]
        family=FAMILY,
        scorecard=SCORECARD,
        description=_description,
    )


def _coa_spec(rest: str) -> EnvSpec:
    from palaestra.envs.teams.chain import coa_spec

    return coa_spec(rest)


register_prefix(
    "coa",
    _coa_spec,
    "a team world played by one seat in one context (Chain-of-Agents): coa:<debate-v0|malt-v0|...>[?options]",
)
register_validator(
    "teams",
    "palaestra.envs.teams.validation:validate_teams",
    "every team world: gold members score 1.0, silent and wrong members 0 (teams:WORLD for one)",
)
