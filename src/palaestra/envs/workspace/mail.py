"""The email service: the user's mailbox (inbox and sent), threads, attachments.

Mail the user receives sits in `inbox`; what the agent sends on the user's behalf goes to `sent`
(delivery to other people is not simulated beyond that: checkers read `sent`). A reply stays in
its thread; attachments are copies of workspace files taken when the mail is sent, and an
attachment of a received mail can be saved into the workspace.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from palaestra.envs.service.toolkit import ToolError, iso_time, tool
from palaestra.envs.workspace.sandbox import WorkspaceContext, write_bytes

_ADDRESS = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$")
MAX_ATTACHMENTS = 5


def _addresses(values: list[str], what: str) -> list[str]:
    cleaned = [value.strip().lower() for value in values]
    bad = [value for value in cleaned if not _ADDRESS.match(value)]
    if bad:
        raise ToolError(f"{what}: {', '.join(map(repr, bad))} is not an email address")
    return cleaned


def _attachment_names(ctx: WorkspaceContext, mail_id: str) -> list[str]:
    rows = ctx.db.execute("SELECT name FROM attachment WHERE mail_id = ? ORDER BY name", (mail_id,))
    return [row["name"] for row in rows]


def _summary(ctx: WorkspaceContext, row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "thread": row["thread"],
        "from": row["sender"],
        "to": json.loads(row["recipients"]),
        "subject": row["subject"],
        "sent_at": iso_time(row["sent_at"]),
        "unread": bool(row["unread"]),
        "attachments": _attachment_names(ctx, row["id"]),
    }


def _mail(ctx: WorkspaceContext, mail_id: str) -> Any:
    row = ctx.db.execute("SELECT * FROM mail WHERE id = ?", (mail_id.strip(),)).fetchone()
    if row is None:
        raise ToolError(f"no mail {mail_id!r}; list_mail shows the ids")
    return row


def _next_id(ctx: WorkspaceContext) -> str:
    number = ctx.db.execute("SELECT COUNT(*) FROM mail").fetchone()[0] + 1
    while ctx.db.execute("SELECT 1 FROM mail WHERE id = ?", (f"m{number:03d}",)).fetchone() is not None:
        number += 1
    return f"m{number:03d}"


def _store(
    ctx: WorkspaceContext,
    *,
    thread: str | None,
    to: list[str],
    cc: list[str],
    subject: str,
    body: str,
    attachments: list[str],
    in_reply_to: str | None,
) -> str:
    if not to:
        raise ToolError("a mail needs at least one recipient")
    if not subject.strip():
        raise ToolError("a mail needs a subject")
    if len(attachments) > MAX_ATTACHMENTS:
        raise ToolError(f"at most {MAX_ATTACHMENTS} attachments per mail")
    files = []
    for path in attachments:
        target = ctx.path(path)
        if not target.is_file():
            raise ToolError(f"attachment {path!r} is not a file")
        files.append((target.name, target.read_bytes()))
    if len({name for name, _ in files}) != len(files):
        raise ToolError("two attachments have the same file name")
    mail_id = _next_id(ctx)
    ctx.db.execute(
        "INSERT INTO mail (id, thread, folder, sender, recipients, cc, subject, body, sent_at, stage, unread,"
        " in_reply_to) VALUES (?, ?, 'sent', ?, ?, ?, ?, ?, ?, ?, 0, ?)",
        (
            mail_id,
            thread or f"t-{mail_id}",
            ctx.me,
            json.dumps(to),
            json.dumps(cc),
            subject.strip(),
            body,
            ctx.now,
            ctx.stage,
            in_reply_to,
        ),
    )
    ctx.db.executemany(
        "INSERT INTO attachment (mail_id, name, content) VALUES (?, ?, ?)",
        [(mail_id, name, content) for name, content in files],
    )
    return mail_id


@tool
def list_mail(
    ctx: WorkspaceContext, folder: Literal["inbox", "sent"] = "inbox", unread_only: bool = False
) -> list[dict[str, Any]]:
    """List the mails of a folder, newest first (ids, senders, subjects, attachments; no bodies).

    Args:
        folder: 'inbox' (received) or 'sent'.
        unread_only: only the mails not read yet.
    """
    sql = "SELECT * FROM mail WHERE folder = ?" + (" AND unread = 1" if unread_only else "")
    rows = ctx.db.execute(sql + " ORDER BY sent_at DESC, id DESC", (folder,)).fetchall()
    return [_summary(ctx, row) for row in rows]


@tool
def read_mail(ctx: WorkspaceContext, mail_id: str) -> dict[str, Any]:
    """Read one mail in full (its body and the names of its attachments); marks it read.

    Args:
        mail_id: the mail id, such as 'm003'.
    """
    row = _mail(ctx, mail_id)
    ctx.db.execute("UPDATE mail SET unread = 0 WHERE id = ?", (row["id"],))
    return {**_summary(ctx, row), "unread": False, "cc": json.loads(row["cc"]), "body": row["body"]}


@tool
def search_mail(ctx: WorkspaceContext, query: str) -> list[dict[str, Any]]:
    """Find mails (both folders) whose sender, subject or body contains the words of the query.

    Args:
        query: words to look for, such as 'invoice March'; every word must appear.
    """
    words = [word.lower() for word in query.split() if word.strip()]
    if not words:
        raise ToolError("give at least one word to search for")
    found = []
    for row in ctx.db.execute("SELECT * FROM mail ORDER BY sent_at DESC, id DESC"):
        text = f"{row['sender']} {row['subject']} {row['body']}".lower()
        if all(word in text for word in words):
            found.append({**_summary(ctx, row), "folder": row["folder"]})
    return found


@tool(write=True)
def send_mail(
    ctx: WorkspaceContext,
    to: list[str],
    subject: str,
    body: str,
    cc: list[str] | None = None,
    attachments: list[str] | None = None,
) -> dict[str, str]:
    """Send a new mail from the user's address (it starts a new thread).

    Args:
        to: recipient addresses.
        subject: the subject line.
        body: the text of the mail.
        cc: addresses to copy.
        attachments: workspace files to attach, such as ['reports/summary.pdf'].
    """
    mail_id = _store(
        ctx,
        thread=None,
        to=_addresses(to, "to"),
        cc=_addresses(cc or [], "cc"),
        subject=subject,
        body=body,
        attachments=attachments or [],
        in_reply_to=None,
    )
    return {"sent": mail_id}


@tool(write=True)
def reply_mail(
    ctx: WorkspaceContext,
    mail_id: str,
    body: str,
    reply_all: bool = False,
    attachments: list[str] | None = None,
) -> dict[str, str]:
    """Reply to a mail in its thread (to its sender; with reply_all, also to its other recipients).

    Args:
        mail_id: the mail answered, such as 'm002'.
        body: the text of the reply.
        reply_all: also send to everyone else the mail went to.
        attachments: workspace files to attach.
    """
    original = _mail(ctx, mail_id)
    to = [original["sender"]] if original["folder"] == "inbox" else json.loads(original["recipients"])
    cc: list[str] = []
    if reply_all:
        others = json.loads(original["recipients"]) + json.loads(original["cc"])
        cc = [a for a in dict.fromkeys(others) if a != ctx.me and a not in to]
    subject = original["subject"]
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    reply_id = _store(
        ctx,
        thread=original["thread"],
        to=to,
        cc=cc,
        subject=subject,
        body=body,
        attachments=attachments or [],
        in_reply_to=original["id"],
    )
    return {"sent": reply_id, "thread": original["thread"]}


@tool(write=True)
def save_attachment(ctx: WorkspaceContext, mail_id: str, name: str, path: str) -> str:
    """Save an attachment of a mail as a workspace file.

    Args:
        mail_id: the mail holding it.
        name: the attachment's file name, as read_mail lists it.
        path: where to save it in the workspace, such as 'contracts/acme-v2.pdf'.
    """
    row = _mail(ctx, mail_id)
    found = ctx.db.execute(
        "SELECT content FROM attachment WHERE mail_id = ? AND name = ?", (row["id"], name)
    ).fetchone()
    if found is None:
        names = ", ".join(_attachment_names(ctx, row["id"])) or "none"
        raise ToolError(f"mail {row['id']} has no attachment {name!r}; its attachments: {names}")
    target = write_bytes(ctx, path, bytes(found["content"]))
    return f"saved {name} to {ctx.shown(target)}"


TOOLS = (list_mail, read_mail, search_mail, send_mail, reply_mail, save_attachment)
