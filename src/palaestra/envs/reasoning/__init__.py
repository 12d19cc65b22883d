"""Checkable one-seat reasoning tasks: the single-agent baseline every team is compared with.

`reasoning:NAME[?difficulty=D&split=S&KEY=VALUE...]` is one task per episode for one `solver`
seat (`palaestra.envs.reasoning.env`), NAME one of palaestra's own generators (`arithmetic`,
`largest`, `sorting`, `logic_grid`: short enough for the tiny model; difficulty 1-3) or any
reasoning-gym dataset (`basic_arithmetic`, `knights_knaves`, ...; the `reasoning` extra), scored
by the task's own verifier. `reasoning-v0` is the same env registered by id (task `arithmetic`;
`-o task=sorting -o difficulty=2`). Splits: `split=train` (default) or `split=test`, disjoint
(`palaestra.envs.reasoning.tasks`). Scorecard kind `reasoning` (accuracy with its interval,
`palaestra.eval.teams`); `palaestra validate reasoning` checks every generator.
"""

from __future__ import annotations

import functools
from typing import Any

from palaestra.core.casts import register_family_cast
from palaestra.core.registries import parse_options, split_spec
from palaestra.core.registry import EnvError, EnvSpec, register, register_prefix
from palaestra.core.scorecards import Scorecard, register_family_scorecard
from palaestra.core.validation import register_validator

FAMILY = "reasoning"
SCORECARD = Scorecard(kind="reasoning", headline="success")
ENTRY_POINT = "palaestra.envs.reasoning.env:ReasoningEnv"

register_family_scorecard(FAMILY, SCORECARD)
register_family_cast(FAMILY, {"learner": ["solver"]})


@functools.lru_cache(maxsize=256)
def _reasoning_spec(rest: str) -> EnvSpec:
    from palaestra.envs.reasoning.env import ReasoningEnv

    name, query = split_spec(rest, "?")
    if not name:
        raise EnvError("reasoning: needs a task after the colon, e.g. reasoning:arithmetic?difficulty=2")
    options: dict[str, Any] = parse_options(query, where=f"reasoning:{rest}", error=EnvError)
    ReasoningEnv(task=name, **options)  # an unknown task or a bad option fails here, in one line
    return EnvSpec(
        id=f"reasoning:{rest}",
        entry_point=ENTRY_POINT,
        kwargs={"task": name, **options},
        num_players=1,
        kind="turn-based",
        family=FAMILY,
        description=f"reasoning task {name}",
        scorecard=SCORECARD,
    )


register_prefix(
    "reasoning",
    _reasoning_spec,
    "one checkable task, one solver seat: reasoning:<arithmetic|largest|sorting|logic_grid|a reasoning-gym "
    "dataset>[?difficulty=D&split=train|test&...]",
)
register(
    "reasoning-v0",
    ENTRY_POINT,
    num_players=1,
    kind="turn-based",
    family=FAMILY,
    scorecard=SCORECARD,
    description="One checkable reasoning task for one solver (task=arithmetic|largest|sorting|logic_grid|"
    "a reasoning-gym dataset, difficulty, split=train|test); the single-agent baseline of the team worlds.",
)
register_validator(
    "reasoning",
    "palaestra.envs.reasoning.validation:validate_reasoning",
    "every task generator: its solver scores 1.0, no answer scores 0 (reasoning:NAME for one)",
)
