"""Site tasks: what to do on a self-hosted site, how to check it was done, and a gold script.

As in WebArena (docs/references.md, WebArena), a task is checked by what it left behind, not by
the path taken: `checks` are SQL queries on the site's database after the episode with the rows
they must return (an order with exactly these items, a post with this text), and information
tasks name strings the agent's answer must hold (`answer`, WebArena's `must_include`) and must
not (`reject`). Any route through the site that leaves the same state passes.

A gold script (`gold`) is a list of `Step`s naming each element the way an agent sees it (its
role and accessible name), never by a selector: `GoldPlayer` finds the element on the current
page and writes the action an agent would write (`click [21]`), so the script exercises the same
path through the action parser and the browser as any agent. `palaestra validate web` plays
every task's script in Chromium and expects 1.0, and expects doing nothing to fail.

Conversational tasks (WebLINX-style, `palaestra.envs.web.weblinx`) add `turns`: the instructor's
utterances, said one at a time, and `facts`: answers to the questions a navigator may ask,
keyed by a word the question must contain.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.envs.web.page import PageState

MAX_ANSWER_CHARS = 300
"""Longer answers score 0: a list of every value on the page is not an answer."""


@dataclass(frozen=True, slots=True)
class Step:
    """One action of a gold script.

    Fields:
        kind: `click`, `type`, `select`, `scroll`, `goto`, `back`, `answer` or `say`.
        role, name: the element acted on, as the page shows it (`button`, `Add to cart`); name is
            matched ignoring case and spacing. `contains` matches part of the name instead.
        text: what to type or select, the path to open, the answer or the utterance.
        enter: press Enter after typing.
    """

    kind: str
    role: str | None = None
    name: str | None = None
    contains: str | None = None
    text: str = ""
    enter: bool = False

    @property
    def targets_element(self) -> bool:
        return self.kind in ("click", "type", "select") or (self.kind == "scroll" and self.name is not None)

    def describe(self) -> str:
        target = self.name if self.name is not None else f"…{self.contains}…"
        element = f" {self.role or 'element'} {target!r}" if self.targets_element else ""
        said = f" {self.text!r}" if self.text else ""
        return f"{self.kind}{element}{said}"


def click(name: str | None = None, *, role: str | None = None, contains: str | None = None) -> Step:
    return Step("click", role=role, name=name, contains=contains)


def type_(name: str, text: str, *, role: str | None = None, enter: bool = False) -> Step:
    return Step("type", role=role, name=name, text=text, enter=enter)


def select(name: str, option: str) -> Step:
    return Step("select", role=None, name=name, text=option)


def goto(path: str) -> Step:
    return Step("goto", text=path)


def answer(text: str = "") -> Step:
    return Step("answer", text=text)


def say(text: str) -> Step:
    return Step("say", text=text)


@dataclass(frozen=True, slots=True)
class Check:
    """A query on the site's database after the episode and the rows it must return (in order)."""

    sql: str
    expect: tuple[tuple[Any, ...], ...]
    what: str = ""

    def passes(self, rows: Sequence[Sequence[Any]]) -> bool:
        return [tuple(_round(value) for value in row) for row in rows] == [
            tuple(_round(value) for value in row) for row in self.expect
        ]


def _round(value: Any) -> Any:
    return round(value, 2) if isinstance(value, float) else value


@dataclass(frozen=True, slots=True)
class SiteTask:
    """One task on one site (see the module docstring).

    Fields:
        id: unique across sites (`shop.buy_lamp`).
        site: the site's name (`shop`, `forum`, `wiki`, `admin`).
        intent: the instruction, as the agent (or the instructor) is given it.
        gold: the gold script.
        start: the path the browser opens first.
        persona: the signed-in user (None: the site's default).
        checks: database checks (state tasks).
        answer: strings the answer must hold, case and `$`/`,` aside (information tasks).
        reject: strings the answer must not hold.
        split: `train` or `test` (the held-out tasks).
        turns: the instructor's utterances, for conversational play (empty: the intent at once).
        facts: answers for a navigator's questions, by a keyword the question holds.
    """

    id: str
    site: str
    intent: str
    gold: tuple[Step, ...]
    start: str = "/"
    persona: str | None = None
    checks: tuple[Check, ...] = ()
    answer: tuple[str, ...] = ()
    reject: tuple[str, ...] = ()
    split: str = "train"
    turns: tuple[str, ...] = ()
    facts: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """`info` when the answer is graded, `state` when the database is."""
        return "info" if self.answer else "state"

    def utterances(self) -> tuple[str, ...]:
        return self.turns or (self.intent,)


def normalize(text: str) -> str:
    """Lower case, `$` and thousands commas dropped, spacing collapsed (`$1,039.99` -> `1039.99`)."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower().replace("$", ""))
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class Grade:
    """A task's verdict: 1.0 when every check holds and the answer is right, else 0.0."""

    reward: float
    failed: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"reward": self.reward, "failed": list(self.failed)}


def grade(task: SiteTask, db: Any, answer: str | None) -> Grade:
    """Check the database (`SiteDatabase`) and the answer against the task."""
    failed: list[str] = []
    for number, check in enumerate(task.checks, start=1):
        rows = db.rows(check.sql)
        if not check.passes(rows):
            failed.append(f"check {number} ({check.what or 'state'}) found {[tuple(r) for r in rows][:5]}")
    if task.answer:
        given = normalize(answer or "")
        if not given:
            failed.append("no answer given")
        elif len(answer or "") > MAX_ANSWER_CHARS:
            failed.append(f"the answer is longer than {MAX_ANSWER_CHARS} characters")
        else:
            missing = [wanted for wanted in task.answer if normalize(wanted) not in given]
            wrong = [bad for bad in task.reject if normalize(bad) in given]
            if missing:
                failed.append(f"the answer lacks {missing}")
            if wrong:
                failed.append(f"the answer holds {wrong}, which is wrong")
    return Grade(0.0 if failed else 1.0, tuple(failed))


class GoldScriptError(RuntimeError):
    """A gold step names no element, or more than one, on the page it is played on."""


def resolve(step: Step, page: PageState) -> int | None:
    """The element a step acts on (None for steps that act on no element)."""
    if not step.targets_element:
        return None
    found = page.find(step.role, step.name, step.contains)
    if len(found) != 1:
        listed = ", ".join(f"[{e.pid}] {e.role} {e.name!r}" for e in found[:4])
        detail = f" ({listed})" if found else ""
        raise GoldScriptError(f"{step.describe()}: {len(found)} matching elements on {page.path}{detail}")
    return found[0].pid


def action_text(step: Step, page: PageState) -> str:
    """The action an agent would write for `step` on `page`."""
    pid = resolve(step, page)
    quoted = '"' + step.text.replace('"', "'").replace("\n", "\\n") + '"'
    if step.kind == "click":
        return f"click [{pid}]"
    if step.kind == "type":
        return f"type [{pid}] {quoted}{' enter' if step.enter else ''}"
    if step.kind == "select":
        return f"select [{pid}] {quoted}"
    if step.kind == "scroll":
        return f"scroll [{pid}]" if pid is not None else f"scroll {step.text or 'down'}"
    if step.kind == "goto":
        return f"goto {step.text}"
    if step.kind == "back":
        return "back"
    if step.kind == "say":
        return f"say {quoted}"
    return f"answer {quoted}" if step.text else "answer"


class GoldPlayer:
    """Plays a task's gold script one step per call, then `answer` (state tasks end there)."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = tuple(steps)
        self.index = 0

    def act(self, page: PageState) -> str:
        if self.index >= len(self.steps):
            return "answer"
        step = self.steps[self.index]
        self.index += 1
        return action_text(step, page)


__all__ = [
    "MAX_ANSWER_CHARS",
    "Check",
    "GoldPlayer",
    "GoldScriptError",
    "Grade",
    "SiteTask",
    "Step",
    "action_text",
    "answer",
    "click",
    "goto",
    "grade",
    "normalize",
    "resolve",
    "say",
    "select",
    "type_",
]
