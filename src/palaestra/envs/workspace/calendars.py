"""The calendar service: the user's events, invitations (events other people organize that list
the user), and other people's busy times, with conflicts.

Times are ISO 8601 in UTC (`2024-06-12T14:00Z`). An event the user creates lists attendees whose
answer starts as `needs_action`; creating or moving an event reports the user's own events it
overlaps and the attendees who are busy then (it is still saved: a conflict is information, not a
refusal). `find_free_slots` proposes starts on a half-hour grid when everyone is free.
"""

from __future__ import annotations

from typing import Any, Literal

from palaestra.envs.service.toolkit import ToolError, iso_time, parse_time, tool
from palaestra.envs.workspace.sandbox import WorkspaceContext

MAX_EVENT_HOURS = 24
SLOT_STEP = 30 * 60


def _time(text: str, what: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ToolError(f"{what}: {exc}") from None


def _span(start: str, end: str) -> tuple[float, float]:
    begin, finish = _time(start, "start"), _time(end, "end")
    if finish <= begin:
        raise ToolError("end must be after start")
    if finish - begin > MAX_EVENT_HOURS * 3600:
        raise ToolError(f"an event lasts at most {MAX_EVENT_HOURS} hours")
    return begin, finish


def _attendees(ctx: WorkspaceContext, event_id: str) -> list[dict[str, str]]:
    rows = ctx.db.execute(
        "SELECT person, response FROM attendee WHERE event_id = ? ORDER BY person", (event_id,)
    ).fetchall()
    return [{"person": row["person"], "response": row["response"]} for row in rows]


def _shown(ctx: WorkspaceContext, row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "start": iso_time(row["start"]),
        "end": iso_time(row["end"]),
        "organizer": row["organizer"],
        "location": row["location"],
        "status": row["status"],
        "attendees": _attendees(ctx, row["id"]),
        **({"description": row["description"]} if row["description"] else {}),
    }


def _event(ctx: WorkspaceContext, event_id: str) -> Any:
    row = ctx.db.execute("SELECT * FROM event WHERE id = ?", (event_id.strip(),)).fetchone()
    if row is None:
        raise ToolError(f"no event {event_id!r}; list_events shows the ids")
    return row


_MINE = "(organizer = ? OR id IN (SELECT event_id FROM attendee WHERE person = ?)) AND status = 'confirmed'"


def busy_blocks(ctx: WorkspaceContext, person: str, start: float, end: float) -> list[dict[str, str]]:
    """What keeps `person` busy between start and end: their busy times and confirmed events
    they organize or attend (declined invitations excepted)."""
    blocks = [
        {"start": iso_time(row["start"]), "end": iso_time(row["end"]), "what": row["label"]}
        for row in ctx.db.execute(
            "SELECT * FROM busy WHERE person = ? AND start < ? AND end > ? ORDER BY start",
            (person, end, start),
        )
    ]
    events = ctx.db.execute(
        "SELECT * FROM event WHERE status = 'confirmed' AND start < ? AND end > ? AND (organizer = ? OR id "
        "IN "
        "(SELECT event_id FROM attendee WHERE person = ? AND response != 'declined')) ORDER BY start",
        (end, start, person, person),
    )
    blocks += [
        {
            "start": iso_time(row["start"]),
            "end": iso_time(row["end"]),
            "what": row["title"],
            "event": row["id"],
        }
        for row in events
    ]
    return sorted(blocks, key=lambda block: block["start"])


def _conflicts(
    ctx: WorkspaceContext, start: float, end: float, people: list[str], skip: str | None
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for person in [ctx.me, *people]:
        blocks = [b for b in busy_blocks(ctx, person, start, end) if b.get("event") != skip]
        if blocks:
            found[person] = blocks
    return found


@tool
def list_events(ctx: WorkspaceContext, start_date: str, end_date: str | None = None) -> list[dict[str, Any]]:
    """List the user's confirmed events (organized or attended) from one day to another.

    Args:
        start_date: the first day, such as '2024-06-10'.
        end_date: the last day (inclusive); the same day when left out.
    """
    begin = _time(start_date[:10], "start_date")
    finish = _time((end_date or start_date)[:10], "end_date") + 86_400
    if finish <= begin:
        raise ToolError("end_date must not be before start_date")
    rows = ctx.db.execute(
        f"SELECT * FROM event WHERE {_MINE} AND start < ? AND end > ? ORDER BY start, id",
        (ctx.me, ctx.me, finish, begin),
    ).fetchall()
    return [_shown(ctx, row) for row in rows]


@tool
def get_event(ctx: WorkspaceContext, event_id: str) -> dict[str, Any]:
    """One event in full: times, organizer, attendees and their answers, description.

    Args:
        event_id: the event id, such as 'ev004'.
    """
    return _shown(ctx, _event(ctx, event_id))


@tool(write=True)
def create_event(
    ctx: WorkspaceContext,
    title: str,
    start: str,
    end: str,
    attendees: list[str] | None = None,
    location: str = "",
    description: str = "",
) -> dict[str, Any]:
    """Create an event the user organizes and invite attendees; reports any conflicts.

    Args:
        title: what the event is.
        start: its start, such as '2024-06-12T14:00Z'.
        end: its end.
        attendees: addresses to invite.
        location: a room or a link.
        description: notes for the attendees.
    """
    begin, finish = _span(start, end)
    if not title.strip():
        raise ToolError("an event needs a title")
    people = list(dict.fromkeys(a.strip().lower() for a in attendees or [] if a.strip() != ctx.me))
    number = ctx.db.execute("SELECT COUNT(*) FROM event").fetchone()[0] + 1
    while ctx.db.execute("SELECT 1 FROM event WHERE id = ?", (f"ev{number:03d}",)).fetchone() is not None:
        number += 1
    event_id = f"ev{number:03d}"
    conflicts = _conflicts(ctx, begin, finish, people, None)
    ctx.db.execute(
        "INSERT INTO event (id, title, start, end, organizer, location, description) VALUES (?, ?, ?, ?, ?, "
        "?, ?)",
        (event_id, title.strip(), begin, finish, ctx.me, location, description),
    )
    ctx.db.executemany(
        "INSERT INTO attendee (event_id, person) VALUES (?, ?)", [(event_id, person) for person in people]
    )
    return {"created": event_id, "conflicts": conflicts}


@tool(write=True)
def update_event(
    ctx: WorkspaceContext,
    event_id: str,
    start: str | None = None,
    end: str | None = None,
    title: str | None = None,
    location: str | None = None,
    add_attendees: list[str] | None = None,
) -> dict[str, Any]:
    """Change an event the user organizes (time, title, place, more attendees); a new time asks
    every attendee to answer again. Reports any conflicts at the new time.

    Args:
        event_id: the event.
        start: the new start.
        end: the new end (give both start and end to move an event).
        title: the new title.
        location: the new location.
        add_attendees: addresses to invite as well.
    """
    row = _event(ctx, event_id)
    if row["organizer"] != ctx.me:
        raise ToolError(f"{row['id']} is organized by {row['organizer']}; only its organizer can change it")
    if row["status"] != "confirmed":
        raise ToolError(f"{row['id']} is cancelled")
    if (start is None) != (end is None):
        raise ToolError("give both start and end to move an event")
    begin, finish = (row["start"], row["end"]) if start is None or end is None else _span(start, end)
    people = [a.strip().lower() for a in add_attendees or []]
    ctx.db.execute(
        "UPDATE event SET start = ?, end = ?, title = ?, location = ? WHERE id = ?",
        (
            begin,
            finish,
            (title or row["title"]).strip(),
            row["location"] if location is None else location,
            row["id"],
        ),
    )
    ctx.db.executemany(
        "INSERT OR IGNORE INTO attendee (event_id, person) VALUES (?, ?)",
        [(row["id"], person) for person in people if person != ctx.me],
    )
    if (begin, finish) != (row["start"], row["end"]):
        ctx.db.execute("UPDATE attendee SET response = 'needs_action' WHERE event_id = ?", (row["id"],))
    invited = [a["person"] for a in _attendees(ctx, row["id"])]
    return {"updated": row["id"], "conflicts": _conflicts(ctx, begin, finish, invited, row["id"])}


@tool(write=True)
def cancel_event(ctx: WorkspaceContext, event_id: str) -> str:
    """Cancel an event the user organizes.

    Args:
        event_id: the event.
    """
    row = _event(ctx, event_id)
    if row["organizer"] != ctx.me:
        raise ToolError(f"{row['id']} is organized by {row['organizer']}; decline it instead")
    ctx.db.execute("UPDATE event SET status = 'cancelled' WHERE id = ?", (row["id"],))
    return f"cancelled {row['id']}"


@tool(write=True)
def respond_to_invitation(
    ctx: WorkspaceContext, event_id: str, response: Literal["accepted", "declined", "tentative"]
) -> str:
    """Answer an invitation the user received.

    Args:
        event_id: the event the user is invited to.
        response: 'accepted', 'declined' or 'tentative'.
    """
    row = _event(ctx, event_id)
    invited = ctx.db.execute(
        "SELECT 1 FROM attendee WHERE event_id = ? AND person = ?", (row["id"], ctx.me)
    ).fetchone()
    if invited is None:
        raise ToolError(f"the user is not invited to {row['id']}")
    ctx.db.execute(
        "UPDATE attendee SET response = ? WHERE event_id = ? AND person = ?", (response, row["id"], ctx.me)
    )
    return f"{response} {row['id']}"


@tool
def check_availability(ctx: WorkspaceContext, people: list[str], start: str, end: str) -> dict[str, Any]:
    """What keeps each person (the user included when listed) busy between two times.

    Args:
        people: addresses to check.
        start: the start of the window.
        end: its end.
    """
    begin, finish = _span(start, end)
    return {
        person.strip().lower(): busy_blocks(ctx, person.strip().lower(), begin, finish) for person in people
    }


@tool
def find_free_slots(
    ctx: WorkspaceContext,
    people: list[str],
    date: str,
    duration_minutes: int,
    day_start: str = "09:00",
    day_end: str = "17:00",
) -> list[str]:
    """Starts (on the half hour) on one day when the user and all these people are free.

    Args:
        people: the other attendees' addresses.
        date: the day, such as '2024-06-12'.
        duration_minutes: how long the meeting lasts.
        day_start: the earliest start, HH:MM (UTC).
        day_end: the latest end, HH:MM (UTC).
    """
    if not 15 <= duration_minutes <= 8 * 60:
        raise ToolError("duration_minutes must be between 15 and 480")
    first = _time(f"{date[:10]}T{day_start}", "day_start")
    last = _time(f"{date[:10]}T{day_end}", "day_end")
    everyone = [ctx.me, *(p.strip().lower() for p in people)]
    slots = []
    start = first
    while start + duration_minutes * 60 <= last:
        if all(not busy_blocks(ctx, person, start, start + duration_minutes * 60) for person in everyone):
            slots.append(iso_time(start))
        start += SLOT_STEP
    return slots


TOOLS = (
    list_events,
    get_event,
    create_event,
    update_event,
    cancel_event,
    respond_to_invitation,
    check_availability,
    find_free_slots,
)
