"""Finding a task source by its spec: `arithmetic`, `logic_grid?difficulty=3`, `basic_arithmetic?min_terms=2`.

palaestra's own generators win a name they share with reasoning-gym; every other name is looked
up among reasoning-gym's datasets (which needs the `reasoning` extra).
"""

from __future__ import annotations

import functools
from typing import Any

from palaestra.core.registries import parse_options, split_spec
from palaestra.core.registry import EnvError
from palaestra.envs.reasoning.generators import GENERATORS
from palaestra.envs.reasoning.gym import GymSource
from palaestra.envs.reasoning.tasks import GeneratorSource, TaskSource


def parse_task_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`NAME?key=value&...` to the name and its options."""
    name, query = split_spec(str(spec), "?")
    if not name:
        raise EnvError("a task needs a name, e.g. arithmetic or basic_arithmetic?min_terms=2")
    return name, parse_options(query, where=f"task {spec!r}", error=EnvError)


def source_for(task: str, difficulty: int | None = None, options: dict[str, Any] | None = None) -> TaskSource:
    """The task source `task` names (a spec; its own `difficulty=` and options are merged with
    the arguments, the arguments winning)."""
    name, parsed = parse_task_spec(task)
    merged = {**parsed, **(options or {})}
    level = merged.pop("difficulty", None) if difficulty is None else difficulty
    merged.pop("difficulty", None)
    frozen = tuple(sorted((key, tuple(v) if isinstance(v, list) else v) for key, v in merged.items()))
    return _cached_source(name, level, frozen)


@functools.lru_cache(maxsize=128)
def _cached_source(name: str, difficulty: int | None, options: tuple[tuple[str, Any], ...]) -> TaskSource:
    if name in GENERATORS:
        if options:
            keys = ", ".join(repr(key) for key, _ in options)
            raise EnvError(f"task {name}: no option {keys}; palaestra's generators take only difficulty")
        return GeneratorSource(GENERATORS[name], difficulty)
    return GymSource(name, difficulty, dict(options))


__all__ = ["parse_task_spec", "source_for"]
