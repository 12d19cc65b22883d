"""Validators: how `palaestra validate TARGET` checks a world's tasks, declared by its family.

Every world ships tasks with a gold solution. Validating a task means: the gold solution scores
1.0, doing nothing fails, and whatever else the family knows can go wrong (an adversarial probe
that passes, a checker that cannot fail). Service domains have their own validator; every other
family registers one here, under the name users type before the first colon:

    palaestra validate teams            # every team-world task generator
    palaestra validate lumina:grid      # the name is `lumina`, the rest (`grid`) is its argument

A validator is a function `(argument: str, tasks: Sequence[str] | None) -> ValidationReport`,
registered by its `module:function` name so that registering imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from palaestra.core.registries import Registry


@dataclass
class ValidationCheck:
    """One task's verdict.

    Fields:
        task_id: the task.
        subset: its split or group (train/test, a scenario, a size), "" when none.
        gold: what the gold solution scored (None: it could not run).
        null: what doing nothing scored (None: not applicable).
        problems: what is wrong, one line each (empty: the task is valid).
        warnings: worth a look, not wrong.
        extra: more columns the family shows (already formatted), by column name.
    """

    task_id: str
    subset: str = ""
    gold: float | None = None
    null: float | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ValidationReport:
    """Every checked task of one validation target."""

    target: str
    checks: list[ValidationCheck]

    @property
    def failures(self) -> list[ValidationCheck]:
        return [c for c in self.checks if not c.ok]


Validator = Callable[[str, "Sequence[str] | None"], ValidationReport]

VALIDATORS: Registry[Validator] = Registry("validator")
"""`module:function` targets by the name `palaestra validate NAME[:ARG]` takes."""


def register_validator(name: str, target: str, description: str = "") -> None:
    """Let `palaestra validate NAME[:ARG]` call `target` (`module:function`) with ARG."""
    VALIDATORS.register(name, target, description=description, override=True)


def find_validator(spec: str) -> tuple[Validator, str] | None:
    """The validator `spec` names (`NAME` or `NAME:ARG`) and its argument; None when no family
    registered NAME (the caller then treats `spec` as a service domain)."""
    name, _, argument = spec.partition(":")
    if name not in VALIDATORS:
        return None
    return VALIDATORS.get(name), argument


def null_check(
    task_id: str, gold: float, null: float, *, subset: str = "", pass_at: float = 1.0
) -> ValidationCheck:
    """The common verdict: the gold must reach `pass_at` (1.0) and doing nothing must stay below it."""
    check = ValidationCheck(task_id, subset, gold=gold, null=null)
    if gold < pass_at - 1e-9:
        check.problems.append(f"gold scored {gold:g}, not {pass_at:g}")
    if null >= pass_at - 1e-9:
        check.problems.append(f"doing nothing scored {null:g}: the task cannot fail")
    return check


__all__ = [
    "VALIDATORS",
    "ValidationCheck",
    "ValidationReport",
    "Validator",
    "find_validator",
    "null_check",
    "register_validator",
]
