"""`discussion-v0`: the discussion paradigms of the study of multi-agent conversational task-solving.

`members` members (seats `member_0`...) discuss one question for `rounds` rounds, speaking in
seat order, one message each per round; a message may state an answer (`<answer>7</answer>`, or
a short reply that is one). What a speaker sees of the discussion is the `paradigm`
(docs/references.md, conversational task-solving):

- `memory`: every earlier message (a shared transcript);
- `report`: `member_0` is the hub and reads every message; the others read only the hub's;
- `relay`: only the message just before its own (a chain passed from speaker to speaker);
- `debate`: the latest message of each other member (no older history).

The final answer is the `majority` of the members' latest stated answers (a tie goes to the
answer given first in seat order) or the `last` answer stated. The study's two failure measures
come from the moves (`palaestra.eval.teams`): problem drift (messages that leave the task) and
monopolization (each member's share of turns and tokens).
"""

from __future__ import annotations

from typing import Any

from palaestra.core.env import PlayerId
from palaestra.envs.reasoning.env import whole_number
from palaestra.envs.teams.base import Ask, Move, TeamEnv, cut, majority, reasons_of
from palaestra.envs.teams.debate import one_of

PARADIGMS = ("memory", "report", "relay", "debate")
HUB = "member_0"
SHOWN_MESSAGES = 6
"""The most earlier messages one turn block shows (the latest ones): the tiny model reads them all."""


class DiscussionEnv(TeamEnv):
    """A round-robin discussion under one of four paradigms; see the module docstring."""

    world = "discussion"
    title = "a group discussion solving one question"

    def __init__(
        self,
        *,
        members: int = 3,
        rounds: int = 2,
        paradigm: str = "memory",
        final: str = "majority",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.num_members = whole_number("members", members, 2, 8)
        self.rounds = whole_number("rounds", rounds, 1, 10)
        self.paradigm = one_of("paradigm", paradigm, PARADIGMS)
        self.final = one_of("final", final, ("majority", "last"))
        self.players = tuple(f"member_{i}" for i in range(self.num_members))
        self.roles = {
            seat: "hub" if seat == HUB and self.paradigm == "report" else "member" for seat in self.players
        }

    # ----- protocol -------------------------------------------------------------------------------
    def _start(self) -> None:
        self._speak(0)

    def _speak(self, turn: int) -> None:
        seat = self.players[turn % len(self.players)]
        if any(m.answer is not None or m.text.strip() for m in self._visible(seat)):
            self.saw(seat)
        self.ask(Ask("message", (seat,), round=turn // len(self.players) + 1, note="Your message?"))

    def _advance(self, ask: Ask, replies: dict[PlayerId, Move]) -> None:
        spoken = len(self.moves_of(kind="message"))
        if spoken < self.rounds * len(self.players):
            self._speak(spoken)
            return
        if self.final == "last":
            stated = [m.answer for m in self.moves_of(kind="message") if m.answer is not None]
            self._finish(stated[-1] if stated else None, "last")
            return
        latest = self.latest_answers(self.players)
        self._finish(majority([latest[seat] for seat in self.players]), "majority")

    # ----- what each member sees ------------------------------------------------------------------
    def _visible(self, seat: PlayerId) -> list[Move]:
        """The earlier messages `seat` may read now, oldest first."""
        messages = self.moves_of(kind="message")
        others = [m for m in messages if m.seat != seat]
        if self.paradigm == "memory":
            return others
        if self.paradigm == "report":
            return others if seat == HUB else [m for m in others if m.seat == HUB]
        if self.paradigm == "relay":
            return [messages[-1]] if messages and messages[-1].seat != seat else []
        latest: dict[PlayerId, Move] = {}
        for move in others:
            latest[move.seat] = move
        return sorted(latest.values(), key=messages.index)

    def _visible_latest(self, seat: PlayerId, visible: Any, ask: Ask | None) -> dict[PlayerId, str]:
        found: dict[PlayerId, str] = {}
        for move in self._visible(seat):
            if move.answer is not None:
                found[move.seat] = move.answer
        return found

    def _visible_history(self, seat: PlayerId, visible: Any, ask: Ask | None) -> dict[PlayerId, list[str]]:
        found: dict[PlayerId, list[str]] = {}
        for move in self._visible(seat):
            if move.answer is not None:
                found.setdefault(move.seat, []).append(move.answer)
        return found

    def _header(self, seat: PlayerId, ask: Ask) -> str:
        return f"{seat}, round {ask.round} of {self.rounds}"

    def _state(self, seat: PlayerId, ask: Ask) -> list[str]:
        lines = []
        for move in self._visible(seat)[-SHOWN_MESSAGES:]:
            if move.answer is None:
                lines.append(f"{move.seat} said: {cut(move.text) or '(silent)'}")
                continue
            why = reasons_of(move.text)
            lines.append(f"{move.seat} said: {move.answer}" + (f" ({why})" if why else ""))
        own = [m for m in self.moves_of(kind="message", seat=seat) if m.answer is not None]
        if own:
            lines.append(f"You said: {own[-1].answer}")
        return lines

    def _rules(self) -> str:
        seen = {
            "memory": "every earlier message",
            "report": "every message if you are member_0 (the hub), else only the hub's messages",
            "relay": "only the message just before yours",
            "debate": "the latest message of each other member",
        }[self.paradigm]
        final = (
            "the most common of the members' latest answers"
            if self.final == "majority"
            else "the last answer stated"
        )
        return (
            f"{self.num_members} members discuss one question for {self.rounds} round(s), speaking in "
            "turn. When "
            f"you speak you see {seen}. State your answer inside <answer></answer> in your message. The "
            "team's "
            f"answer is {final}; everyone scores 1 if it is right, else 0."
        )

    def _role_text(self, seat: PlayerId) -> str:
        hub = " You are the hub: the others read only your messages." if self.roles[seat] == "hub" else ""
        return f"You are {seat}, one of {self.num_members} members.{hub}"


__all__ = ["HUB", "PARADIGMS", "DiscussionEnv"]
