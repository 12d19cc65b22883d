"""`palaestra validate teams[:WORLD]`: every team world can be won, and cannot be won by doing nothing.

Each world (with the option variants in `VARIANTS`) plays `SEEDS` seeds of each task in `TASKS`
three times, every seat filled by one policy that reads the seat's `facts()`:

- gold (`gold_reply`): answers with the task solver's answer, approves exactly the right
  answers, calls the tool command that computes the answer: the team must score 1.0;
- silent (an empty reply every turn): must score below 1 (nothing answered is wrong);
- wrong (`wrong_reply`): answers a plausible wrong answer and judges the other way round: must
  score below 1.

The scripted members of `palaestra.agents.teams` (solver, wrong, stubborn, sycophant) behave
like these and more; these policies live here because envs do not import agents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from palaestra.core.registry import make
from palaestra.core.validation import ValidationCheck, ValidationReport, null_check

Facts = dict[str, Any]
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("debate-v0", {}),
    ("debate-v0", {"final": "judge", "show_reasons": True}),
    ("debate-v0", {"debaters": 4, "visibility": "ring", "rounds": 3}),
    ("dynadebate-v0", {}),
    ("dynadebate-v0", {"verify": "always", "critic": False}),
    ("critic_loop-v0", {}),
    ("malt-v0", {"passes": 2}),
    ("agentflow-v0", {}),
    ("discussion-v0", {"paradigm": "memory"}),
    ("discussion-v0", {"paradigm": "report"}),
    ("discussion-v0", {"paradigm": "relay", "final": "last"}),
    ("discussion-v0", {"paradigm": "debate"}),
    ("coa:debate-v0", {}),
    ("coa:agentflow-v0", {}),
)
TASKS: tuple[tuple[str, int], ...] = (("arithmetic", 1), ("largest", 2), ("sorting", 1), ("logic_grid", 2))
SEEDS = 3


def gold_reply(facts: Facts) -> str:
    """What a member that knows the answer and plays its role well says."""
    kind, solution = facts["kind"], facts["solution"]
    proposal = facts.get("proposal")
    if kind in ("answer", "message"):
        return f"<answer>{solution}</answer>"
    if kind == "pick":
        choices = list(facts.get("choices") or [])
        return str(solution if solution in choices else choices[0])
    if kind == "verdict":
        return "correct" if proposal == solution else "wrong"
    if kind == "review":
        return "approve" if proposal == solution else "revise"
    if kind == "stop":
        found = any(
            entry["call"] and not str(entry["result"]).startswith("error")
            for entry in facts.get("memory", [])
        )
        return "stop" if found else "continue"
    if kind == "tool":
        return str(facts.get("command") or f"python: {solution!r}")
    if kind == "plan":
        return f"Work out the answer with {facts.get('command') or 'careful reasoning'}."
    return f"The answer should be {solution}."


def wrong_reply(facts: Facts) -> str:
    """What a member that is always wrong says: a plausible wrong answer, the other verdict."""
    kind, solution = facts["kind"], facts["solution"]
    wrong = facts["distractors"][0]
    proposal = facts.get("proposal")
    if kind in ("answer", "message"):
        return f"<answer>{wrong}</answer>"
    if kind == "pick":
        choices = [c for c in facts.get("choices") or [] if c != solution]
        return choices[0] if choices else str(wrong)
    if kind == "verdict":
        return "wrong" if proposal == solution else "correct"
    if kind == "review":
        return "revise" if proposal == solution else "approve"
    if kind == "stop":
        return "stop"
    if kind == "tool":
        return f"python: {wrong!r}"
    return "That looks right to me."


def play(env_id: str, options: dict[str, Any], seed: int, policy: Callable[[Facts], str]) -> float:
    """The team's score when `policy` fills every seat."""
    env: Any = make(env_id, **options)
    try:
        step = env.reset(seed=seed)
        while not step.done:
            step = env.step({seat: policy(env.facts(seat)) for seat in step.to_act})
        return float(step.info["returns"][env.players[0]])
    finally:
        env.close()


def validate_teams(argument: str, tasks: Sequence[str] | None) -> ValidationReport:
    """The validator behind `palaestra validate teams[:WORLD]` (`tasks`: only these check ids)."""
    wanted = argument if not argument or argument.endswith("-v0") else f"{argument}-v0"  # teams:malt
    variants = [(env_id, options) for env_id, options in VARIANTS if not wanted or env_id == wanted]
    if not variants:
        worlds = sorted({env_id for env_id, _ in VARIANTS})
        raise ValueError(f"teams: no world {argument!r}; the worlds: {', '.join(worlds)}")
    checks: list[ValidationCheck] = []
    for env_id, world_options in variants:
        shown = ",".join(f"{k}={v}" for k, v in world_options.items())
        for task, difficulty in TASKS:
            for seed in range(SEEDS):
                options = {**world_options, "task": task, "difficulty": difficulty}
                check_id = (
                    f"{env_id}[{shown}]/{task}/d{difficulty}/{seed}"
                    if shown
                    else f"{env_id}/{task}/d{difficulty}/{seed}"
                )
                if tasks and check_id not in tasks:
                    continue
                gold = play(env_id, options, seed, gold_reply)
                silent = play(env_id, options, seed, lambda facts: "")
                wrong = play(env_id, options, seed, wrong_reply)
                check = null_check(check_id, gold, silent, subset=task)
                if wrong >= 1.0:
                    check.problems.append(f"always-wrong members scored {wrong:g}")
                check.extra["wrong"] = f"{wrong:g}"
                checks.append(check)
    return ValidationReport(target=f"teams:{argument}" if argument else "teams", checks=checks)


__all__ = ["SEEDS", "TASKS", "VARIANTS", "gold_reply", "play", "validate_teams", "wrong_reply"]
