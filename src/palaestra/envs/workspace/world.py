"""Laying out a task's starting world in a sandbox, and the world's own changes between days.

The starting world of a task is built once per process into an image (file bytes by path and a
serialized database), and every episode copies that image into its sandbox. Changes between days
are applied straight to the sandbox (the files and the database), never through the agent's
tools: they are the world moving, not the agent acting, and they are not in the tool log.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from palaestra.envs.service.toolkit import parse_time
from palaestra.envs.workspace.documents import cell_value, make_pdf, make_workbook, set_cells
from palaestra.envs.workspace.sandbox import SCHEMA
from palaestra.envs.workspace.tasks import ChangeOp, Document, SeedBusy, SeedEvent, SeedMail, Task, World


class WorldError(ValueError):
    """A task's world or change cannot be applied (a task-authoring bug); the message says where."""


def document_bytes(document: Document, where: str) -> bytes:
    if document.text is not None:
        return document.text.encode("utf-8")
    if document.sheets is not None:
        return make_workbook(document.sheets)
    if document.pdf is not None:
        return make_pdf(document.pdf.title, document.pdf.lines)
    raise WorldError(f"{where}: a document needs text, sheets or pdf")


def _insert_mail(db: sqlite3.Connection, mail: SeedMail, me: str, stage: int) -> None:
    db.execute(
        "INSERT INTO mail (id, thread, folder, sender, recipients, cc, subject, body, sent_at, stage, unread)"
        " VALUES (?, ?, 'inbox', ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            mail.id,
            mail.thread or f"t-{mail.id}",
            mail.sender,
            json.dumps(mail.to or [me]),
            json.dumps(mail.cc),
            mail.subject,
            mail.body,
            parse_time(mail.sent_at),
            stage,
            int(mail.unread),
        ),
    )
    db.executemany(
        "INSERT INTO attachment (mail_id, name, content) VALUES (?, ?, ?)",
        [
            (mail.id, a.name, document_bytes(a, f"mail {mail.id} attachment {a.name}"))
            for a in mail.attachments
        ],
    )


def _insert_event(db: sqlite3.Connection, event: SeedEvent) -> None:
    db.execute(
        "INSERT INTO event (id, title, start, end, organizer, location, description) VALUES (?, ?, ?, ?, ?, "
        "?, ?)",
        (
            event.id,
            event.title,
            parse_time(event.start),
            parse_time(event.end),
            event.organizer,
            event.location,
            event.description,
        ),
    )
    db.executemany(
        "INSERT INTO attendee (event_id, person, response) VALUES (?, ?, ?)",
        [(event.id, person, response) for person, response in event.attendees.items()],
    )


def _insert_busy(db: sqlite3.Connection, busy: SeedBusy) -> None:
    db.execute(
        "INSERT INTO busy (person, start, end, label) VALUES (?, ?, ?, ?)",
        (busy.person, parse_time(busy.start), parse_time(busy.end), busy.label),
    )


def _fill_database(db: sqlite3.Connection, world: World, me: str, start: float) -> None:
    db.executescript(SCHEMA)
    for mail in world.mail:
        _insert_mail(db, mail, me, -1)
    for event in world.events:
        _insert_event(db, event)
    for busy in world.busy:
        _insert_busy(db, busy)
    db.executemany(
        "INSERT INTO kb_page (slug, title, body, updated_at) VALUES (?, ?, ?, ?)",
        [(page.slug, page.title, page.body, start) for page in world.pages],
    )
    db.executemany(
        "INSERT INTO kb_record (collection, id, fields, updated_at) VALUES (?, ?, ?, ?)",
        [(r.collection, r.id, json.dumps(r.fields, sort_keys=True), start) for r in world.records],
    )


_IMAGES: dict[tuple[str, int], tuple[dict[str, bytes], bytes]] = {}


def seed_image(task: Task) -> tuple[dict[str, bytes], bytes]:
    """The task's starting files (by relative path) and database image, built once per process."""
    key = (task.id, id(task))
    cached = _IMAGES.get(key)
    if cached is None:
        cached = _IMAGES[key] = _build_image(task)
    return cached


def _build_image(task: Task) -> tuple[dict[str, bytes], bytes]:
    files = {seed.path: document_bytes(seed, f"task {task.id} file {seed.path}") for seed in task.world.files}
    db = sqlite3.connect(":memory:")
    try:
        _fill_database(db, task.world, task.me, parse_time(task.stages[0].day))
    except (sqlite3.Error, ValueError) as exc:
        raise WorldError(f"task {task.id}: the starting world does not load ({exc})") from exc
    image = db.serialize()
    db.close()
    return files, image


def apply_change(op: ChangeOp, db: sqlite3.Connection, files_root: Path, task: Task, stage: int) -> None:
    """Apply one change to a sandbox (its database and files root). WorldError when the change
    does not fit the world (a task bug: `palaestra validate workspace` reports it)."""
    where = f"task {task.id}, stage {stage + 1}, {op.op}"
    try:
        _apply(op, db, files_root, task, stage, where)
    except sqlite3.Error as exc:
        raise WorldError(f"{where}: the database refused the change ({exc})") from exc


def _apply(op: ChangeOp, db: sqlite3.Connection, root: Path, task: Task, stage: int, where: str) -> None:
    now = parse_time(task.stages[stage].day)
    if op.op == "add_mail" and op.mail is not None:
        _insert_mail(db, op.mail, task.me, stage)
    elif op.op == "set_cell" and op.path and op.cell:
        target = root / op.path
        if not target.is_file():
            raise WorldError(f"{where}: no workbook {op.path}")
        value = cell_value(op.value) if isinstance(op.value, str) else op.value
        target.write_bytes(set_cells(target.read_bytes(), {op.cell: value}, op.path, op.sheet))
    elif op.op == "replace_file" and op.file is not None:
        target = root / op.file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(document_bytes(op.file, where))
    elif op.op == "add_event" and op.event is not None:
        _insert_event(db, op.event)
    elif op.op == "move_event" and op.event_id and op.start and op.end:
        _changed(
            db.execute(
                "UPDATE event SET start = ?, end = ? WHERE id = ?",
                (parse_time(op.start), parse_time(op.end), op.event_id),
            ),
            where,
        )
    elif op.op == "cancel_event" and op.event_id:
        _changed(db.execute("UPDATE event SET status = 'cancelled' WHERE id = ?", (op.event_id,)), where)
    elif op.op == "add_busy" and op.busy is not None:
        _insert_busy(db, op.busy)
    elif op.op == "set_response" and op.event_id and op.person:
        _changed(
            db.execute(
                "UPDATE attendee SET response = ? WHERE event_id = ? AND person = ?",
                (op.value, op.event_id, op.person),
            ),
            where,
        )
    elif op.op == "edit_page" and op.slug:
        _changed(
            db.execute(
                "UPDATE kb_page SET body = ?, updated_at = ? WHERE slug = ?", (str(op.value), now, op.slug)
            ),
            where,
        )
    elif op.op == "update_record" and op.collection and op.record_id and op.field:
        row = db.execute(
            "SELECT fields FROM kb_record WHERE collection = ? AND id = ?", (op.collection, op.record_id)
        ).fetchone()
        if row is None:
            raise WorldError(f"{where}: no record {op.collection}/{op.record_id}")
        fields = json.loads(row[0])
        fields[op.field] = str(op.value)
        db.execute(
            "UPDATE kb_record SET fields = ?, updated_at = ? WHERE collection = ? AND id = ?",
            (json.dumps(fields, sort_keys=True), now, op.collection, op.record_id),
        )
    else:
        raise WorldError(f"{where}: missing the fields this change needs")


def _changed(cursor: sqlite3.Cursor, where: str) -> None:
    if cursor.rowcount != 1:
        raise WorldError(f"{where}: changed {cursor.rowcount} rows, not 1 (check the id)")


__all__ = ["WorldError", "apply_change", "document_bytes", "seed_image"]
