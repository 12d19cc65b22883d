"""Turn control: how many turns an agent gets per segment of work (a working day, a repository
task, a user's question), and what it is told about them.

Three policies, after the turn-control study's comparison (fixed limits, reminders, on-demand
extensions), chosen with env options:

    turn_policy=fixed        a fixed limit per segment, stated when the segment starts
    turn_policy=reminders    the same limit, and a reminder when `remind_at` turns are left
                             (`remind_at=5,2`: at five and at two turns left)
    turn_policy=extensions   the same limit; the agent may write ###MORE_TURNS### to get
                             `extension_turns` more, granted up to `max_extensions` times per segment

`turn_limit` sets the limit. A segment whose turns run out ends there, as it is (a day's checks
run on what was done). Every turn counts, an extension request included. The env reports the
turns used, reminders sent and extensions granted and refused (`TurnStats`), so runs under each
policy can be compared on success and on cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from palaestra.core.registry import EnvError

TURN_POLICIES = ("fixed", "reminders", "extensions")
EXTEND_MARKER = "###MORE_TURNS###"


def _turn_list(value: Any) -> tuple[int, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        items: Sequence[Any] = [value]
    elif isinstance(value, str):
        items = [piece for piece in value.replace(";", ",").split(",") if piece.strip()]
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise EnvError(f"remind_at must be turn counts such as 5,2; got {value!r}")
    try:
        turns = tuple(sorted({int(item) for item in items}, reverse=True))
    except (TypeError, ValueError):
        raise EnvError(f"remind_at must be turn counts such as 5,2; got {value!r}") from None
    if any(turn < 1 for turn in turns):
        raise EnvError("remind_at turn counts must be at least 1")
    return turns


@dataclass(frozen=True, slots=True)
class TurnControl:
    """The turn policy of an env (see the module docstring)."""

    policy: str = "fixed"
    limit: int = 40
    remind_at: tuple[int, ...] = ()
    extension: int = 10
    max_extensions: int = 2

    @classmethod
    def from_options(
        cls,
        turn_policy: str = "fixed",
        turn_limit: int = 40,
        remind_at: Any = None,
        extension_turns: int = 10,
        max_extensions: int = 2,
    ) -> TurnControl:
        if turn_policy not in TURN_POLICIES:
            raise EnvError(f"turn_policy must be {', '.join(TURN_POLICIES)}; got {turn_policy!r}")
        for label, value in (
            ("turn_limit", turn_limit),
            ("extension_turns", extension_turns),
            ("max_extensions", max_extensions),
        ):
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < (0 if label == "max_extensions" else 1)
            ):
                raise EnvError(f"{label} must be a positive integer, got {value!r}")
        reminders = _turn_list(remind_at)
        if turn_policy == "reminders" and not reminders:
            reminders = tuple(t for t in (max(turn_limit // 4, 1), 1) if t < turn_limit) or (1,)
        return cls(turn_policy, turn_limit, reminders, extension_turns, max_extensions)

    def describe(self, what: str) -> str:
        """The line the agent reads when a segment starts."""
        text = f"You have {self.limit} turns for {what}; each message you send is one turn."
        if self.policy == "reminders":
            text += " You will be reminded when few are left."
        if self.policy == "extensions":
            text += (
                f" If you need more, write {EXTEND_MARKER} to get {self.extension} more "
                f"(at most {self.max_extensions} times)."
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "remind_at": list(self.remind_at)}


@dataclass(slots=True)
class TurnStats:
    """What turn control did over an episode."""

    turns: int = 0
    reminders: int = 0
    extensions: int = 0
    refused_extensions: int = 0
    out_of_turns: int = 0
    segments: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class TurnBudget:
    """One segment's turns under a `TurnControl`, adding up into the episode's `TurnStats`."""

    control: TurnControl
    stats: TurnStats
    used: int = 0
    extensions: int = 0
    announced_left: int | None = None
    """Turns left as last told to the agent (by a reminder or a granted extension); None: not told."""
    _reminded: set[int] = field(default_factory=set)

    @property
    def limit(self) -> int:
        return self.control.limit + self.extensions * self.control.extension

    @property
    def left(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit

    @property
    def can_extend(self) -> bool:
        return self.control.policy == "extensions" and self.extensions < self.control.max_extensions

    def spend(self) -> str | None:
        """Count one turn; the reminder to show after it, if one is due."""
        self.used += 1
        self.stats.turns += 1
        if self.control.policy != "reminders" or self.exhausted:
            return None
        left = self.left
        if left in self.control.remind_at and left not in self._reminded:
            self._reminded.add(left)
            self.stats.reminders += 1
            self.announced_left = left
            return f"Reminder: {left} turn{'s' if left != 1 else ''} left."
        return None

    def extend(self) -> str:
        """Answer an extension request (the turn it took is already spent)."""
        if not self.can_extend:
            self.stats.refused_extensions += 1
            if self.control.policy != "extensions":
                return "No extensions are available under this turn policy."
            return f"No more extensions: all {self.control.max_extensions} were used."
        self.extensions += 1
        self.stats.extensions += 1
        self.announced_left = self.left
        return f"Granted {self.control.extension} more turns; {self.left} left."


__all__ = ["EXTEND_MARKER", "TURN_POLICIES", "TurnBudget", "TurnControl", "TurnStats"]
