"""`palaestra validate reasoning[:NAME]`: every generator's solver scores 1.0 and no answer fails.

For each of palaestra's generators, each difficulty and both splits, `SEEDS_PER_CELL` seeds: the
task is dealt twice (it must be the same task: deterministic by seed), its question must hash into
its split, the solver's answer (computed from the task's data) must score 1.0, so must the stored
gold answer, an empty answer and every distractor must score 0, and where the task offers
choices the gold must be one of them. `reasoning:NAME` checks one generator or one reasoning-gym
dataset (its own answers through its own scorer; `reasoning:NAME?difficulty=2&...` with options).
Without an argument, three reasoning-gym datasets (`GYM_SAMPLES`) are checked too when the
library is installed.
"""

from __future__ import annotations

from collections.abc import Sequence

from palaestra.core.validation import ValidationCheck, ValidationReport, null_check
from palaestra.envs.reasoning.generators import GENERATORS
from palaestra.envs.reasoning.gym import gym_names
from palaestra.envs.reasoning.sources import parse_task_spec, source_for
from palaestra.envs.reasoning.tasks import SPLITS, TaskSource, split_of

SEEDS_PER_CELL = 12
GYM_SAMPLES = ("basic_arithmetic", "chain_sum", "number_sorting")
GYM_SEEDS = 4


def check_task(source: TaskSource, split: str, seed: int, *, own: bool) -> ValidationCheck:
    """The verdict on one task (see the module docstring)."""
    task = source.task(split, seed)
    try:
        solved = source.solve(task)
        gold = source.score(task, solved)
    except ValueError as exc:
        check = ValidationCheck(task.id, split, gold=None, null=None)
        check.problems.append(f"the solver failed: {exc}")
        return check
    check = null_check(task.id, gold, source.score(task, ""), subset=split)
    if source.task(split, seed) != task:
        check.problems.append("the same seed dealt a different task")
    if source.score(task, task.answer) < 1.0:
        check.problems.append(f"the stored answer {task.answer!r} does not score 1")
    if own:
        if split_of(task.question) != split:
            check.problems.append(f"the question hashes into the other split, not {split}")
        if solved != task.answer:
            check.problems.append(f"the solver says {solved!r}, the generator {task.answer!r}")
        for wrong in source.distractors(task, 3):
            if source.score(task, wrong) > 0:
                check.problems.append(f"the distractor {wrong!r} scores {source.score(task, wrong):g}")
        if task.choices is not None and task.answer not in task.choices:
            check.problems.append("the gold answer is not among the choices")
    check.extra["answer"] = task.answer[:30]
    return check


def validate_reasoning(argument: str, tasks: Sequence[str] | None) -> ValidationReport:
    """The validator behind `palaestra validate reasoning[:NAME]` (`tasks`: only these task ids)."""
    checks: list[ValidationCheck] = []
    if argument:
        name, options = parse_task_spec(argument)
        own = name in GENERATORS
        levels = [options.get("difficulty")] if "difficulty" in options or not own else None
        for level in levels or range(1, GENERATORS[name].levels + 1):
            source = source_for(argument, level)
            seeds = SEEDS_PER_CELL if own else GYM_SEEDS
            checks += [check_task(source, split, seed, own=own) for split in SPLITS for seed in range(seeds)]
    else:
        for name, generator in GENERATORS.items():
            for level in range(1, generator.levels + 1):
                source = source_for(name, level)
                checks += [
                    check_task(source, split, seed, own=True)
                    for split in SPLITS
                    for seed in range(SEEDS_PER_CELL)
                ]
        available = set(gym_names())
        for name in GYM_SAMPLES:
            if name in available:
                source = source_for(name, 1)
                checks += [
                    check_task(source, split, seed, own=False)
                    for split in SPLITS
                    for seed in range(GYM_SEEDS)
                ]
    if tasks:
        wanted = set(tasks)
        checks = [check for check in checks if check.task_id in wanted]
    target = f"reasoning:{argument}" if argument else "reasoning"
    return ValidationReport(target=target, checks=checks)


__all__ = ["GYM_SAMPLES", "SEEDS_PER_CELL", "check_task", "validate_reasoning"]
