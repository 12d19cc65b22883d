"""Debate worlds: multi-agent debate (MAD) and DynaDebate.

`debate-v0`: `debaters` members (seats `debater_0`...) answer the task at the same time, then for
`rounds - 1` more rounds each sees the others' previous answers (`visibility`: `all`, `ring`: its
two neighbours, `none`: nobody, which makes the rounds independent samples) and, with
`show_reasons`, their words, and answers again. The final answer is the last round's `majority`
(a tie goes to the answer given first in seat order) or a `judge` seat's pick among the last
round's answers. `early_stop` ends the debate after a round where every debater agreed.

`dynadebate-v0` adds DynaDebate's three pieces (docs/references.md, DynaDebate): diverse initial
paths (round 1 gives each debater a different way in, `paths`), a process critic (seat `critic`,
`critic=true`) who reads every debater's answer and reasons after each round but the last and
writes a critique all debaters see, and a verifier the debaters can call as a tool
(`calc:`/`python:`/`check: 3+4*2 == 11`) before they answer, `verify=disagreement` (in rounds
after one the debaters disagreed in), `always` or `never`.
"""

from __future__ import annotations

from typing import Any

from palaestra.core.env import PlayerId
from palaestra.core.registry import EnvError
from palaestra.envs.reasoning.env import flag, whole_number
from palaestra.envs.teams.base import Ask, Move, TeamEnv, cut, majority, reasons_of

PATHS = (
    "Solve it directly.",
    "Work it out step by step.",
    "Check each candidate in turn.",
    "Start from a guess and test it.",
    "Estimate first, then make it exact.",
)
"""The diverse initial paths of `dynadebate-v0`, one per debater in seat order (cycled)."""


def one_of(option: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise EnvError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


class DebateEnv(TeamEnv):
    """Multi-agent debate; see the module docstring."""

    world = "debate"
    title = "a debate: a team answering one question over several rounds"

    def __init__(
        self,
        *,
        debaters: int = 3,
        rounds: int = 2,
        final: str = "majority",
        visibility: str = "all",
        show_reasons: bool = False,
        early_stop: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.num_debaters = whole_number("debaters", debaters, 2, 8)
        self.rounds = whole_number("rounds", rounds, 1, 10)
        self.final = one_of("final", final, ("majority", "judge"))
        self.visibility = one_of("visibility", visibility, ("all", "ring", "none"))
        self.show_reasons = flag("show_reasons", show_reasons)
        self.early_stop = flag("early_stop", early_stop)
        self.debaters = tuple(f"debater_{i}" for i in range(self.num_debaters))
        self.players = self.debaters + self._extra_seats()
        self.roles = {seat: "debater" for seat in self.debaters} | {
            seat: seat for seat in self._extra_seats()
        }

    def _extra_seats(self) -> tuple[PlayerId, ...]:
        return ("judge",) if self.final == "judge" else ()

    # ----- protocol -------------------------------------------------------------------------------
    def _start(self) -> None:
        self._open_round(1)

    def _open_round(self, number: int) -> None:
        if number > 1 and self.visibility != "none":
            for seat in self.debaters:
                self.saw(seat)
        self.ask(Ask("answer", self.debaters, round=number, tools=self._tools(number), note="Your answer?"))

    def _tools(self, number: int) -> bool:
        return False

    def _advance(self, ask: Ask, replies: dict[PlayerId, Move]) -> None:
        if ask.kind == "pick":
            self._finish(replies["judge"].answer, "judge")
            return
        answers = [replies[seat].answer for seat in self.debaters]
        agreed = len(set(answers)) == 1 and answers[0] is not None
        if ask.round < self.rounds and not (self.early_stop and agreed):
            self._between_rounds(ask.round)
            return
        self._conclude(answers)

    def _between_rounds(self, finished: int) -> None:
        self._open_round(finished + 1)

    def _conclude(self, answers: list[str | None]) -> None:
        if self.final == "judge":
            candidates = tuple(dict.fromkeys(a for a in answers if a is not None))
            if candidates:
                self.saw("judge")
                last = max(m.round for m in self.core.moves)
                self.ask(
                    Ask("pick", ("judge",), round=last, choices=candidates, note="Pick the team's answer.")
                )
                return
        self._finish(majority(answers), "majority" if self.final == "majority" else "judge")

    # ----- what each seat sees --------------------------------------------------------------------
    def _sees(self, seat: PlayerId, other: PlayerId) -> bool:
        if seat not in self.debaters:
            return other in self.debaters
        if other not in self.debaters or self.visibility == "none":
            return False
        if self.visibility == "ring":
            gap = (self.debaters.index(other) - self.debaters.index(seat)) % len(self.debaters)
            return gap in (1, len(self.debaters) - 1)
        return True

    def _header(self, seat: PlayerId, ask: Ask) -> str:
        if seat in self.debaters:
            return f"{seat}, round {ask.round} of {self.rounds}"
        return f"{seat}, after round {ask.round}"

    def _last_moves(self, seats: tuple[PlayerId, ...], before: int) -> dict[PlayerId, Move]:
        """Each seat's answer move of the latest round before `before`."""
        found: dict[PlayerId, Move] = {}
        for move in self.core.moves:
            if move.seat in seats and move.kind == "answer" and move.round < before:
                found[move.seat] = move
        return found

    def _said(self, move: Move, reasons: bool) -> str:
        answer = move.answer if move.answer is not None else "nothing"
        why = reasons_of(move.text) if reasons else ""
        return f"{answer} ({why})" if why else answer

    def _state(self, seat: PlayerId, ask: Ask) -> list[str]:
        if ask.kind == "pick":
            last = self._last_moves(self.debaters, ask.round + 1)
            return [
                f"{other} said: {self._said(last[other], True)}" for other in self.debaters if other in last
            ]
        if ask.round == 1:
            return []
        last = self._last_moves(self.debaters, ask.round)
        lines = [
            f"{other} said: {self._said(last[other], self.show_reasons)}"
            for other in self.debaters
            if other != seat and other in last and self._sees(seat, other)
        ]
        if seat in last:
            lines.append(f"You said: {self._said(last[seat], False)}")
        return lines

    def _rules(self) -> str:
        final = (
            "the judge then picks the team's answer among the last round's answers"
            if self.final == "judge"
            else "the last round's most common answer is the team's"
        )
        seen = {"all": "every other debater's", "ring": "your two neighbours'", "none": "no other"}[
            self.visibility
        ]
        return (
            f"{self.num_debaters} debaters answer one question over {self.rounds} round(s). In round 1 "
            f"each answers alone; in each later round you see {seen} previous answer and answer again. "
            f"After the last round {final}. Every member scores 1 if the team's answer is right, else 0."
        )

    def _role_text(self, seat: PlayerId) -> str:
        if seat == "judge":
            return "You are the judge: you read the debaters' last answers and reasons and pick the team's."
        return f"You are {seat}, one of {self.num_debaters} debaters."


class DynaDebateEnv(DebateEnv):
    """DynaDebate: diverse paths, a process critic, a verifier tool; see the module docstring."""

    world = "dynadebate"
    title = "a debate with diverse paths, a process critic and a verifier tool"

    def __init__(
        self,
        *,
        paths: bool = True,
        critic: bool = True,
        verify: str = "disagreement",
        **options: Any,
    ) -> None:
        self.paths = flag("paths", paths)
        self.has_critic = flag("critic", critic)
        self.verify = one_of("verify", verify, ("disagreement", "always", "never"))
        options.setdefault("show_reasons", True)
        if options.get("final", "majority") != "majority":
            raise EnvError("dynadebate-v0 decides by majority; use debate-v0 for a judge")
        super().__init__(**options)

    def _extra_seats(self) -> tuple[PlayerId, ...]:
        return ("critic",) if self.has_critic else ()

    def _tools(self, number: int) -> bool:
        if self.verify == "never":
            return False
        if self.verify == "always":
            return True
        previous = self._last_moves(self.debaters, number)
        answers = {move.answer for move in previous.values()}
        return number > 1 and len(answers) > 1

    def _between_rounds(self, finished: int) -> None:
        if not self.has_critic:
            self._open_round(finished + 1)
            return
        self.saw("critic")
        self.ask(Ask("critique", ("critic",), round=finished, note="Point out the first wrong step, if any."))

    def _advance(self, ask: Ask, replies: dict[PlayerId, Move]) -> None:
        if ask.kind == "critique":
            self._open_round(ask.round + 1)
            return
        super()._advance(ask, replies)

    def _state(self, seat: PlayerId, ask: Ask) -> list[str]:
        if ask.kind == "critique":
            last = self._last_moves(self.debaters, ask.round + 1)
            return [
                f"{other} said: {self._said(last[other], True)}" for other in self.debaters if other in last
            ]
        lines = super()._state(seat, ask)
        if ask.round == 1 and self.paths and seat in self.debaters:
            lines.append(f"Path: {PATHS[self.debaters.index(seat) % len(PATHS)]}")
        critique = [m for m in self.core.moves if m.kind == "critique" and m.round == ask.round - 1]
        if critique and critique[-1].text.strip():
            lines.append(f"critic said: {cut(critique[-1].text)}")
        if ask.tools:
            lines.append("You may call the verifier first: check: EXPR, calc: EXPR or python: EXPR.")
        return lines

    def _facts(self, seat: PlayerId) -> dict[str, Any]:
        path = PATHS[self.debaters.index(seat) % len(PATHS)] if seat in self.debaters and self.paths else None
        return {"path": path}

    def _rules(self) -> str:
        critic = (
            " After each round but the last, the critic reads every answer and its reasons and points out "
            "the first wrong step; every debater reads the critique."
            if self.has_critic
            else ""
        )
        tool = {
            "disagreement": " In a round after the debaters disagreed, each may call the verifier tool "
            "before answering.",
            "always": " Before answering, each debater may call the verifier tool.",
            "never": "",
        }[self.verify]
        return (
            f"{self.num_debaters} debaters answer one question over {self.rounds} round(s); in round 1 "
            "each follows "
            f"its own path, later each sees the others' previous answers and reasons.{critic}{tool} The last "
            "round's most common answer is the team's; every member scores 1 if it is right, else 0."
        )

    def _role_text(self, seat: PlayerId) -> str:
        if seat == "critic":
            return (
                "You are the critic: you check the debaters' reasoning step by step and point out mistakes."
            )
        return f"You are {seat}, one of {self.num_debaters} debaters."


__all__ = ["PATHS", "DebateEnv", "DynaDebateEnv", "one_of"]
