"""`palaestra validate web[:TARGET]`: every web task's gold solution scores 1.0, doing nothing fails.

Targets:
    web                 every site task (all four sites), in Chromium
    web:SITE            one site's tasks (`shop`, `forum`, `wiki`, `admin`)
    web:weblinx         the conversational tasks: the gold navigator with the scripted instructor
    web:miniwob         the MiniWoB++ tasks that have a scripted solver, with the benchmark's reward
    web:gui_graph       gui_graph-v0 apps of every size: the solver reaches every target, and
                        doing nothing never does

A site task's gold script is played by `tasks.GoldPlayer` through the env, exactly as an agent's
actions would be: an element it cannot find, or an action the env refuses, is a problem. Doing
nothing is answering at once, with nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from palaestra.core.validation import ValidationCheck, ValidationReport, null_check

AGENT = "agent"


def validate(argument: str, tasks: Sequence[str] | None) -> ValidationReport:
    """The validator `palaestra validate web[:TARGET]` calls (see the module docstring)."""
    from palaestra.core.registry import EnvError

    target = argument.strip()
    if target == "miniwob":
        from palaestra.envs.web.miniwob import validate_miniwob

        return validate_miniwob(tasks)
    if target == "gui_graph":
        from palaestra.envs.web.gui_graph import validate_gui_graph

        return validate_gui_graph(tasks)
    if target == "weblinx":
        from palaestra.envs.web.weblinx import validate_weblinx

        return validate_weblinx(tasks)
    from palaestra.envs.web.env import task_pool

    sites = ("shop", "forum", "wiki", "admin")
    if target and target not in sites:
        raise EnvError(
            f"web validation target {target!r}: use {', '.join(sites)}, weblinx, miniwob or gui_graph"
        )
    pool = task_pool(target or None)
    if tasks:
        wanted = set(tasks)
        pool = [task for task in pool if task.id in wanted]
        missing = wanted - {task.id for task in pool}
        if missing:
            raise EnvError(f"unknown web task(s): {', '.join(sorted(missing))}")
    checks = [check_site_task(task.id) for task in pool]
    return ValidationReport(target=f"web{':' + target if target else ''}", checks=checks)


def play_gold(env: Any) -> tuple[float, list[str], int]:
    """Play the current episode's gold script; its reward, the problems met and the steps taken."""
    from palaestra.envs.web.tasks import GoldScriptError

    problems: list[str] = []
    player = env.privileged_view(AGENT).gold()
    steps = 0
    while True:
        try:
            action = player.act(env.page)
        except GoldScriptError as error:
            problems.append(f"gold step {player.index}: {error}")
            action = "answer"
        result = env.step({AGENT: action})
        steps += 1
        for refused in result.invalid_actions:
            problems.append(f"gold step {player.index} ({action}) was refused: {refused.reason}")
        if result.done:
            failed = result.info.get("grade", {}).get("failed") or []
            if failed and not problems:
                problems.extend(str(reason) for reason in failed)
            return float(result.rewards.get(AGENT, 0.0)), problems, steps


def check_site_task(task_id: str) -> ValidationCheck:
    """Gold and do-nothing play of one site task in a fresh env."""
    from palaestra.envs.web.env import WebEnv, find_task

    task = find_task(task_id)
    env = WebEnv(task=task_id)
    try:
        env.reset(seed=0)
        gold, problems, steps = play_gold(env)
        env.reset(seed=0)
        null = float(env.step({AGENT: "answer"}).rewards.get(AGENT, 0.0))
    finally:
        env.close()
    check = null_check(task_id, gold, null, subset=f"{task.site}/{task.split}")
    check.problems[:0] = problems
    check.extra = {"kind": task.kind, "gold steps": str(steps)}
    return check
