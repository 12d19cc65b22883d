"""Small builders the workspace task generator writes tasks with (plain dicts in the shape of
`palaestra.envs.workspace.tasks.Task`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def call(tool_name: str, /, **arguments: Any) -> dict[str, Any]:
    return {"name": tool_name, "arguments": arguments}


def check(check_id: str, kind: str, text: str, weight: float = 1.0, **params: Any) -> dict[str, Any]:
    return {"id": check_id, "kind": kind, "text": text, "weight": weight, "params": params}


def stage(
    day: str,
    message: str,
    gold: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    *,
    changes: list[dict[str, Any]] | None = None,
    stale: list[dict[str, Any]] | None = None,
    refresh: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"day": day, "message": message, "gold": gold, "checks": checks}
    if changes:
        out["changes"] = changes
    if stale is not None:
        out["stale"] = stale
    if refresh:
        out["refresh"] = refresh
    return out


def change(kind: str, note: str, *ops: dict[str, Any]) -> dict[str, Any]:
    assert kind in ("loud", "silent")
    return {"kind": kind, "note": note, "ops": list(ops)}


def op(kind: str, **fields: Any) -> dict[str, Any]:
    return {"op": kind, **fields}


def mail(
    mail_id: str,
    sender: str,
    subject: str,
    body: str,
    sent_at: str,
    *,
    thread: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    to: list[str] | None = None,
    unread: bool = True,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": mail_id,
        "sender": sender,
        "subject": subject,
        "body": body,
        "sent_at": sent_at,
    }
    if thread:
        out["thread"] = thread
    if attachments:
        out["attachments"] = attachments
    if to:
        out["to"] = to
    if not unread:
        out["unread"] = False
    return out


def pdf(title: str, lines: list[str]) -> dict[str, Any]:
    return {"pdf": {"title": title, "lines": lines}}


def at(date: str, hour: int, minute: int = 0) -> str:
    """`2024-06-10T09:30:00Z`."""
    return f"{date}T{hour:02d}:{minute:02d}:00Z"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def plus(text: str, **delta: float) -> str:
    return iso(parse(text) + timedelta(**delta))


def days_after(date: str, days: int) -> str:
    return (datetime.fromisoformat(date) + timedelta(days=days)).strftime("%Y-%m-%d")


def hhmm(text: str) -> str:
    return parse(text).strftime("%H:%M")


def money(value: float) -> str:
    return f"{value:.2f}"


def task(
    task_id: str,
    scenario: str,
    title: str,
    me: str,
    name: str,
    world: dict[str, Any],
    stages: list[dict[str, Any]],
    final_checks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": task_id,
        "scenario": scenario,
        "title": title,
        "me": me,
        "name": name,
        "world": world,
        "stages": stages,
        "final_checks": final_checks or [],
    }
