"""palaestra's own task generators, sized for the tiny model: short questions, short answers.

Each is deterministic given its random generator, checks answers exactly, and solves its own
problems from their structured data by a different path than the one that made them:

- `arithmetic`: d1 `a+b` with one-digit numbers (answers 0-18, offered as choices); d2 three
  one-digit terms with `+ - *`; d3 four terms up to 20 with one parenthesized pair. The generator
  folds its own terms; the solver parses the question's expression with the calculator
  (`palaestra.envs.reasoning.evaluator`). Answers are integers.
- `largest`: the largest of d1 two distinct digits, d2 three distinct two-digit numbers, d3 five
  distinct numbers from -99 to 99; the numbers are the choices.
- `sorting`: d1 three distinct digits ascending, d2 five numbers 0-99 ascending, d3 six numbers
  from -50 to 50 ascending or descending. Answers are the numbers separated by spaces (commas and
  brackets are read too).
- `logic_grid`: d1 two people and two pets, d2 three people and three pets, d3 three people with
  a pet and a colour each; clues ("Ann does not own the cat.", "The dog owner likes red.") are
  added until exactly one assignment fits them, then every clue that is not needed is dropped. The
  solver searches every assignment; a puzzle with more or fewer than one solution is an error.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from palaestra.envs.reasoning.evaluator import ToolError, calculate, format_number
from palaestra.envs.reasoning.tasks import Generator, Problem, Task

_INTEGER = re.compile(r"[+-]?\d{1,15}")
_LIST_TEXT = re.compile(r"[\s,;\[\]()+\-\d]*")
_LIST_NUMBER = re.compile(r"[+-]?\d{1,15}")


def read_integer(text: str) -> str | None:
    """`7`, ` +7.`, `= 7` -> `7`; None when the text is not one integer."""
    candidate = text.strip().lstrip("=").strip().rstrip(".").replace(" ", "")
    if not _INTEGER.fullmatch(candidate):
        return None
    return str(int(candidate))


def _fold(values: Sequence[int], operators: Sequence[str]) -> int:
    """The value of `v0 op0 v1 op1 v2 ...` with `*` before `+` and `-` (the generator's own path)."""
    terms, signs = [values[0]], []
    for operator, value in zip(operators, values[1:], strict=True):
        if operator == "*":
            terms[-1] *= value
        else:
            terms.append(value)
            signs.append(operator)
    total = terms[0]
    for sign, term in zip(signs, terms[1:], strict=True):
        total = total + term if sign == "+" else total - term
    return total


class Arithmetic(Generator):
    name = "arithmetic"
    description = "short integer arithmetic: a+b (d1), three terms (d2), four terms with parentheses (d3)"

    def generate(self, rng: random.Random, difficulty: int) -> Problem:
        if difficulty == 1:
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            expression, value = f"{a}+{b}", a + b
            choices: tuple[str, ...] | None = tuple(str(n) for n in range(19))
        elif difficulty == 2:
            values = [rng.randint(1, 9) for _ in range(3)]
            operators = [rng.choice("+-*") for _ in range(2)]
            expression = f"{values[0]}{operators[0]}{values[1]}{operators[1]}{values[2]}"
            value, choices = _fold(values, operators), None
        else:
            values = [rng.randint(2, 20) for _ in range(4)]
            operators = [rng.choice("+-*") for _ in range(3)]
            inner = _fold(values[:2], operators[:1])
            expression = (
                f"({values[0]}{operators[0]}{values[1]}){operators[1]}{values[2]}{operators[2]}{values[3]}"
            )
            value, choices = _fold([inner, *values[2:]], operators[1:]), None
        return Problem(
            question=f"What is {expression}?",
            answer=str(value),
            choices=choices,
            command=f"calc: {expression}",
            data={"expression": expression},
        )

    def solve_data(self, data: Mapping[str, Any]) -> str:
        return format_number(calculate(str(data["expression"])))

    def normalize_text(self, text: str, choices: tuple[str, ...] | None) -> str | None:
        return read_integer(text)

    def distractors(self, task: Task, count: int) -> list[str]:
        gold = int(task.answer)
        wrong = [str(gold + offset) for offset in (1, -1, 2, -2, 10, -10, 3, -3)]
        if task.choices is not None:
            wrong = [w for w in wrong if w in task.choices]
        return (wrong * count)[:count]


class Largest(Generator):
    name = "largest"
    description = "the largest of 2 digits (d1), 3 two-digit numbers (d2), 5 numbers from -99 to 99 (d3)"

    def generate(self, rng: random.Random, difficulty: int) -> Problem:
        pools = {1: (range(10), 2), 2: (range(10, 100), 3), 3: (range(-99, 100), 5)}
        pool, size = pools[difficulty]
        numbers = rng.sample(list(pool), size)
        shown = ", ".join(map(str, numbers))
        return Problem(
            question=f"Which number is largest: {shown}?",
            answer=str(max(numbers)),
            choices=tuple(map(str, numbers)),
            command=f"python: max([{shown}])",
            data={"numbers": numbers},
        )

    def solve_data(self, data: Mapping[str, Any]) -> str:
        best = None
        for number in data["numbers"]:  # a scan, not the generator's max()
            if best is None or number > best:
                best = number
        return str(best)

    def normalize_text(self, text: str, choices: tuple[str, ...] | None) -> str | None:
        return read_integer(text)


class Sorting(Generator):
    name = "sorting"
    description = "sort 3 digits (d1), 5 numbers 0-99 (d2), 6 numbers -50..50 either way (d3)"

    def generate(self, rng: random.Random, difficulty: int) -> Problem:
        if difficulty == 1:
            numbers, descending = rng.sample(range(10), 3), False
        elif difficulty == 2:
            numbers, descending = [rng.randint(0, 99) for _ in range(5)], False
        else:
            numbers, descending = [rng.randint(-50, 50) for _ in range(6)], rng.random() < 0.5
        order = "descending" if descending else "ascending"
        listed = ", ".join(map(str, numbers))
        reverse = ", reverse=True" if descending else ""
        return Problem(
            question=f"Sort {order}: {' '.join(map(str, numbers))}",
            answer=" ".join(map(str, sorted(numbers, reverse=descending))),
            command=f"python: sorted([{listed}]{reverse})",
            data={"numbers": numbers, "descending": descending},
        )

    def solve_data(self, data: Mapping[str, Any]) -> str:
        remaining, picked = list(data["numbers"]), []
        pick = max if data["descending"] else min
        while remaining:  # selection sort: another path than sorted()
            best = pick(remaining)
            remaining.remove(best)
            picked.append(best)
        return " ".join(map(str, picked))

    def normalize_text(self, text: str, choices: tuple[str, ...] | None) -> str | None:
        candidate = text.strip().rstrip(".")
        if not candidate or not _LIST_TEXT.fullmatch(candidate):
            return None
        numbers = _LIST_NUMBER.findall(candidate)
        return " ".join(str(int(n)) for n in numbers) if numbers else None

    def distractors(self, task: Task, count: int) -> list[str]:
        gold = task.answer.split()
        swapped = [gold[1], gold[0], *gold[2:]]
        wrong = [" ".join(map(str, task.data["numbers"])), " ".join(reversed(gold)), " ".join(swapped)]
        wrong = [w for w in dict.fromkeys(wrong) if w != task.answer] or [" ".join(gold[:-1])]
        return (wrong * count)[:count]


PEOPLE = ("Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal")
PETS = ("cat", "dog", "fish", "bird")
COLOURS = ("red", "blue", "green", "gray")
Clue = tuple[str, ...]
Assignment = dict[str, tuple[str, ...]]
"""Per attribute (`pet`, `colour`), the value of each person, in the order of the people."""


def _owner(assignment: Assignment, attribute: str, value: str) -> int:
    return assignment[attribute].index(value)


def _holds(clue: Clue, people: Sequence[str], assignment: Assignment) -> bool:
    kind = clue[0]
    if kind in ("has", "not"):
        person, attribute, value = clue[1:]
        has = assignment[attribute][people.index(person)] == value
        return has if kind == "has" else not has
    first_attribute, first_value, second_attribute, second_value = clue[1:]
    same = _owner(assignment, first_attribute, first_value) == _owner(
        assignment, second_attribute, second_value
    )
    return same if kind == "same" else not same


def _assignments(people: Sequence[str], values: Mapping[str, Sequence[str]]) -> list[Assignment]:
    attributes = list(values)
    per_attribute = [list(itertools.permutations(values[a], len(people))) for a in attributes]
    return [dict(zip(attributes, combo, strict=True)) for combo in itertools.product(*per_attribute)]


def _verb(attribute: str, negative: bool) -> str:
    if attribute == "pet":
        return "does not own the" if negative else "owns the"
    return "does not like" if negative else "likes"


def clue_text(clue: Clue) -> str:
    kind = clue[0]
    if kind in ("has", "not"):
        person, attribute, value = clue[1:]
        return f"{person} {_verb(attribute, kind == 'not')} {value}."
    first_attribute, first_value, second_attribute, second_value = clue[1:]
    subject = f"The {first_value} owner" if first_attribute == "pet" else f"The one who likes {first_value}"
    return f"{subject} {_verb(second_attribute, kind == 'differ')} {second_value}."


def _names(items: Sequence[str]) -> str:
    return " and ".join(items) if len(items) < 3 else f"{', '.join(items[:-1])} and {items[-1]}"


class LogicGrid(Generator):
    name = "logic_grid"
    description = "small logic grids: 2 people and pets (d1), 3 people (d2), pets and colours (d3)"

    def generate(self, rng: random.Random, difficulty: int) -> Problem:
        size = 2 if difficulty == 1 else 3
        people = rng.sample(PEOPLE, size)
        values: dict[str, list[str]] = {"pet": rng.sample(PETS, size)}
        if difficulty == 3:
            values["colour"] = rng.sample(COLOURS, size)
        truth: Assignment = {
            attribute: tuple(rng.sample(options, size)) for attribute, options in values.items()
        }
        clues = self._clues(rng, people, values, truth)
        stated = {clue[3] for clue in clues if clue[0] == "has" and clue[2] == "pet"}
        asked = rng.choice([pet for pet in values["pet"] if pet not in stated] or values["pet"])
        intro = f"{_names(people)} each own one pet: {', '.join(values['pet'])}."
        if "colour" in values:
            intro += f" Each likes one colour: {', '.join(values['colour'])}."
        question = " ".join([intro, *(clue_text(clue) for clue in clues), f"Who owns the {asked}?"])
        return Problem(
            question=question,
            answer=people[_owner(truth, "pet", asked)],
            choices=tuple(people),
            data={
                "people": people,
                "values": values,
                "clues": [list(c) for c in clues],
                "ask": ["pet", asked],
            },
        )

    def _clues(
        self, rng: random.Random, people: list[str], values: dict[str, list[str]], truth: Assignment
    ) -> list[Clue]:
        """True clues, indirect ones first, until exactly one assignment fits; then the unneeded
        ones dropped (the last added first)."""
        direct: list[Clue] = []
        indirect: list[Clue] = []
        for attribute, options in values.items():
            for person, value in itertools.product(people, options):
                stated: Clue = ("has", person, attribute, value)
                if _holds(stated, people, truth):
                    direct.append(stated)
                else:
                    indirect.append(("not", person, attribute, value))
        if "colour" in values:
            for pet, colour in itertools.product(values["pet"], values["colour"]):
                same = ("same", "pet", pet, "colour", colour)
                indirect.append(
                    same if _holds(same, people, truth) else ("differ", "pet", pet, "colour", colour)
                )
        rng.shuffle(direct)
        rng.shuffle(indirect)
        every = _assignments(people, values)
        chosen: list[Clue] = []
        fitting = every
        for clue in indirect + direct:
            if len(fitting) == 1:
                break
            narrowed = [a for a in fitting if _holds(clue, people, a)]
            if len(narrowed) < len(fitting):
                chosen.append(clue)
                fitting = narrowed
        for clue in reversed(list(chosen)):
            rest = [c for c in chosen if c != clue]
            if sum(all(_holds(c, people, a) for c in rest) for a in every) == 1:
                chosen = rest
        return chosen

    def solve_data(self, data: Mapping[str, Any]) -> str:
        people = list(data["people"])
        clues = [tuple(clue) for clue in data["clues"]]
        fitting = [
            a for a in _assignments(people, data["values"]) if all(_holds(c, people, a) for c in clues)
        ]
        if len(fitting) != 1:
            raise ToolError(f"the puzzle has {len(fitting)} solutions, not one")
        attribute, value = data["ask"]
        return str(people[_owner(fitting[0], attribute, value)])

    def normalize_text(self, text: str, choices: tuple[str, ...] | None) -> str | None:
        names = {name.lower(): name for name in (choices or PEOPLE)}
        found = {names[word] for word in re.findall(r"[a-z]+", text.lower()) if word in names}
        return found.pop() if len(found) == 1 else None


GENERATORS: dict[str, Generator] = {g.name: g for g in (Arithmetic(), Largest(), Sorting(), LogicGrid())}
"""palaestra's own generators by name."""

__all__ = ["GENERATORS", "Arithmetic", "Largest", "LogicGrid", "Sorting", "clue_text", "read_integer"]
