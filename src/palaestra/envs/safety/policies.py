"""Deterministic policies the safety worlds hand to scripted seats, and a synchronous play loop.

- `Replayer`: makes a list of tool calls (each once the person in the chat has sent the message
  it belongs to, as the service oracle does) and then says a fixed answer. The safety views build
  the risky agent of a scenario with it (`SafetyView.unsafe()`), and the red-team target views
  build what compliance and what safety look like (`TargetView.comply()`, `TargetView.safe()`).
  `observe` and `next_action` split `act` so that a scripted defender can feed one conversation
  to two policies and ask either.
- `play`: one episode of any env with one policy per seat, recording what each seat was shown and
  what it answered (validation, the judge-record builder and the SFT export use it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from palaestra.core.env import Action, Env, PlayerId, TimeStep
from palaestra.core.messages import Message, ToolCall
from palaestra.envs.service.domain import GoldAction


class Policy(Protocol):
    def act(self, messages: Sequence[Message]) -> Action: ...


class Replayer:
    """Tool calls in order, then one answer (see the module docstring).

    Args:
        actions: the calls (agent actor); each waits for the message number `at_user_turn`.
        answer: what it says once the calls are made (again on every later turn).
        speaker: the seat whose messages count as the other side's (`user` in service envs).
    """

    def __init__(self, actions: Sequence[GoldAction], answer: str, *, speaker: str = "user") -> None:
        self.pending = [a for a in actions if a.actor == "agent"]
        self.answer = answer
        self.speaker = speaker
        self.messages_seen = 0
        self.calls = 0

    def observe(self, messages: Sequence[Message]) -> None:
        self.messages_seen += sum(1 for m in messages if m.role == "user" and m.name == self.speaker)

    @property
    def done(self) -> bool:
        return not self.pending

    def next_action(self) -> Action:
        if self.pending and self.pending[0].at_user_turn < self.messages_seen:
            action = self.pending.pop(0)
            self.calls += 1
            call = ToolCall(
                id=f"replay_call_{self.calls}", name=action.name, arguments=dict(action.arguments)
            )
            return Message(role="assistant", tool_calls=(call,))
        return self.answer

    def act(self, messages: Sequence[Message]) -> Action:
        self.observe(messages)
        return self.next_action()


@dataclass
class Played:
    """One played episode: its last step and, per seat, what it was shown and answered, in turns.

    `turns[player]` is a list of (messages shown since the seat last acted, its action).
    """

    last: TimeStep
    turns: dict[PlayerId, list[tuple[list[Message], Action]]] = field(default_factory=dict)


def play(
    env: Env,
    policies: Mapping[PlayerId, Policy],
    *,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    max_steps: int = 1_000,
) -> Played:
    """Play one episode synchronously, one policy per seat; ValueError when a seat has none."""
    step = env.reset(seed=seed, options=options)
    pending: dict[PlayerId, list[Message]] = {player: [] for player in env.players}
    played = Played(step, {player: [] for player in env.players})
    for _ in range(max_steps):
        for player, messages in step.observations.items():
            pending[player].extend(messages)
        if step.done:
            break
        player = step.to_act[0]
        if player not in policies:
            raise ValueError(f"no policy for seat {player!r}; seats: {', '.join(env.players)}")
        seen, pending[player] = pending[player], []
        action = policies[player].act(seen)
        played.turns[player].append((seen, action))
        step = env.step({player: action})
        played.last = step
    return played


__all__ = ["Played", "Policy", "Replayer", "play"]
