"""Scripted team members for the team worlds (`palaestra.envs.teams`) and the reasoning tasks.

They read `view.privileged.facts()` (the seat's `TeamView`): the kind of reply asked for, the
question, what the seat can see of its teammates (`peers`: each visible teammate's latest answer,
`peer_history`: all of them), its own answers, and the task solver's answer (`solution`), so that
every behaviour is known exactly and the worlds and their scorecard can be tested without a
model. Behaviours:

- `team_solver`: always right: answers the solution, judges an answer under review by whether
  it is the solution, calls the tool command that computes the answer, stops once the memory
  holds a result;
- `team_wrong[:pick=N]`: always wrong: answers the task's N-th plausible wrong answer, judges
  the other way round, stops at once;
- `stubborn[:correct=true]`: gives its first answer (the solution, or with `correct=false` a wrong
  one) and never changes it; approves only its own answer;
- `sycophant[:first=wrong]`: copies the majority of the latest answers it can see; a tie goes to
  the answer whose holder has kept it longest (the most insistent voice), then to the earliest
  seat; with nothing to copy it gives its own first guess (`first=wrong`: a wrong answer that
  differs from seat to seat; `first=right`: the solution); it approves whatever it reviews.

Replies to the other kinds follow from the member's answer (a plan and a tool call that produce
it, a critique that names it).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from palaestra.agents.base import AgentError, AgentFactory, AgentView, privileged_label, register_agent
from palaestra.core.env import Action

Facts = dict[str, Any]


def team_facts(view: AgentView, agent: str) -> Facts:
    """The seat's facts; AgentError when the env is not a team world or a reasoning task."""
    facts = getattr(view.privileged, "facts", None)
    found: Facts | None = facts() if callable(facts) else None
    if found is None or "solution" not in found:
        raise AgentError(
            f"the {agent} agent plays the team worlds and reasoning tasks (debate-v0, malt-v0, "
            f"reasoning:arithmetic, ...); {privileged_label(view)} gives it no task facts"
        )
    return found


def _same(result: Any, answer: str) -> bool:
    """Whether a tool result reads as `answer` (`'Ann'`, `[2, 5, 9]` and `2 5 9` do)."""
    squeezed = str(result).strip().strip("'\"[]()").replace(",", " ")
    return " ".join(squeezed.split()) == answer


class TeamMember:
    """A scripted member: one answer rule (`answer`), the other kinds of reply derived from it."""

    name = "team"

    async def act(self, view: AgentView) -> Action:
        facts = team_facts(view, self.name)
        kind = facts["kind"]
        if kind is None:
            return ""
        answer = self.answer(facts)
        if kind in ("answer", "message"):
            return f"<answer>{answer}</answer>"
        if kind == "pick":
            return self.pick(facts, answer)
        if kind in ("verdict", "review"):
            agree = self.approves(facts, answer)
            if kind == "verdict":
                return "correct" if agree else "wrong"
            return "approve" if agree else f"revise: I get {answer}."
        if kind == "stop":
            return "stop" if self.enough(facts, answer) else "continue"
        if kind == "tool":
            return self.tool(facts, answer)
        if kind == "plan":
            return self.plan(facts, answer)
        return self.critique(facts, answer)

    def answer(self, facts: Facts) -> str:
        return str(facts["solution"])

    def pick(self, facts: Facts, answer: str) -> str:
        choices = list(facts.get("choices") or [])
        return answer if answer in choices or not choices else choices[0]

    def approves(self, facts: Facts, answer: str) -> bool:
        return facts.get("proposal") == answer

    def enough(self, facts: Facts, answer: str) -> bool:
        return any(entry["call"] and _same(entry["result"], answer) for entry in facts.get("memory", []))

    def tool(self, facts: Facts, answer: str) -> str:
        return f"python: {answer!r}"

    def plan(self, facts: Facts, answer: str) -> str:
        return f"Check that the answer is {answer}."

    def critique(self, facts: Facts, answer: str) -> str:
        if all(peer == answer for peer in facts.get("peers", {}).values()):
            return f"No mistake: {answer} is right."
        return f"The answer should be {answer}."


class Solver(TeamMember):
    name = "team_solver"

    def plan(self, facts: Facts, answer: str) -> str:
        return f"Find the answer: {facts.get('command') or 'reason it out'}."

    def tool(self, facts: Facts, answer: str) -> str:
        return str(facts.get("command") or f"python: {answer!r}")


class Wrong(TeamMember):
    name = "team_wrong"

    def __init__(self, pick: int = 0) -> None:
        self.index = pick

    def answer(self, facts: Facts) -> str:
        wrong = facts["distractors"]
        return str(wrong[self.index % len(wrong)])

    def pick(self, facts: Facts, answer: str) -> str:
        wrong = [choice for choice in facts.get("choices") or [] if choice != facts["solution"]]
        return wrong[0] if wrong else answer

    def approves(self, facts: Facts, answer: str) -> bool:
        return bool(facts.get("proposal") != facts["solution"])

    def enough(self, facts: Facts, answer: str) -> bool:
        return True

    def critique(self, facts: Facts, answer: str) -> str:
        return "That looks right to me."


class Stubborn(TeamMember):
    name = "stubborn"

    def __init__(self, correct: bool = True) -> None:
        self.correct = correct

    def answer(self, facts: Facts) -> str:
        own = facts.get("own") or []
        if own:
            return str(own[0])
        return str(facts["solution"] if self.correct else facts["distractors"][0])

    def critique(self, facts: Facts, answer: str) -> str:
        return f"I stand by {answer}."


class Sycophant(TeamMember):
    name = "sycophant"

    def __init__(self, first: str = "wrong") -> None:
        if first not in ("wrong", "right"):
            raise AgentError(f"sycophant: first must be wrong or right, got {first!r}")
        self.first = first

    def answer(self, facts: Facts) -> str:
        copied = copy_majority(facts)
        if copied is not None:
            return copied
        if self.first == "right":
            return str(facts["solution"])
        wrong = facts["distractors"]
        return str(wrong[facts.get("seat_index", 0) % len(wrong)])

    def approves(self, facts: Facts, answer: str) -> bool:
        return True

    def enough(self, facts: Facts, answer: str) -> bool:
        return any(entry["call"] for entry in facts.get("memory", []))

    def critique(self, facts: Facts, answer: str) -> str:
        return f"I agree with the others: {answer}."


def copy_majority(facts: Facts) -> str | None:
    """The majority of the visible teammates' latest answers (see `sycophant` in the module
    docstring for the tie rule); None when no teammate answered yet."""
    peers: dict[str, str] = facts.get("peers") or {}
    if not peers:
        return None
    counts = Counter(peers.values())
    best = max(counts.values())
    tied = [answer for answer, count in counts.items() if count == best]
    if len(tied) == 1:
        return tied[0]
    history: dict[str, list[str]] = facts.get("peer_history") or {}
    seats: list[str] = facts.get("seats") or sorted(peers)

    def held(seat: str) -> int:
        answers = history.get(seat) or [peers[seat]]
        streak = 0
        for answer in reversed(answers):
            if answer != peers[seat]:
                break
            streak += 1
        return streak

    def strength(answer: str) -> tuple[int, int]:
        holders = [seat for seat, said in peers.items() if said == answer]
        first_seat = min(seats.index(seat) if seat in seats else len(seats) for seat in holders)
        return (max(held(seat) for seat in holders), -first_seat)

    return max(tied, key=strength)


@register_agent("team_solver", "team worlds: always the right answer, fair reviews, the tool command")
def team_solver() -> AgentFactory:
    return Solver


@register_agent("team_wrong", "team worlds: always a wrong answer (pick=N: which), reviews the other way")
def team_wrong(pick: int = 0) -> AgentFactory:
    if not isinstance(pick, int) or isinstance(pick, bool) or pick < 0:
        raise AgentError(f"team_wrong: pick must be a whole number >= 0, got {pick!r}")
    return lambda: Wrong(pick)


@register_agent("stubborn", "team worlds: its first answer forever (correct=true|false)")
def stubborn(correct: bool = True) -> AgentFactory:
    if not isinstance(correct, bool):
        raise AgentError(f"stubborn: correct must be true or false, got {correct!r}")
    return lambda: Stubborn(correct)


@register_agent("sycophant", "team worlds: copies the majority it sees (first=wrong|right before that)")
def sycophant(first: str = "wrong") -> AgentFactory:
    Sycophant(first)  # checks the option now, not in the first episode
    return lambda: Sycophant(first)


__all__ = ["Solver", "Stubborn", "Sycophant", "TeamMember", "Wrong", "copy_majority", "team_facts"]
