"""Workspace checkers: plain Python over the services' state, no model in the loop.

Each checker kind is a function `(state, **params) -> (passed, detail)`, where `state` reads the
sandbox (database and files) and `detail` says in a line what was found. Tasks name a kind and
its parameters (`tasks.Check`); `run_checks` runs a list of them and scores them by weight
(passed weight / total weight, docs/references.md §7).

Text is compared leniently where people write it (mail bodies, pages, files): case, runs of
spaces and thousands separators do not matter, so `1,234.50` matches `1234.50`. Numbers in cells
and records are compared as numbers (to a cent).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from palaestra.envs.service.toolkit import parse_time
from palaestra.envs.workspace.documents import pdf_text, workbook_cells
from palaestra.envs.workspace.tasks import Check

_SPACES = re.compile(r"\s+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3})")


@dataclass(frozen=True, slots=True)
class WorldState:
    """What checkers read: the services database, the files root and the user's address."""

    db: sqlite3.Connection
    root: Path
    me: str

    def file(self, path: str) -> bytes | None:
        target = self.root / path
        return target.read_bytes() if target.is_file() else None


def normalized(text: str) -> str:
    return _SPACES.sub(" ", _THOUSANDS.sub("", text)).strip().lower()


def contains_all(text: str, wanted: Sequence[str]) -> list[str]:
    """The wanted snippets missing from text (lenient comparison)."""
    body = normalized(text)
    return [w for w in wanted if normalized(w) not in body]


def contains_any(text: str, unwanted: Sequence[str]) -> list[str]:
    body = normalized(text)
    return [w for w in unwanted if normalized(w) in body]


def same_value(found: Any, wanted: Any) -> bool:
    """Numbers as numbers (to a cent), anything else as lenient text."""
    try:
        return abs(float(str(found).replace(",", "")) - float(str(wanted).replace(",", ""))) < 0.005
    except ValueError:
        return normalized(str(found)) == normalized(str(wanted))


def _sent(state: WorldState) -> list[dict[str, Any]]:
    rows = state.db.execute("SELECT * FROM mail WHERE folder = 'sent' ORDER BY sent_at, id").fetchall()
    out = []
    for row in rows:
        mail = dict(row)
        mail["to"] = json.loads(row["recipients"]) + json.loads(row["cc"])
        mail["attachments"] = [
            r[0] for r in state.db.execute("SELECT name FROM attachment WHERE mail_id = ?", (row["id"],))
        ]
        out.append(mail)
    return out


def mail_sent(
    state: WorldState,
    to: str,
    body_has: Sequence[str] = (),
    subject_has: str | None = None,
    attachments: Sequence[str] = (),
    in_reply_to: str | None = None,
    stage: int | None = None,
    body_lacks: Sequence[str] = (),
) -> tuple[bool, str]:
    """A sent mail to `to` (or copying it) with these words, attachments and thread."""
    candidates = [m for m in _sent(state) if to.lower() in (a.lower() for a in m["to"])]
    if stage is not None:
        candidates = [m for m in candidates if m["stage"] == stage]
    if not candidates:
        return False, f"no mail sent to {to}" + (f" on day {stage + 1}" if stage is not None else "")
    problems = []
    for mail in candidates:
        missing = contains_all(f"{mail['subject']}\n{mail['body']}", body_has)
        if subject_has is not None and normalized(subject_has) not in normalized(mail["subject"]):
            missing.append(f"subject with {subject_has!r}")
        missing += [f"attachment {a}" for a in attachments if a not in mail["attachments"]]
        if in_reply_to is not None and mail["in_reply_to"] != in_reply_to:
            missing.append(f"a reply to {in_reply_to}")
        leaked = contains_any(mail["body"], body_lacks)
        if not missing and not leaked:
            return True, f"{mail['id']} to {to}"
        problems.append(f"{mail['id']} lacks {missing}" + (f", says {leaked}" if leaked else ""))
    return False, "; ".join(problems[-3:])


def no_mail(state: WorldState, to: str | None = None, body_has: Sequence[str] = ()) -> tuple[bool, str]:
    """No sent mail (to `to`, when given) containing all of these words."""
    for mail in _sent(state):
        if to is not None and to.lower() not in (a.lower() for a in mail["to"]):
            continue
        if not contains_all(f"{mail['subject']}\n{mail['body']}", body_has):
            return False, f"{mail['id']} says {list(body_has)}"
    return True, "none sent"


def cell(state: WorldState, path: str, cell: str, value: Any, sheet: str | None = None) -> tuple[bool, str]:
    """A workbook cell holds this value."""
    content = state.file(path)
    if content is None:
        return False, f"no workbook {path}"
    try:
        found = workbook_cells(content, sheet).get(cell.upper())
    except Exception as exc:  # noqa: BLE001 - a broken workbook fails the check, with the reason
        return False, f"{path} unreadable: {exc}"
    if found is None:
        return False, f"{path} {cell} is empty"
    return same_value(found, value), f"{path} {cell} = {found!r}"


def file_has(
    state: WorldState, path: str, texts: Sequence[str] = (), lacks: Sequence[str] = ()
) -> tuple[bool, str]:
    """A text file exists and says all of `texts` and none of `lacks`."""
    content = state.file(path)
    if content is None:
        return False, f"no file {path}"
    text = content.decode("utf-8", errors="replace")
    missing, leaked = contains_all(text, texts), contains_any(text, lacks)
    return not missing and not leaked, f"{path}: missing {missing}, says {leaked}"


def pdf_has(
    state: WorldState, path: str, texts: Sequence[str] = (), lacks: Sequence[str] = ()
) -> tuple[bool, str]:
    """A PDF exists and its text says all of `texts` and none of `lacks`."""
    content = state.file(path)
    if content is None:
        return False, f"no PDF {path}"
    try:
        text = "\n".join(pdf_text(content, path))
    except Exception as exc:  # noqa: BLE001 - an unreadable PDF fails the check, with the reason
        return False, f"{path} unreadable: {exc}"
    missing, leaked = contains_all(text, texts), contains_any(text, lacks)
    return not missing and not leaked, f"{path}: missing {missing}, says {leaked}"


def _events(state: WorldState, title_has: str) -> list[dict[str, Any]]:
    rows = state.db.execute("SELECT * FROM event WHERE status = 'confirmed' ORDER BY id").fetchall()
    return [dict(r) for r in rows if normalized(title_has) in normalized(r["title"])]


def event(
    state: WorldState,
    title_has: str,
    start: str | None = None,
    end: str | None = None,
    attendees: Sequence[str] = (),
    location_has: str | None = None,
) -> tuple[bool, str]:
    """Exactly one confirmed event with this title, at this time, inviting these people."""
    found = _events(state, title_has)
    if len(found) != 1:
        return False, f"{len(found)} confirmed events titled like {title_has!r}"
    row = found[0]
    problems = []
    if start is not None and abs(row["start"] - parse_time(start)) > 1:
        problems.append(f"starts at {row['start']}, not {start}")
    if end is not None and abs(row["end"] - parse_time(end)) > 1:
        problems.append(f"ends at {row['end']}, not {end}")
    invited = {r[0] for r in state.db.execute("SELECT person FROM attendee WHERE event_id = ?", (row["id"],))}
    problems += [f"{p} not invited" for p in attendees if p.lower() not in invited]
    if location_has is not None and normalized(location_has) not in normalized(row["location"]):
        problems.append(f"location {row['location']!r}")
    return not problems, f"{row['id']}: " + ("; ".join(problems) or "as expected")


def no_event_at(state: WorldState, title_has: str, start: str) -> tuple[bool, str]:
    """No confirmed event with this title starts at this time (a slot that is no longer right)."""
    moment = parse_time(start)
    clash = [e["id"] for e in _events(state, title_has) if abs(e["start"] - moment) <= 1]
    return not clash, f"at {start}: {clash or 'none'}"


def free_for(state: WorldState, title_has: str, people: Sequence[str]) -> tuple[bool, str]:
    """The event with this title overlaps no busy time or other confirmed event of these people."""
    found = _events(state, title_has)
    if len(found) != 1:
        return False, f"{len(found)} confirmed events titled like {title_has!r}"
    row = found[0]
    clashes = []
    for person in people:
        busy = state.db.execute(
            "SELECT label FROM busy WHERE person = ? AND start < ? AND end > ?",
            (person, row["end"], row["start"]),
        ).fetchall()
        others = state.db.execute(
            "SELECT title FROM event WHERE status = 'confirmed' AND id != ? AND start < ? AND end > ? AND "
            "(organizer = ? OR id IN (SELECT event_id FROM attendee WHERE person = ? AND response != "
            "'declined'))",
            (row["id"], row["end"], row["start"], person, person),
        ).fetchall()
        clashes += [f"{person}: {r[0]}" for r in [*busy, *others]]
    return not clashes, f"{row['id']} clashes with {clashes}" if clashes else f"{row['id']} is free for all"


def response(state: WorldState, event_id: str, value: str, person: str | None = None) -> tuple[bool, str]:
    """The user (or `person`) answered the invitation to `event_id` with `value`."""
    row = state.db.execute(
        "SELECT response FROM attendee WHERE event_id = ? AND person = ?", (event_id, person or state.me)
    ).fetchone()
    found = row[0] if row is not None else "not invited"
    return found == value, f"{event_id}: {found}"


def event_cancelled(state: WorldState, event_id: str) -> tuple[bool, str]:
    row = state.db.execute("SELECT status FROM event WHERE id = ?", (event_id,)).fetchone()
    found = row[0] if row is not None else "missing"
    return found == "cancelled", f"{event_id}: {found}"


def page_has(
    state: WorldState, slug: str, texts: Sequence[str] = (), lacks: Sequence[str] = ()
) -> tuple[bool, str]:
    """A knowledge-base page exists and says all of `texts` and none of `lacks`."""
    row = state.db.execute("SELECT body, title FROM kb_page WHERE slug = ?", (slug,)).fetchone()
    if row is None:
        return False, f"no page {slug}"
    text = f"{row['title']}\n{row['body']}"
    missing, leaked = contains_all(text, texts), contains_any(text, lacks)
    return not missing and not leaked, f"{slug}: missing {missing}, says {leaked}"


def record(state: WorldState, collection: str, id: str, field: str, value: Any) -> tuple[bool, str]:
    """A knowledge-base record's field has this value."""
    row = state.db.execute(
        "SELECT fields FROM kb_record WHERE collection = ? AND id = ?", (collection, id)
    ).fetchone()
    if row is None:
        return False, f"no record {collection}/{id}"
    found = json.loads(row[0]).get(field)
    if found is None:
        return False, f"{collection}/{id} has no {field}"
    return same_value(found, value), f"{collection}/{id}.{field} = {found!r}"


CHECKERS: dict[str, Callable[..., tuple[bool, str]]] = {
    "mail_sent": mail_sent,
    "no_mail": no_mail,
    "cell": cell,
    "file_has": file_has,
    "pdf_has": pdf_has,
    "event": event,
    "no_event_at": no_event_at,
    "free_for": free_for,
    "response": response,
    "event_cancelled": event_cancelled,
    "page_has": page_has,
    "record": record,
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    id: str
    stage: int | None
    weight: float
    passed: bool
    detail: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": "final" if self.stage is None else self.stage,
            "weight": self.weight,
            "passed": self.passed,
            "detail": self.detail[:300],
        }


def run_checks(state: WorldState, checks: Sequence[Check], stage: int | None) -> list[CheckResult]:
    """Run checkers; an unknown kind or a crashing checker is a failed check with the reason."""
    results = []
    for check in checks:
        function = CHECKERS.get(check.kind)
        if function is None:
            passed, detail = False, f"unknown checker kind {check.kind!r}"
        else:
            try:
                passed, detail = function(state, **check.params)
            except Exception as exc:  # noqa: BLE001 - a checker bug fails that check, with the reason
                passed, detail = False, f"checker failed: {type(exc).__name__}: {exc}"
        results.append(CheckResult(check.id, stage, check.weight, bool(passed), detail, check.text))
    return results


def score(results: Sequence[CheckResult]) -> float:
    """Passed weight / total weight (1.0 for no checks)."""
    total = sum(r.weight for r in results)
    return sum(r.weight for r in results if r.passed) / total if total else 1.0


__all__ = ["CHECKERS", "CheckResult", "WorldState", "normalized", "run_checks", "same_value", "score"]
