"""`palaestra validate workspace[:days|code|tictoc]`: model-free self-checks of every workspace task.

- `days` (workspace-v0): the gold plan scores 1.0 on every day and at the end; doing nothing
  fails; the stale plan (never re-reading what it read on an earlier day) fails a checker that
  the gold plan passes, on a day after the first change (every task is a living world); the
  always-re-read plan scores 1.0 as well (re-reading costs turns, never correctness); each
  world change applies cleanly.
- `code` (code-v0): the gold patch passes the hidden tests; the empty patch fails them; the gold
  plan scores 1.0 through the env.
- `tictoc` (tictoc-v0): re-calling exactly when needed answers everything right with alignment
  1.0; never re-calling gets answers wrong; doing nothing fails.

With no argument every world is checked. `--task ID` restricts to some task ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from palaestra.core.registry import EnvError
from palaestra.core.validation import ValidationCheck, ValidationReport, null_check
from palaestra.envs.workspace.plans import play_plan

WORLDS = ("days", "code", "tictoc")


def _days_check(env: Any, task: Any) -> ValidationCheck:
    options = {"task": task.id}
    try:
        gold = play_plan(env, options, "gold").info
        idle = play_plan(env, options, "idle").info
        stale = play_plan(env, options, "stale").info
        rereads = play_plan(env, options, "rereads").info
    except (ValueError, RuntimeError) as exc:
        check = ValidationCheck(task.id, task.scenario)
        check.problems.append(f"does not play: {exc}")
        return check
    check = null_check(task.id, gold["score"], idle["score"], subset=task.scenario)
    check.extra = {
        "days": str(len(task.stages)),
        "checks": str(len(gold["checks"])),
        "changes": f"{gold['changes']['loud']} loud / {gold['changes']['silent']} silent",
        "stale": f"{stale['score']:.2f}",
        "rereads": f"{rereads['score']:.2f}",
    }
    low = [i + 1 for i, s in enumerate(gold["stage_scores"]) if s < 1.0 - 1e-9]
    if low:
        failed = [c for c in gold["checks"] if not c["passed"]]
        check.problems.append(f"gold scores below 1 on day(s) {low}: {failed[:2]}")
    if gold["final_score"] is not None and gold["final_score"] < 1.0 - 1e-9:
        check.problems.append("gold fails a final check")
    first = gold["first_change_stage"]
    if first is None:
        check.problems.append("the world never changes: a workspace task needs a change between days")
    else:
        caught = [
            c for c in stale["checks"] if not c["passed"] and (c["stage"] == "final" or c["stage"] >= first)
        ]
        if not caught:
            check.problems.append(
                "the stale plan passes every check after the first change: no check sees the change"
            )
        if any(s < 1.0 - 1e-9 for s in stale["stage_scores"][:first]):
            check.warnings.append(
                "the stale plan fails before the first change (its early days should be gold)"
            )
    if rereads["score"] < 1.0 - 1e-9:
        check.problems.append(
            f"the always-re-read plan scores {rereads['score']:g} (re-reading must not hurt)"
        )
    return check


def validate_days(tasks: Sequence[str] | None) -> list[ValidationCheck]:
    from palaestra.envs.workspace.env import WorkspaceEnv
    from palaestra.envs.workspace.tasks import load_tasks, task_by_id

    chosen = [task_by_id(t) for t in tasks] if tasks else list(load_tasks())
    env = WorkspaceEnv(turn_limit=200)
    try:
        return [_days_check(env, task) for task in chosen]
    finally:
        env.close()


def _world_validators() -> dict[str, Callable[[Sequence[str] | None], list[ValidationCheck]]]:
    from palaestra.envs.workspace.code_env import validate_code
    from palaestra.envs.workspace.tictoc import validate_tictoc

    return {"days": validate_days, "code": validate_code, "tictoc": validate_tictoc}


def validate(argument: str, tasks: Sequence[str] | None) -> ValidationReport:
    """The `palaestra validate workspace[:WORLD]` entry point (see the module docstring)."""
    worlds = [argument] if argument else list(WORLDS)
    unknown = [w for w in worlds if w not in WORLDS]
    if unknown:
        raise EnvError(f"workspace validation worlds are {', '.join(WORLDS)}; got {unknown[0]!r}")
    validators = _world_validators()
    checks: list[ValidationCheck] = []
    for world in worlds:
        wanted = None
        if tasks:
            wanted = [t for t in tasks if _world_of(t) == world]
            if not wanted:
                continue
        checks += validators[world](wanted)
    target = f"workspace:{argument}" if argument else "workspace"
    return ValidationReport(target=target, checks=checks)


def _world_of(task_id: str) -> str:
    if task_id.startswith("code-"):
        return "code"
    if task_id.startswith("tictoc-"):
        return "tictoc"
    return "days"


__all__ = ["WORLDS", "validate", "validate_days"]
