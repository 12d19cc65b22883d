"""`ReasoningEnv`: one seat, one checkable task, one answer: the single-agent baseline.

Seat `solver`. On reset the solver gets the rules and one turn block in the MARS layout:

    Information of Turn-1:
    GAME STATE:
    Q: What is 3+4?
    LEGAL ACTIONS: 0, 1, 2, ..., 18

(LEGAL ACTIONS only for tasks whose answer is one of a few choices, with `choices=true`, the
default). The answer is the text inside the last `<answer>…</answer>`, or the whole reply. An
empty reply, one that states no answer of the task's form (`What is 3+4?` answered `seven`) or,
with choices, an answer not among them is refused: asked again up to `retries` times, then
scored as no answer (0). Otherwise the task's own verifier scores it (1 or 0 for palaestra's
generators, reasoning-gym's `score_answer` in [0, 1] for its datasets) and the episode ends with
that reward. `info["reasoning"]` holds the task, the answer read and its score.

Options: `task` (a task spec: `arithmetic`, `sorting?difficulty=2`, a reasoning-gym dataset),
`difficulty`, `split` (`train` | `test`), `choices`, `retries`, `max_answer_chars`, and any
reasoning-gym config field.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.answers import last_answer
from palaestra.core.env import Action, InvalidAction, PlayerId, TimeStep, action_text
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError, EnvSpec
from palaestra.envs.reasoning.sources import source_for
from palaestra.envs.reasoning.tasks import Task, TaskSource, check_split

SEAT: PlayerId = "solver"
MAX_ANSWER_CHARS = 4096
_ECHO = 500


def whole_number(option: str, value: Any, low: int, high: int | None = None) -> int:
    """An env option that must be a whole number in [low, high]; EnvError naming it otherwise."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise EnvError(f"{option} must be a whole number {span}, got {value!r}")
    return value


def flag(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise EnvError(f"{option} must be true or false, got {value!r}")
    return value


def read_answer(
    source: TaskSource,
    task: Task,
    text: str,
    *,
    choices: Sequence[str] | None,
    max_chars: int = MAX_ANSWER_CHARS,
) -> tuple[str | None, str]:
    """(the canonical answer, "") or (None, why it was refused), from a reply's text."""
    if len(text) > max_chars:
        return (
            None,
            f"the reply has {len(text)} characters, over the {max_chars}-character limit; answer briefly",
        )
    found = last_answer(text)
    stated = (found if found is not None else text).strip()
    if not stated:
        return None, "no answer; give it inside <answer></answer>"
    canonical = source.normalize(task, stated)
    if canonical is None:
        return (
            None,
            f"{stated[:60]!r} states no answer to this question; give only the answer in <answer></answer>",
        )
    if choices is not None and canonical not in choices:
        return None, f"{canonical[:60]!r} is not one of the legal actions ({', '.join(choices[:12])})"
    return canonical, ""


def answer_of(text: str) -> str:
    """What a reply states as its answer: the inside of its last answer tag, else all of it."""
    found = last_answer(text)
    return (found if found is not None else text).strip()


@dataclass
class _State:
    task: Task | None = None
    done: bool = True
    strikes: int = 0
    answer: str | None = None
    score: float = 0.0
    outbox: list[Message] = field(default_factory=list)


class ReasoningView:
    """What scripted agents in the solver's seat may read (`privileged_view`): `facts()`."""

    __slots__ = ("_env",)

    def __init__(self, env: ReasoningEnv) -> None:
        self._env = env

    @property
    def env_name(self) -> str:
        spec = self._env.spec
        return str(spec.id) if spec is not None else type(self._env).__name__

    def facts(self) -> dict[str, Any]:
        return self._env.facts()


class ReasoningEnv:
    """One checkable task for one solver; see the module docstring."""

    def __init__(
        self,
        *,
        task: str = "arithmetic",
        difficulty: int | None = None,
        split: str = "train",
        choices: bool = True,
        retries: int = 1,
        max_answer_chars: int = MAX_ANSWER_CHARS,
        **task_options: Any,
    ) -> None:
        self.spec: EnvSpec | None = None
        self.players: tuple[PlayerId, ...] = (SEAT,)
        self.source = source_for(task, difficulty, task_options)
        self.split = check_split(split)
        self.show_choices = flag("choices", choices)
        self.retries = whole_number("retries", retries, 0)
        self.max_answer_chars = whole_number("max_answer_chars", max_answer_chars, 1)
        self.state = _State()
        self._view = ReasoningView(self)

    # ----- Env API ---------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        task = self.source.task(self.split, seed or 0)
        self.state = _State(task=task, done=False)
        rules = (
            "GAME RULES:\nAnswer the question. One answer is right; it is checked exactly.\n\n"
            "RESPONSE INSTRUCTIONS:\nThink if you like, then give only the final answer inside "
            "<answer></answer>, e.g. <answer>7</answer>."
        )
        self.state.outbox = [
            Message(role="system", name="env", content="You are solving a reasoning task."),
            Message(role="user", name="env", content=rules),
        ]
        self._prompt()
        return self._timestep()

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        state = self.state
        if state.done or state.task is None:
            raise ValueError("reasoning: the episode is over; call reset() first")
        if set(actions) != {SEAT}:
            raise ValueError(f"reasoning: expected one action for {SEAT!r}, got {sorted(actions)}")
        raw = action_text(actions[SEAT])
        canonical, reason = read_answer(
            self.source, state.task, raw, choices=self.choices(), max_chars=self.max_answer_chars
        )
        if reason:
            if state.strikes < self.retries:
                state.strikes += 1
                self._prompt(reason)
                return self._timestep((InvalidAction(SEAT, raw[:_ECHO], reason, "retry"),))
            refused: tuple[InvalidAction, ...] = (InvalidAction(SEAT, raw[:_ECHO], reason, "default"),)
            return self._finish(None, None, refused)
        return self._finish(canonical, answer_of(raw), ())

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        if self.state.done or player != SEAT:
            return []
        return self.choices()

    def choices(self) -> tuple[str, ...] | None:
        task = self.state.task
        return task.choices if task is not None and self.show_choices else None

    def sample_action(self, player: PlayerId, rng: Any) -> Action:
        """A random guess for free-form tasks (check_env and random play)."""
        return str(rng.choice(["", "7", "<answer>1 2 3</answer>", "Ann"]))

    def privileged_view(self, player: PlayerId) -> ReasoningView:
        return self._view

    def facts(self) -> dict[str, Any]:
        """For scripted agents: the question, what to give, and the solver's answer."""
        task = self.state.task
        if task is None:
            return {"world": "reasoning", "kind": None}
        return {
            "world": "reasoning",
            "seat": SEAT,
            "seat_index": 0,
            "seats": [SEAT],
            "peers": {},
            "peer_history": {},
            "own": [],
            "role": "solver",
            "kind": None if self.state.done else "answer",
            "question": task.question,
            "choices": self.choices(),
            "solution": self.source.solve(task),
            "distractors": self.source.distractors(task, 3),
            "command": task.command,
        }

    def render(self) -> str:
        task, state = self.state.task, self.state
        if task is None:
            return "(not started)"
        return f"{task.id}: {task.question} gold={task.answer} answer={state.answer} score={state.score:g}"

    def close(self) -> None:
        return None

    def snapshot(self) -> Any:
        return copy.deepcopy(self.state)

    def restore(self, snapshot: Any) -> None:
        self.state = copy.deepcopy(snapshot)

    def state_hash(self) -> str:
        return hashlib.sha256(repr(self.state).encode()).hexdigest()

    # ----- internals ---------------------------------------------------------------------------------
    def _prompt(self, retry_reason: str = "") -> None:
        task = self.state.task
        assert task is not None
        prefix = f"Invalid action: {retry_reason}. Try again.\n" if retry_reason else ""
        lines = [f"{prefix}Information of Turn-1:", "GAME STATE:", f"Q: {task.question}"]
        choices = self.choices()
        if choices is not None:
            lines.append("LEGAL ACTIONS: " + ", ".join(choices))
        self.state.outbox.append(Message(role="user", name="env", content="\n".join(lines)))

    def _finish(
        self, canonical: str | None, stated: str | None, refused: tuple[InvalidAction, ...]
    ) -> TimeStep:
        state = self.state
        assert state.task is not None
        state.done = True
        state.answer = canonical
        state.score = self.source.score(state.task, stated) if stated is not None else 0.0
        verdict = "right" if state.score >= 1.0 else "wrong"
        shown = canonical if canonical is not None else "no answer"
        state.outbox.append(
            Message(
                role="user",
                name="env",
                content=f"GAME OVER. Your answer {shown} is {verdict}. Score: {state.score:g}.",
            )
        )
        info = {
            "returns": {SEAT: state.score},
            "reasoning": {
                "task": state.task.to_dict(),
                "source": self.source.label,
                "answer": canonical,
                "score": state.score,
                "correct": state.score >= 1.0,
            },
        }
        return self._timestep(refused, rewards={SEAT: state.score}, info=info)

    def _timestep(
        self,
        refused: tuple[InvalidAction, ...] = (),
        *,
        rewards: dict[PlayerId, float] | None = None,
        info: dict[str, Any] | None = None,
    ) -> TimeStep:
        observations = {SEAT: self.state.outbox} if self.state.outbox else {}
        self.state.outbox = []
        if self.state.done:
            return TimeStep(
                to_act=(), observations=observations, rewards=rewards or {}, terminated=True,
                info=info or {}, invalid_actions=refused,
            )  # fmt: skip
        return TimeStep(to_act=(SEAT,), observations=observations, invalid_actions=refused)


__all__ = ["SEAT", "ReasoningEnv", "ReasoningView", "answer_of", "flag", "read_answer", "whole_number"]
