"""The knowledge-base service: pages (titled markdown text under a slug) and records (named fields
in collections, such as `vendors/acme` or `deals/D-104`).

Record fields are text; a value that reads as a number is kept as written, and checkers compare
numbers as numbers. `search_kb` looks through both pages and records.
"""

from __future__ import annotations

import json
import re
from typing import Any

from palaestra.envs.service.toolkit import ToolError, iso_time, tool
from palaestra.envs.workspace.sandbox import WorkspaceContext

_SLUG = re.compile(r"^[a-z0-9][a-z0-9\-/]{0,80}$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
SNIPPET_CHARS = 160


def _page(ctx: WorkspaceContext, slug: str) -> Any:
    row = ctx.db.execute("SELECT * FROM kb_page WHERE slug = ?", (slug.strip(),)).fetchone()
    if row is None:
        raise ToolError(f"no page {slug!r}; search_kb finds pages")
    return row


def _record(ctx: WorkspaceContext, collection: str, record_id: str) -> Any:
    row = ctx.db.execute(
        "SELECT * FROM kb_record WHERE collection = ? AND id = ?", (collection.strip(), record_id.strip())
    ).fetchone()
    if row is None:
        raise ToolError(f"no record {record_id!r} in {collection!r}; list_records shows them")
    return row


def _shown_record(row: Any) -> dict[str, Any]:
    return {
        "collection": row["collection"],
        "id": row["id"],
        "fields": json.loads(row["fields"]),
        "updated_at": iso_time(row["updated_at"]),
    }


@tool
def search_kb(ctx: WorkspaceContext, query: str) -> list[dict[str, Any]]:
    """Find knowledge-base pages and records containing every word of the query.

    Args:
        query: words to look for, such as 'travel policy'.
    """
    words = [word.lower() for word in query.split() if word.strip()]
    if not words:
        raise ToolError("give at least one word to search for")
    found: list[dict[str, Any]] = []
    for row in ctx.db.execute("SELECT * FROM kb_page ORDER BY slug"):
        text = f"{row['slug']} {row['title']} {row['body']}".lower()
        if all(word in text for word in words):
            found.append({"page": row["slug"], "title": row["title"], "snippet": row["body"][:SNIPPET_CHARS]})
    for row in ctx.db.execute("SELECT * FROM kb_record ORDER BY collection, id"):
        text = f"{row['collection']} {row['id']} {row['fields']}".lower()
        if all(word in text for word in words):
            found.append({"record": f"{row['collection']}/{row['id']}", "fields": json.loads(row["fields"])})
    return found


@tool
def read_page(ctx: WorkspaceContext, slug: str) -> dict[str, Any]:
    """Read a knowledge-base page.

    Args:
        slug: the page's slug, such as 'policies/travel'.
    """
    row = _page(ctx, slug)
    return {
        "slug": row["slug"],
        "title": row["title"],
        "body": row["body"],
        "updated_at": iso_time(row["updated_at"]),
    }


@tool(write=True)
def write_page(ctx: WorkspaceContext, slug: str, title: str, body: str) -> str:
    """Create a knowledge-base page or replace its title and text.

    Args:
        slug: lowercase letters, digits, '-' and '/', such as 'projects/apollo-status'.
        title: the page title.
        body: the whole text of the page (markdown).
    """
    cleaned = slug.strip()
    if not _SLUG.match(cleaned):
        raise ToolError(f"slug {slug!r}: use lowercase letters, digits, '-' and '/'")
    if not title.strip():
        raise ToolError("a page needs a title")
    ctx.db.execute(
        "INSERT INTO kb_page (slug, title, body, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(slug) DO UPDATE "
        "SET title = excluded.title, body = excluded.body, updated_at = excluded.updated_at",
        (cleaned, title.strip(), body, ctx.now),
    )
    return f"saved page {cleaned}"


@tool(write=True)
def append_to_page(ctx: WorkspaceContext, slug: str, text: str) -> str:
    """Add text at the end of an existing knowledge-base page (on a new line).

    Args:
        slug: the page.
        text: what to add.
    """
    row = _page(ctx, slug)
    body = row["body"].rstrip("\n") + "\n" + text
    ctx.db.execute("UPDATE kb_page SET body = ?, updated_at = ? WHERE slug = ?", (body, ctx.now, row["slug"]))
    return f"appended to {row['slug']}"


@tool
def list_records(
    ctx: WorkspaceContext, collection: str, field: str | None = None, value: str | None = None
) -> list[dict[str, Any]]:
    """List the records of a collection, optionally only those whose field has a value.

    Args:
        collection: such as 'vendors'.
        field: a field to filter on.
        value: the value it must have (compared as text, ignoring case).
    """
    rows = ctx.db.execute(
        "SELECT * FROM kb_record WHERE collection = ? ORDER BY id", (collection.strip(),)
    ).fetchall()
    if not rows:
        known = [r[0] for r in ctx.db.execute("SELECT DISTINCT collection FROM kb_record ORDER BY 1")]
        raise ToolError(f"no collection {collection!r}; collections: {', '.join(known) or 'none'}")
    shown = [_shown_record(row) for row in rows]
    if field is not None:
        wanted = (value or "").strip().lower()
        shown = [r for r in shown if str(r["fields"].get(field, "")).strip().lower() == wanted]
    return shown


@tool
def get_record(ctx: WorkspaceContext, collection: str, record_id: str) -> dict[str, Any]:
    """Read one record.

    Args:
        collection: such as 'deals'.
        record_id: such as 'D-104'.
    """
    return _shown_record(_record(ctx, collection, record_id))


@tool(write=True)
def update_record(ctx: WorkspaceContext, collection: str, record_id: str, field: str, value: str) -> str:
    """Set one field of a record (a new field is added).

    Args:
        collection: the record's collection.
        record_id: the record.
        field: the field name (lowercase, digits, '_').
        value: its new value, as text.
    """
    if not _FIELD.match(field.strip()):
        raise ToolError(f"field {field!r}: use lowercase letters, digits and '_'")
    row = _record(ctx, collection, record_id)
    fields = json.loads(row["fields"])
    fields[field.strip()] = value.strip()
    ctx.db.execute(
        "UPDATE kb_record SET fields = ?, updated_at = ? WHERE collection = ? AND id = ?",
        (json.dumps(fields, sort_keys=True), ctx.now, row["collection"], row["id"]),
    )
    return f"{row['collection']}/{row['id']}: {field.strip()} = {value.strip()!r}"


@tool(write=True)
def create_record(ctx: WorkspaceContext, collection: str, record_id: str, fields: list[str]) -> str:
    """Create a record from `field=value` pairs.

    Args:
        collection: the collection, such as 'requests'.
        record_id: the new record's id.
        fields: pairs such as ['vendor=Acme', 'quantity=50'].
    """
    parsed: dict[str, str] = {}
    for pair in fields:
        name, sep, value = pair.partition("=")
        if not sep or not _FIELD.match(name.strip()):
            raise ToolError(f"{pair!r} is not field=value with a lowercase field name")
        parsed[name.strip()] = value.strip()
    if not collection.strip() or not record_id.strip():
        raise ToolError("a record needs a collection and an id")
    exists = ctx.db.execute(
        "SELECT 1 FROM kb_record WHERE collection = ? AND id = ?", (collection.strip(), record_id.strip())
    ).fetchone()
    if exists is not None:
        raise ToolError(f"{collection}/{record_id} exists; use update_record")
    ctx.db.execute(
        "INSERT INTO kb_record (collection, id, fields, updated_at) VALUES (?, ?, ?, ?)",
        (collection.strip(), record_id.strip(), json.dumps(parsed, sort_keys=True), ctx.now),
    )
    return f"created {collection.strip()}/{record_id.strip()}"


TOOLS = (
    search_kb,
    read_page,
    write_page,
    append_to_page,
    list_records,
    get_record,
    update_record,
    create_record,
)
