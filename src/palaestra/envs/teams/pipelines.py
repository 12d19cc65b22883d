"""Role pipelines: the assistant-critic loop, generator-verifier-refiner (MALT) and AgentFlow.

`critic_loop-v0` (AutoGen's assistant and critic): the `assistant` answers, the `critic` reviews
it (`approve` or `revise`, with feedback around the choice); on `revise` the assistant answers
again with the feedback in view, for at most `rounds` answers. The final answer is the one the
critic approved, else the assistant's last.

`malt-v0` (docs/references.md §2, MALT): the `generator` answers alone, the `verifier` judges that
answer (`correct` or `wrong`, with its critique), the `refiner` gives the team's answer with both
in view; `passes` > 1 has the verifier judge the refiner's answer and the refiner answer again.
The refiner's last answer is the team's.

`agentflow-v0` (docs/references.md §2, AgentFlow): four roles around an evolving memory. Each step
the `planner` reads the question and the memory and writes the next sub-goal; the `executor`
turns it into one tool call (`calc: EXPR`, the calculator, or `python: EXPR`, restricted Python:
`palaestra.envs.reasoning.evaluator`), whose result the env adds to the memory; the `verifier`
reads the memory and says `stop` or `continue`. After a stop, or `steps` steps, the `generator`
writes the team's answer from the question and the memory.
"""

from __future__ import annotations

from typing import Any

from palaestra.core.env import PlayerId
from palaestra.envs.reasoning.env import whole_number
from palaestra.envs.teams.base import Ask, Move, TeamEnv, cut, reasons_of

TEAM_THREAD = "team"
"""The answer thread of a pipeline: its answers revise one another (flips are counted along it)."""


def _answer_text(move: Move | None) -> str:
    return "nothing" if move is None or move.answer is None else move.answer


class CriticLoopEnv(TeamEnv):
    """The assistant-critic loop; see the module docstring."""

    world = "critic_loop"
    title = "an assistant and a critic solving a question together"

    def __init__(self, *, rounds: int = 3, **options: Any) -> None:
        super().__init__(**options)
        self.rounds = whole_number("rounds", rounds, 1, 10)
        self.players = ("assistant", "critic")
        self.roles = {"assistant": "assistant", "critic": "critic"}

    def _start(self) -> None:
        self._propose(1)

    def _propose(self, number: int) -> None:
        threads = {"assistant": TEAM_THREAD}
        self.ask(Ask("answer", ("assistant",), round=number, threads=threads, note="Your answer?"))

    def _advance(self, ask: Ask, replies: dict[PlayerId, Move]) -> None:
        if ask.kind == "answer":
            self.saw("critic")
            self.ask(
                Ask("review", ("critic",), round=ask.round, note="Approve the answer or ask for a revision.")
            )
            return
        proposal = self._proposal()
        if replies["critic"].choice == "approve":
            self._finish(proposal.answer if proposal else None, "approved")
        elif ask.round < self.rounds:
            self.saw("assistant")
            self._propose(ask.round + 1)
        else:
            self._finish(proposal.answer if proposal else None, "last")

    def _proposal(self) -> Move | None:
        answers = self.moves_of(kind="answer", seat="assistant")
        return answers[-1] if answers else None

    def _state(self, seat: PlayerId, ask: Ask) -> list[str]:
        proposal = self._proposal()
        if seat == "critic":
            why = reasons_of(proposal.text) if proposal else ""
            return [f"assistant said: {_answer_text(proposal)}" + (f" ({why})" if why else "")]
        if ask.round == 1:
            return []
        review = self.moves_of(kind="review")[-1]
        feedback = reasons_of(review.text)
        return [
            f"You said: {_answer_text(proposal)}",
            f"critic: {review.choice}" + (f" ({feedback})" if feedback else ""),
        ]

    def _facts(self, seat: PlayerId) -> dict[str, Any]:
        proposal = self._proposal()
        return {"proposal": proposal.answer if proposal else None}

    def _rules(self) -> str:
        return (
            "The assistant answers the question; the critic reviews the answer and says approve or revise, "
            "with feedback. On revise the assistant answers again, seeing the feedback, for at most "
            f"{self.rounds} answer(s). The approved answer (else the last) is the team's; both score 1 if it "
            "is right, else 0."
        )


class MaltEnv(TeamEnv):
    """Generator, verifier, refiner; see the module docstring."""

    world = "malt"
    title = "a generator, a verifier and a refiner solving a question together"

    def __init__(self, *, passes: int = 1, **options: Any) -> None:
        super().__init__(**options)
        self.passes = whole_number("passes", passes, 1, 5)
        self.players = ("generator", "verifier", "refiner")
        self.roles = {seat: seat for seat in self.players}

    def _start(self) -> None:
        threads = {"generator": TEAM_THREAD}
        self.ask(Ask("answer", ("generator",), round=1, threads=threads, note="Your answer?"))

    def _advance(self, ask: Ask, replies: dict[PlayerId, Move]) -> None:
        if ask.kind == "answer" and "refiner" not in replies:
            self._verify(ask.round)
        elif ask.kind == "verdict":
            self.saw("refiner")
            threads = {"refiner": TEAM_THREAD}
            self.ask(Ask("answer", ("refiner",), round=ask.round, threads=threads, note="The team's answer?"))
        elif ask.round < self.passes:
            self._verify(ask.round + 1)
        else:
            self._finish(replies["refiner"].answer, "refiner")

    def _verify(self, number: int) -> None:
        self.saw("verifier")
        self.ask(Ask("verdict", ("verifier",), round=number, note="Is the answer correct?"))

    def _proposal(self) -> Move | None:
        answers = [m for m in self.core.moves if m.kind == "answer"]
        return answers[-1] if answers else None

    def _state(self, seat: PlayerId, ask: Ask) -> list[str]:
        if seat == "generator":
            return []
        proposal = self._proposal()
        source = proposal.seat if proposal else "generator"
        why = reasons_of(proposal.text) if proposal else ""
        lines = [f"{source} said: {_answer_text(proposal)}" + (f" ({why})" if why else "")]
        if seat == "refiner":
            verdict = self.moves_of(kind="verdict")[-1]
            critique = reasons_of(verdict.text)
            lines.append(f"verifier: {verdict.choice}" + (f" ({critique})" if critique else ""))
        return lines

    def _facts(self, seat: PlayerId) -> dict[str, Any]:
        proposal = self._proposal()
        verdicts = self.moves_of(kind="verdict")
        return {
            "proposal": proposal.answer if proposal else None,
            "verdict": verdicts[-1].choice if verdicts else None,
        }

    def _rules(self) -> str:
        again = f" This repeats for {self.passes} pass(es)." if self.passes > 1 else ""
        return (
            "The generator answers the question alone; the verifier judges that answer correct or wrong and "
            "says why; the refiner, seeing both, gives the team's answer." + again + " All three score 1 if "
            "the team's answer is right, else 0."
        )


class AgentFlowEnv(TeamEnv):
    """Planner, executor, verifier and generator with an evolving memory; see the module docstring."""

    world = "agentflow"
    title = "a planner, an executor, a verifier and a generator solving a question with tools"

    def __init__(self, *, steps: int = 3, **options: Any) -> None:
        super().__init__(**options)
        self.steps = whole_number("steps", steps, 1, 10)
        self.players = ("planner", "executor", "verifier", "generator")
        self.roles = {seat: seat for seat in self.players}

    def memory(self) -> list[dict[str, Any]]:
        """The memory so far: per step, the sub-goal, the tool call and its result."""
        plans = {m.round: m for m in self.moves_of(kind="plan")}
        entries = []
        for move in self.moves_of(kind="tool"):
            plan = plans.get(move.round)
            entries.append(
                {
                    "step": move.round,
                    "subgoal": cut(plan.text, 80) if plan else "",
                    "call": move.tool,
                    "result": move.result,
                }
            )
        return entries

    def _start(self) -> None:
        self.ask(Ask("plan", ("planner",), round=1, note="The next sub-goal?"))

    def _advance(self, ask: Ask, replies: dict[PlayerId, Move]) -> None:
        if ask.kind == "plan":
            self.saw("executor")
            self.ask(
                Ask("tool", ("executor",), round=ask.round, note="One tool call: calc: EXPR or python: EXPR")
            )
        elif ask.kind == "tool":
            self.saw("verifier")
            self.ask(Ask("stop", ("verifier",), round=ask.round, note="Is the memory enough to answer?"))
        elif ask.kind == "stop" and (replies["verifier"].choice == "stop" or ask.round >= self.steps):
            self.saw("generator")
            threads = {"generator": TEAM_THREAD}
            self.ask(
                Ask("answer", ("generator",), round=ask.round, threads=threads, note="The team's answer?")
            )
        elif ask.kind == "stop":
            self.saw("planner")
            self.ask(Ask("plan", ("planner",), round=ask.round + 1, note="The next sub-goal?"))
        else:
            self._finish(replies["generator"].answer, "generator")

    def _memory_lines(self) -> list[str]:
        lines = []
        for entry in self.memory():
            call = entry["call"] or "no call"
            lines.append(f"M{entry['step']}: {call} = {entry['result'] if entry['call'] else '-'}")
        return lines or ["Memory: empty"]

    def _state(self, seat: PlayerId, ask: Ask) -> list[str]:
        lines = self._memory_lines()
        if seat == "executor":
            plan = self.moves_of(kind="plan")[-1]
            lines.append(f"Sub-goal: {cut(plan.text, 120) or '(none)'}")
        return lines

    def _facts(self, seat: PlayerId) -> dict[str, Any]:
        plans = self.moves_of(kind="plan")
        return {"memory": self.memory(), "subgoal": plans[-1].text if plans else None}

    def _rules(self) -> str:
        return (
            "The planner writes the next sub-goal; the executor turns it into one tool call (calc: EXPR "
            "for the calculator, python: EXPR for a restricted Python expression); its result goes into "
            "the shared memory; the verifier says stop when the memory is enough, else continue (at most "
            f"{self.steps} step(s)); then the generator gives the team's answer. All four score 1 if it is "
            "right, else 0."
        )


__all__ = ["TEAM_THREAD", "AgentFlowEnv", "CriticLoopEnv", "MaltEnv"]
