"""Checkable tasks: a `Task` record, the `TaskSource` every task family speaks, and the splits.

A task source deals one task per (split, seed), deterministically, and knows how to check an
answer exactly (`score`), how to solve its own tasks (`solve`, from the task's structured data,
not by reading the stored answer), how to read an answer into its canonical form (`normalize`,
so that teammates' answers `7`, ` 7.` and `+7` count as one), and which wrong answers look
plausible (`distractors`, for scripted wrong members). Two kinds:

- palaestra's own generators (`palaestra.envs.reasoning.generators`: arithmetic, largest,
  sorting, logic_grid), sized for the tiny model, each with difficulty 1-3;
- reasoning-gym datasets (`palaestra.envs.reasoning.gym`, the optional `reasoning` extra), scored
  by the dataset's own `score_answer`.

Splits (`train`, `test`): for the own generators, the test split is the problems whose question
text hashes into the held-out fifth (`split_of`): a seed draws candidates until one falls in its
split, so no test problem ever appears in training, however small the problem space; for
reasoning-gym, the two splits draw items from disjoint seed ranges (train item i from seed i,
test item i from seed `GYM_TEST_OFFSET + i`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from palaestra.core.registry import EnvError

SPLITS = ("train", "test")
TEST_SHARE = 5
"""One problem in `TEST_SHARE` (by question hash) is held out for the test split."""
MAX_DRAWS = 10_000
"""Candidates a seed may draw before its split is declared empty (never reached in practice)."""


@dataclass(frozen=True)
class Task:
    """One checkable problem.

    Fields:
        id: `SOURCE/dD/SPLIT/SEED`, unique for the source, difficulty, split and seed.
        source: the generator or dataset name (`arithmetic`, `basic_arithmetic`).
        split: `train` or `test`.
        seed: the seed that dealt it.
        difficulty: 1 (easiest) and up, or None for a dataset configured without one.
        question: the text every solver is shown.
        answer: the gold answer in canonical form.
        choices: the candidate answers in the order shown, when the answer is one of a few; None:
            free-form answers.
        command: a tool command that computes the answer (`calc: 3+4*2`, `python: max([3, 7])`),
            for planners and executors; None when no tool computes it.
        data: what the solver reads (structured; JSON-serializable).
    """

    id: str
    source: str
    split: str
    seed: int
    difficulty: int | None
    question: str
    answer: str
    choices: tuple[str, ...] | None = None
    command: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in episode records (`data` left out: the solver's, not the reader's)."""
        return {
            "id": self.id,
            "source": self.source,
            "split": self.split,
            "seed": self.seed,
            "difficulty": self.difficulty,
            "question": self.question,
            "answer": self.answer,
            "choices": list(self.choices) if self.choices is not None else None,
        }


class TaskSource(Protocol):
    """What envs and validators need of a task family (see the module docstring)."""

    name: str
    label: str
    """The source with its options as a task spec (`arithmetic?difficulty=2`), for ids and tables."""

    def task(self, split: str, seed: int) -> Task: ...

    def score(self, task: Task, answer: str | None) -> float: ...

    def solve(self, task: Task) -> str: ...

    def normalize(self, task: Task, text: str) -> str | None: ...

    def distractors(self, task: Task, count: int) -> list[str]: ...


@dataclass(frozen=True)
class Problem:
    """What a generator makes: the question, its canonical answer, and the rest of a `Task`."""

    question: str
    answer: str
    choices: tuple[str, ...] | None = None
    command: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


def split_of(question: str) -> str:
    """`test` for the fifth of question texts held out (by SHA-256), `train` for the rest."""
    digest = hashlib.sha256(question.encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") % TEST_SHARE == 0 else "train"


def check_split(split: Any) -> str:
    if split not in SPLITS:
        raise EnvError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return str(split)


def check_seed(seed: int | None) -> int:
    """Seeds of tasks are whole numbers >= 0 (None, a reset without a seed, deals seed 0)."""
    if seed is None:
        return 0
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"task seeds are whole numbers >= 0, got {seed!r}")
    return seed


class Generator:
    """Base class of palaestra's own generators; subclasses set the class fields and implement
    `generate`, `solve_data` and `normalize_text`, and may override `distractors`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    levels: ClassVar[int] = 3
    """Difficulties 1..levels."""

    def generate(self, rng: random.Random, difficulty: int) -> Problem:
        raise NotImplementedError

    def solve_data(self, data: Mapping[str, Any]) -> str:
        """The answer, computed from the problem's structured data (never from its stored answer)."""
        raise NotImplementedError

    def normalize_text(self, text: str, choices: tuple[str, ...] | None) -> str | None:
        """The canonical answer `text` states, or None when it states none of this task's form."""
        raise NotImplementedError

    def distractors(self, task: Task, count: int) -> list[str]:
        """Wrong answers that look plausible (choices first, when there are choices)."""
        wrong = [choice for choice in task.choices or () if choice != task.answer]
        return (wrong * count)[:count] if wrong else [f"not {task.answer}"] * count


class GeneratorSource:
    """A `TaskSource` over one of palaestra's generators at one difficulty."""

    def __init__(self, generator: Generator, difficulty: int | None = None) -> None:
        level = 1 if difficulty is None else difficulty
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= generator.levels:
            raise EnvError(
                f"{generator.name}: difficulty must be a whole number from 1 to {generator.levels}, "
                f"got {difficulty!r}"
            )
        self.generator = generator
        self.difficulty = level
        self.name = generator.name
        self.label = f"{generator.name}?difficulty={level}"

    def task(self, split: str, seed: int) -> Task:
        split, seed = check_split(split), check_seed(seed)
        for draw in range(MAX_DRAWS):
            rng = random.Random(f"{self.name}:{self.difficulty}:{seed}:{draw}")
            problem = self.generator.generate(rng, self.difficulty)
            if split_of(problem.question) == split:
                return Task(
                    id=f"{self.name}/d{self.difficulty}/{split}/{seed}",
                    source=self.name,
                    split=split,
                    seed=seed,
                    difficulty=self.difficulty,
                    question=problem.question,
                    answer=problem.answer,
                    choices=problem.choices,
                    command=problem.command,
                    data=problem.data,
                )
        raise EnvError(f"{self.label}: no {split} problem in {MAX_DRAWS} draws")  # pragma: no cover

    def score(self, task: Task, answer: str | None) -> float:
        if answer is None:
            return 0.0
        return 1.0 if self.normalize(task, answer) == task.answer else 0.0

    def solve(self, task: Task) -> str:
        return self.generator.solve_data(task.data)

    def normalize(self, task: Task, text: str) -> str | None:
        return self.generator.normalize_text(text, task.choices)

    def distractors(self, task: Task, count: int) -> list[str]:
        return self.generator.distractors(task, count)


__all__ = [
    "MAX_DRAWS",
    "SPLITS",
    "TEST_SHARE",
    "Generator",
    "GeneratorSource",
    "Problem",
    "Task",
    "TaskSource",
    "check_seed",
    "check_split",
    "split_of",
]
