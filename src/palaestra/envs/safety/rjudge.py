"""R-Judge's record layout: reading, checking, rendering and writing agent-interaction records.

R-Judge (docs/references.md §7) tests a model as a *judge*: it reads a recorded interaction of an
agent and says whether the agent acted safely. A record (one element of a JSON list) has:

- `id`, `scenario` (the application, e.g. a terminal or a bank), `profile` (the agent's
  description), `goal` (what the agent was asked to do);
- `contents`: the interaction, a list of turns, each a list of entries: `{"role": "user",
  "content": ...}`, `{"role": "agent", "thought": ..., "action": ...}`, `{"role": "environment",
  "content": ...}` (a flat list of entries is read as one turn);
- `label`: 1 unsafe, 0 safe; `risk_description`: what went wrong (or could have);
- `attack_type`: where the risk came from: `unintended` (the agent erred on its own) or
  `injection` (an instruction planted in what the agent read).

The published data set is a folder of such JSON files, one per scenario, under one folder per
category; `load_records(PATH)` reads a file or a folder of them (recursively), taking a record's
category from its own `category` field, else from the first folder under PATH that holds it, else
its scenario. Nothing is downloaded: PATH is yours. A malformed record fails with its file, index
and the problem in one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from palaestra.core.registry import EnvError

Role = Literal["user", "agent", "environment"]
_ROLE_ALIASES = {"assistant": "agent", "env": "environment", "tool": "environment", "human": "user"}


class RJudgeError(EnvError):
    """A record file that cannot be read; the message names the file (and record) in one line."""


class Entry(BaseModel):
    """One entry of a turn: a user message, an agent step (thought and action) or an environment
    observation."""

    model_config = ConfigDict(extra="allow")

    role: Role
    content: str = ""
    thought: str = ""
    action: str = ""

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("role"), str):
            role = data["role"].strip().lower()
            data = {**data, "role": _ROLE_ALIASES.get(role, role)}
            for key in ("content", "thought", "action"):
                value = data.get(key)
                if value is not None and not isinstance(value, str):
                    data[key] = json.dumps(value)
                elif value is None and key in data:
                    data[key] = ""
        return data


class JudgeRecord(BaseModel):
    """One R-Judge record (see the module docstring); unknown fields are kept."""

    model_config = ConfigDict(extra="allow")

    id: str
    scenario: str = ""
    profile: str = ""
    goal: str = ""
    contents: list[list[Entry]] = Field(min_length=1)
    label: Literal[0, 1]
    risk_description: str = ""
    attack_type: str = "unintended"
    category: str = ""

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() in ("0", "1"):
            return int(value.strip())
        if isinstance(value, bool):
            return int(value)
        return value

    @field_validator("attack_type", mode="before")
    @classmethod
    def _attack(cls, value: Any) -> Any:
        return "unintended" if value in (None, "") else str(value).strip().lower()

    @field_validator("contents", mode="before")
    @classmethod
    def _turns(cls, value: Any) -> Any:
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            return [value]  # a flat list of entries: one turn
        return value

    def to_layout(self) -> dict[str, Any]:
        """The record as R-Judge writes it (the category kept as an extra field)."""
        out = self.model_dump(exclude_none=True)
        out["contents"] = [[_entry_layout(e) for e in turn] for turn in self.contents]
        return out


def _entry_layout(entry: Entry) -> dict[str, Any]:
    if entry.role == "agent":
        return {"role": "agent", "thought": entry.thought, "action": entry.action}
    return {"role": entry.role, "content": entry.content}


def _first_problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _file_records(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("data", data.get("records", [data]))
    if not isinstance(data, list):
        raise RJudgeError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def load_records(path: str | Path) -> list[JudgeRecord]:
    """Every record in a file or a folder of R-Judge JSON files (see the module docstring)."""
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())
        if not files:
            raise RJudgeError(f"{root}: no .json or .jsonl record files in this folder")
    elif root.is_file():
        files = [root]
    else:
        raise RJudgeError(f"R-Judge records not found at {root} (give a .json file or a folder of them)")
    records: list[JudgeRecord] = []
    for file in files:
        try:
            raw = _file_records(file)
        except json.JSONDecodeError as exc:
            raise RJudgeError(f"{file}: not JSON ({exc})") from exc
        parts = file.relative_to(root).parts if root.is_dir() else ()
        folder = parts[0] if len(parts) > 1 else ""
        for index, item in enumerate(raw):
            try:
                record = JudgeRecord.model_validate(item)
            except ValidationError as exc:
                raise RJudgeError(f"{file} record {index}: {_first_problem(exc)}") from exc
            if not record.category:
                record = record.model_copy(update={"category": folder or record.scenario or "default"})
            records.append(record)
    return records


def write_records(records: Iterable[JudgeRecord], path: str | Path) -> Path:
    """Write records as one JSON list in R-Judge's layout; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([r.to_layout() for r in records], indent=1) + "\n", encoding="utf-8")
    return target


def render_record(record: JudgeRecord, *, max_chars: int | None = None) -> str:
    """The record as a judge reads it: profile, goal, then each entry on its own lines. With
    `max_chars`, the interaction is cut from the front (the end is where risks show)."""
    lines: list[str] = []
    for turn in record.contents:
        for entry in turn:
            if entry.role == "agent":
                thought = f"Thought: {entry.thought} " if entry.thought else ""
                lines.append(f"[Agent] {thought}Action: {entry.action}")
            else:
                lines.append(f"[{entry.role.capitalize()}] {entry.content}")
    body = "\n".join(lines)
    if max_chars is not None and len(body) > max_chars:
        body = "...(earlier turns cut)\n" + body[-max_chars:]
    head = [f"Scenario: {record.scenario}"] if record.scenario else []
    if record.profile:
        head.append(f"Agent profile: {record.profile}")
    if record.goal:
        head.append(f"Goal: {record.goal}")
    return "\n".join([*head, "Interaction:", body])


def counts(records: Sequence[JudgeRecord]) -> dict[str, int]:
    """How many records are unsafe and safe."""
    unsafe = sum(r.label for r in records)
    return {"records": len(records), "unsafe": unsafe, "safe": len(records) - unsafe}


__all__ = [
    "Entry",
    "JudgeRecord",
    "RJudgeError",
    "counts",
    "load_records",
    "render_record",
    "write_records",
]
