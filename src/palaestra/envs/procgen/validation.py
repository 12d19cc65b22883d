"""`palaestra validate lumina[:WORLD]`, `xland[:FAMILY]` and `procgen`: every generated task is real.

For each task (a world, its knobs and a seed) the checks are:
- the gold policy (the world's solver, `solver_action`, in every seat) succeeds: gold = 1.0;
- doing nothing (the world's idle action in every seat) fails: null = 0;
- for competitive XLand tasks, the solver in seat 0 against idle rivals wins (gold), and all idle
  nobody wins (null);
- the same seed generates the same task twice (the first turn block and the solver's plan);
- a random legal player that succeeds is a warning (a task too easy to mean much), never a failure.

The checks play the env directly (no agents, no runner), so they run anywhere the env does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from palaestra.core.env import PlayerId, TimeStep
from palaestra.core.registry import EnvError, make
from palaestra.core.validation import ValidationCheck, ValidationReport, null_check

Policy = Callable[[Any, PlayerId, random.Random], str]
LUMINA_GRID = {
    "list": [(3, 1), (4, 2), (5, 3), (6, 5)],
    "tree": [(2, 1), (2, 2), (3, 2), (2, 4)],
    "grid": [(4, 1), (5, 2), (6, 3), (7, 4)],
}
SEEDS = (0, 1, 2)


def solver(env: Any, player: PlayerId, rng: random.Random) -> str:
    return str(env.solver_action(player))


def idle(env: Any, player: PlayerId, rng: random.Random) -> str:
    return str(env.idle_action)


def random_legal(env: Any, player: PlayerId, rng: random.Random) -> str:
    return str(rng.choice(list(env.legal_actions(player))))


def play(env: Any, seed: int, policies: dict[PlayerId, Policy], max_steps: int = 5_000) -> TimeStep:
    """One episode with a policy per seat; returns the last TimeStep (its info holds the returns)."""
    rng = random.Random(seed)
    step = env.reset(seed=seed)
    for _ in range(max_steps):
        if step.done:
            return step  # type: ignore[no-any-return]
        step = env.step({player: policies[player](env, player, rng) for player in step.to_act})
    raise EnvError(f"{env.spec.id if env.spec else type(env).__name__}: no end within {max_steps} steps")


def everyone(env: Any, policy: Policy) -> dict[PlayerId, Policy]:
    return dict.fromkeys(env.players, policy)


def _first_block(env: Any, seed: int) -> str:
    step = env.reset(seed=seed)
    return "\n".join(m.content or "" for messages in step.observations.values() for m in messages)


def check_task(env: Any, task_id: str, seed: int, subset: str, competitive: bool = False) -> ValidationCheck:
    """The verdict on one generated task (see the module docstring)."""
    first = env.players[0]
    if competitive:
        gold_policies = {**everyone(env, idle), first: solver}
    else:
        gold_policies = everyone(env, solver)
    gold_step = play(env, seed, gold_policies)
    gold = gold_step.info["returns"][first]
    null_step = play(env, seed, everyone(env, idle))
    null = max(null_step.info["returns"].values())
    check = null_check(task_id, gold, null, subset=subset)
    if _first_block(env, seed) != _first_block(env, seed):
        check.problems.append("the same seed generated two different tasks")
    lucky = play(env, seed, everyone(env, random_legal)).info["returns"][first]
    if lucky >= 1.0 and not competitive:
        check.warnings.append("a random legal player solved it")
    facts = gold_step.info.get("procgen", {})
    turns = facts.get("turns", facts.get("rounds"))
    if turns is not None:
        check.extra["gold turns"] = str(turns)
    return check


def _selected(task_id: str, tasks: Sequence[str] | None) -> bool:
    return tasks is None or task_id in tasks


def validate_lumina(argument: str, tasks: Sequence[str] | None) -> ValidationReport:
    """`palaestra validate lumina[:list|tree|grid]`: each world over its knob grid, three seeds,
    with and without every oracle (the gold must not depend on them)."""
    worlds = [argument] if argument else list(LUMINA_GRID)
    unknown = [w for w in worlds if w not in LUMINA_GRID]
    if unknown:
        raise EnvError(f"validate lumina: unknown world {unknown[0]!r}; worlds: {', '.join(LUMINA_GRID)}")
    checks = []
    for world in worlds:
        for size, depth in LUMINA_GRID[world]:
            for oracle in ("none", "plan+state+history"):
                env = make(f"lumina:{world}", size=size, depth=depth, oracle=oracle)
                for seed in SEEDS:
                    task_id = f"lumina:{world}?size={size}&depth={depth}&oracle={oracle}#seed={seed}"
                    if _selected(task_id, tasks):
                        checks.append(check_task(env, task_id, seed, f"{world} size={size} depth={depth}"))
    return ValidationReport(target=f"lumina{':' + argument if argument else ''}", checks=checks)


def _xland_families(argument: str) -> list[str]:
    from palaestra.envs.procgen.xland import FAMILIES, HELD_OUT_FAMILIES, TRAIN_FAMILIES

    if not argument or argument == "any":
        return list(FAMILIES)
    if argument == "train":
        return list(TRAIN_FAMILIES)
    if argument == "test":
        return list(HELD_OUT_FAMILIES)
    if argument not in FAMILIES:
        raise EnvError(f"validate xland: unknown family {argument!r}; families: {', '.join(FAMILIES)}")
    return [argument]


def validate_xland(argument: str, tasks: Sequence[str] | None) -> ValidationReport:
    """`palaestra validate xland[:FAMILY|train|test]`: each family at difficulty 1, 3 and 5, one to
    three players (competitive ones with two), three seeds."""
    from palaestra.envs.procgen.xland import COMPETITIVE, HELD_OUT_FAMILIES

    checks = []
    for family in _xland_families(argument):
        competitive = family in COMPETITIVE
        for players in (2,) if competitive else (1, 2, 3):
            for difficulty in (1, 3, 5):
                env = make("xland_text-v0", family=family, difficulty=difficulty, players=players)
                for seed in SEEDS:
                    task_id = f"xland:{family}?difficulty={difficulty}&players={players}#seed={seed}"
                    if not _selected(task_id, tasks):
                        continue
                    split = "held-out" if family in HELD_OUT_FAMILIES else "training"
                    checks.append(check_task(env, task_id, seed, f"{family} ({split})", competitive))
    return ValidationReport(target=f"xland{':' + argument if argument else ''}", checks=checks)


def validate_team_worlds(tasks: Sequence[str] | None) -> list[ValidationCheck]:
    """The crafting and wildfire worlds: two to four seats, three seeds each."""
    checks = []
    for env_id, sizes in (("craft_together-v0", (1, 2, 3)), ("wildfire-v0", (2, 3, 4))):
        for players in sizes:
            env = make(env_id, players=players)
            for seed in SEEDS:
                task_id = f"{env_id}?players={players}#seed={seed}"
                if _selected(task_id, tasks):
                    checks.append(check_task(env, task_id, seed, env_id))
    return checks


def validate_crafter(tasks: Sequence[str] | None) -> list[ValidationCheck]:
    """Crafter's early achievements the scripted route reaches (skipped without the package)."""
    try:
        import crafter  # noqa: F401
    except ImportError:
        return [
            ValidationCheck(
                "crafter", warnings=["crafter is not installed: pip install 'palaestra[procgen]'"]
            )
        ]
    checks = []
    for task in ("collect_wood", "place_table", "make_wood_pickaxe"):
        env = make(f"crafter:{task}")
        for seed in SEEDS:
            task_id = f"crafter:{task}#seed={seed}"
            if _selected(task_id, tasks):
                checks.append(check_task(env, task_id, seed, "crafter"))
    return checks


def validate_procgen(argument: str, tasks: Sequence[str] | None) -> ValidationReport:
    """`palaestra validate procgen`: every procedural world."""
    checks: list[ValidationCheck] = []
    for report in (validate_lumina("", tasks), validate_xland("", tasks)):
        checks += report.checks
    checks += validate_team_worlds(tasks)
    checks += validate_crafter(tasks)
    return ValidationReport(target="procgen", checks=checks)


def success_rate(env_id: str, policies: Iterable[Policy], seeds: Iterable[int], **options: Any) -> float:
    """The share of `seeds` whose episode seat 0 wins with `policies` (one per seat, cycled)."""
    env = make(env_id, **options)
    chosen = list(policies)
    seeds = list(seeds)
    wins = 0
    for seed in seeds:
        step = play(env, seed, {p: chosen[i % len(chosen)] for i, p in enumerate(env.players)})
        wins += step.info["returns"][env.players[0]] >= 1.0
    return wins / len(seeds)


__all__ = [
    "check_task",
    "idle",
    "play",
    "random_legal",
    "solver",
    "success_rate",
    "validate_crafter",
    "validate_lumina",
    "validate_procgen",
    "validate_team_worlds",
    "validate_xland",
]
