"""Workspace tasks: a starting world, then stages (working days) with the world's own changes
between them, a gold plan per stage, and weighted checkers per stage and at the end.

A task is one JSON line of `data/tasks.jsonl` (written by `tools/workspace_tasks/generate.py`):

    id, scenario, title, me (the user's address), name (the user's name)
    world:   the services at the start: files (text, .xlsx sheets, PDFs), mail, events, other
             people's busy times, knowledge-base pages and records
    stages:  each with
      day        when the working day starts (the world clock)
      changes    what happened since the previous day, applied before it starts: `loud` ones come
                 with a notification in the day's first message, `silent` ones do not (a cell
                 edited, a meeting moved, a record changed)
      message    the day's instructions, from the user
      gold       the tool calls of a correct day's work, in order
      stale      what an agent that never looks again at what it read on an earlier day does
                 instead (None: the same as gold, less the repeated reads)
      refresh    the reads a careful agent repeats before each write (what `always re-read` costs)
      checks     weighted checkers run on the services when the day ends
    final_checks checkers run when the last day ends

Checkers are plain Python over the services' state (`palaestra.envs.workspace.checkers`); a task
scores passed weight / total weight (ClawMark, docs/references.md §7), and succeeds strictly when
every checker passes.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from palaestra.core.registry import EnvError

TASKS_FILE = Path(__file__).parent / "data" / "tasks.jsonl"
Cell = str | int | float | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PdfSpec(_Strict):
    title: str
    lines: list[str]


class Document(_Strict):
    """A file's content: text, sheets of an .xlsx workbook (name -> rows), or a PDF."""

    text: str | None = None
    sheets: dict[str, list[list[Cell]]] | None = None
    pdf: PdfSpec | None = None


class SeedFile(Document):
    path: str


class Attachment(Document):
    name: str


class SeedMail(_Strict):
    id: str
    sender: str
    subject: str
    body: str
    sent_at: str
    to: list[str] = Field(default_factory=list)
    """Empty: the user alone."""
    cc: list[str] = Field(default_factory=list)
    thread: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    unread: bool = True


class SeedEvent(_Strict):
    id: str
    title: str
    start: str
    end: str
    organizer: str
    attendees: dict[str, str] = Field(default_factory=dict)
    """Address -> answer (`needs_action`, `accepted`, `declined`, `tentative`)."""
    location: str = ""
    description: str = ""


class SeedBusy(_Strict):
    person: str
    start: str
    end: str
    label: str = "busy"


class SeedPage(_Strict):
    slug: str
    title: str
    body: str


class SeedRecord(_Strict):
    collection: str
    id: str
    fields: dict[str, str]


class World(_Strict):
    files: list[SeedFile] = Field(default_factory=list)
    mail: list[SeedMail] = Field(default_factory=list)
    events: list[SeedEvent] = Field(default_factory=list)
    busy: list[SeedBusy] = Field(default_factory=list)
    pages: list[SeedPage] = Field(default_factory=list)
    records: list[SeedRecord] = Field(default_factory=list)


ChangeKind = Literal[
    "add_mail",
    "set_cell",
    "replace_file",
    "add_event",
    "move_event",
    "cancel_event",
    "add_busy",
    "set_response",
    "edit_page",
    "update_record",
]


class ChangeOp(_Strict):
    """One edit the world makes by itself; which fields apply depends on `op`:

    add_mail (mail), set_cell (path, cell, value, sheet), replace_file (file), add_event (event),
    move_event (event_id,
    start, end), cancel_event (event_id), add_busy (busy), set_response (event_id, person, value),
    edit_page (slug, value: the new body), update_record (collection, record_id, field, value).
    """

    op: ChangeKind
    mail: SeedMail | None = None
    file: SeedFile | None = None
    event: SeedEvent | None = None
    busy: SeedBusy | None = None
    path: str | None = None
    cell: str | None = None
    sheet: str | None = None
    value: Cell = None
    event_id: str | None = None
    start: str | None = None
    end: str | None = None
    person: str | None = None
    slug: str | None = None
    collection: str | None = None
    record_id: str | None = None
    field: str | None = None


class Change(_Strict):
    """What happened between two days: `loud` changes are announced in `note`, silent ones are not
    (their `note` says what changed, for people reading the task)."""

    kind: Literal["loud", "silent"]
    note: str
    ops: list[ChangeOp]


class Call(_Strict):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": dict(self.arguments)}


class Check(_Strict):
    """One weighted checker: `kind` names a function of `palaestra.envs.workspace.checkers`,
    `params` its arguments; `text` says in words what it checks."""

    id: str
    kind: str
    text: str
    weight: float = 1.0
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("weight")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("a checker's weight must be positive")
        return value


class Stage(_Strict):
    day: str
    message: str
    changes: list[Change] = Field(default_factory=list)
    gold: list[Call]
    stale: list[Call] | None = None
    refresh: list[Call] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)


class Task(_Strict):
    id: str
    scenario: str
    title: str
    me: str
    name: str
    world: World
    stages: list[Stage]
    final_checks: list[Check] = Field(default_factory=list)

    @field_validator("stages")
    @classmethod
    def _some(cls, stages: list[Stage]) -> list[Stage]:
        if not stages:
            raise ValueError("a task needs at least one stage")
        return stages

    @property
    def changes(self) -> list[Change]:
        return [change for stage in self.stages for change in stage.changes]

    def checks_of(self, stage: int | None) -> list[Check]:
        """The checkers of one stage (None: the final ones)."""
        return self.final_checks if stage is None else self.stages[stage].checks


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[Task, ...]:
    if not path.is_file():
        raise EnvError(f"workspace tasks file {path} is missing; run tools/workspace_tasks/generate.py")
    tasks = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            tasks.append(Task.model_validate(json.loads(line)))
        except ValueError as exc:
            raise EnvError(f"{path.name} line {number}: {str(exc).splitlines()[0]}") from exc
    return tuple(tasks)


def load_tasks(path: Path | None = None) -> tuple[Task, ...]:
    """Every workspace task, in file order."""
    return _load(path or TASKS_FILE)


def task_by_id(task_id: str) -> Task:
    for task in load_tasks():
        if task.id == task_id:
            return task
    examples = ", ".join(task.id for task in load_tasks()[:4])
    raise EnvError(
        f"no workspace task {task_id!r}; tasks look like {examples} (see `palaestra validate workspace -v`)"
    )


def scenarios() -> list[str]:
    return list(dict.fromkeys(task.scenario for task in load_tasks()))


__all__ = [
    "Attachment",
    "Call",
    "Change",
    "ChangeOp",
    "Check",
    "Document",
    "PdfSpec",
    "SeedBusy",
    "SeedEvent",
    "SeedFile",
    "SeedMail",
    "SeedPage",
    "SeedRecord",
    "Stage",
    "Task",
    "World",
    "load_tasks",
    "scenarios",
    "task_by_id",
]
