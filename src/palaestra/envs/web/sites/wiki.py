"""Northwind Docs, the staff wiki: pages in categories, links between them (`[[Title]]`), search,
editing with an edit summary, page history with old revisions and restoring one, new pages.

The signed-in user is an editor (`jo_reyes`). Every save is a revision; the page's text is its
latest revision's.
"""

import re
import sqlite3
from typing import Any

from fastapi import Request

from palaestra.envs.web.sites.base import Site, SiteContext, form_text

SCHEMA = """
CREATE TABLE editors (username TEXT PRIMARY KEY, display_name TEXT NOT NULL);
CREATE TABLE pages (slug TEXT PRIMARY KEY, title TEXT NOT NULL UNIQUE, category TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE TABLE revisions (slug TEXT NOT NULL, rev INTEGER NOT NULL, author TEXT NOT NULL, created TEXT NOT NULL,
    summary TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (slug, rev));
"""
CATEGORIES = ("Guides", "Policies", "Developers", "Warehouse")
EDITORS = (
    ("jo_reyes", "Jo Reyes"),
    ("ana_silva", "Ana Silva"),
    ("raj_patel", "Raj Patel"),
    ("kim_park", "Kim Park"),
    ("anon_4411", "anon_4411"),
)
WARRANTY = (
    "All electronics come with a two-year warranty.\n\n"
    "To claim it, customers must recieve a case number from support before sending anything back."
)
SHIPPING_TIMES = "Standard shipping takes 3-5 business days.\n\nExpress shipping takes 1-2 business days."
SHIPPING_COSTS = "Standard shipping costs $4.99.\n\nExpress shipping costs $12.99."
# (title, category, [(author, created, summary, body), ...]): the last revision is the page's text.
PAGES = (
    ("Getting started", "Guides", [("ana_silva", "2023-01-05", "first version",
        "Welcome to the Northwind staff docs.\n\nStart with [[Returns policy]], [[Shipping times]] "
        "and [[Payment methods]].")]),
    ("Returns policy", "Policies", [("ana_silva", "2023-01-05", "first version",
        "Customers may return delivered items within 30 days of delivery.\n\nItems must be unused and "
        "in their original packaging. Refunds go to the original payment method within 5 business days.")]),
    ("Shipping times", "Policies", [
        ("ana_silva", "2023-02-01", "first version", SHIPPING_TIMES),
        ("anon_4411", "2024-06-09", "update", "Shipping takes forever lol, buy elsewhere.")]),
    ("Shipping costs", "Policies", [("kim_park", "2023-02-01", "first version", SHIPPING_COSTS)]),
    ("Payment methods", "Policies", [
        ("ana_silva", "2023-01-06", "first version", "We accept credit cards and PayPal."),
        ("raj_patel", "2024-03-14", "gift cards",
         "We accept credit cards, PayPal and gift cards.\n\nA gift card pays for part or all of an order.")]),
    ("Warranty", "Policies", [("kim_park", "2023-03-10", "first version", WARRANTY)]),
    ("Orders API", "Developers", [("raj_patel", "2023-09-01", "first version",
        "The Orders API allows 120 requests per minute per key.\n\nRequests above the limit get HTTP "
        "status 429; wait a minute and retry.")]),
    ("Account recovery", "Guides", [("ana_silva", "2023-04-02", "first version",
        "To reset a password, open the sign-in page and choose Forgot password.\n\nA reset link is "
        "emailed and stays valid for 2 hours.")]),
    ("Packing tips", "Warehouse", [("kim_park", "2023-05-20", "first version",
        "Wrap fragile items in two layers of bubble wrap.\n\nPut heavy items at the bottom of the box.")]),
    ("Holiday schedule", "Guides", [("ana_silva", "2023-12-01", "first version",
        "The warehouse is closed on January 1 and December 25.\n\nOrders placed then ship the next "
        "working day.")]),
)  # fmt: skip
TODAY = "2024-06-10"
_LINK = re.compile(r"\[\[([^\]]+)\]\]")


def slug_of(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render_body(body: str) -> list[list[tuple[str, str | None]]]:
    """The page text as paragraphs of (text, link target slug or None) pieces."""
    paragraphs = []
    for paragraph in body.split("\n\n"):
        pieces: list[tuple[str, str | None]] = []
        position = 0
        for match in _LINK.finditer(paragraph):
            pieces.append((paragraph[position : match.start()], None))
            pieces.append((match.group(1), slug_of(match.group(1))))
            position = match.end()
        pieces.append((paragraph[position:], None))
        paragraphs.append([piece for piece in pieces if piece[0]])
    return paragraphs


class Wiki(Site):
    name = "wiki"
    title = "Northwind Docs"
    links = (("Main page", "/"), ("Search", "/search"), ("New page", "/new"))
    default_persona = "jo_reyes"

    def build(self, db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO editors VALUES (?, ?)", EDITORS)
        for title, category, revisions in PAGES:
            slug = slug_of(title)
            db.execute("INSERT INTO pages VALUES (?, ?, ?, ?)", (slug, title, category, revisions[-1][3]))
            for number, (author, created, summary, body) in enumerate(revisions, start=1):
                db.execute(
                    "INSERT INTO revisions VALUES (?, ?, ?, ?, ?, ?)",
                    (slug, number, author, created, summary, body),
                )

    def user_label(self, ctx: SiteContext) -> str:
        return str(ctx.db.value("SELECT display_name FROM editors WHERE username = ?", (ctx.persona,)) or "")

    def routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.get("/")
        async def main() -> Any:
            pages = db.rows("SELECT slug, title, category FROM pages ORDER BY category, title")
            return ctx.page("main.html", "Main page", pages=pages, categories=CATEGORIES)

        @app.get("/category/{name}")
        async def category(name: str) -> Any:
            pages = db.rows("SELECT slug, title FROM pages WHERE category = ? ORDER BY title", (name,))
            return ctx.page("category.html", f"Category: {name}", name=name, pages=pages)

        @app.get("/search")
        async def search(q: str = "") -> Any:
            words = [word for word in q.lower().split() if word]
            pages = []
            if words:
                where = " AND ".join("(lower(title) LIKE ? OR lower(body) LIKE ?)" for _ in words)
                params = [pattern for word in words for pattern in (f"%{word}%", f"%{word}%")]
                pages = db.rows(
                    f"SELECT slug, title, category FROM pages WHERE {where} ORDER BY title", params
                )
            return ctx.page("search.html", "Search", query=q, pages=pages)

        @app.get("/wiki/{slug}")
        async def page(slug: str) -> Any:
            found = db.row("SELECT * FROM pages WHERE slug = ?", (slug,))
            if found is None:
                return ctx.missing(f"page {slug}")
            latest = db.row(
                "SELECT r.created, e.display_name FROM revisions r JOIN editors e ON e.username = r.author "
                "WHERE slug = ? ORDER BY rev DESC LIMIT 1",
                (slug,),
            )
            return ctx.page(
                "page.html", found["title"], page=found, body=render_body(found["body"]), latest=latest
            )

        self._edit_routes(app, ctx)
        self._history_routes(app, ctx)

    def _edit_routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.get("/wiki/{slug}/edit")
        async def edit_form(slug: str) -> Any:
            found = db.row("SELECT * FROM pages WHERE slug = ?", (slug,))
            if found is None:
                return ctx.missing(f"page {slug}")
            return ctx.page("edit.html", f"Editing {found['title']}", page=found, categories=CATEGORIES)

        @app.post("/wiki/{slug}/edit")
        async def edit(slug: str, request: Request) -> Any:
            form = await request.form()
            found = db.row("SELECT * FROM pages WHERE slug = ?", (slug,))
            if found is None:
                return ctx.missing(f"page {slug}")
            body = form_text(form, "body").replace("\r\n", "\n")
            category = form_text(form, "category", found["category"])
            if not body:
                return ctx.redirect(f"/wiki/{slug}/edit", "A page cannot be empty.")
            if category not in CATEGORIES:
                return ctx.redirect(f"/wiki/{slug}/edit", "Choose one of the categories.")
            _save(db, slug, body, category, ctx.persona, form_text(form, "summary") or "edit")
            return ctx.redirect(f"/wiki/{slug}", "Page saved.")

    def _history_routes(self, app: Any, ctx: SiteContext) -> None:
        db = ctx.db

        @app.get("/wiki/{slug}/history")
        async def history(slug: str) -> Any:
            found = db.row("SELECT * FROM pages WHERE slug = ?", (slug,))
            if found is None:
                return ctx.missing(f"page {slug}")
            revisions = db.rows(
                "SELECT r.rev, r.created, r.summary, e.display_name FROM revisions r JOIN editors e "
                "ON e.username = r.author WHERE slug = ? ORDER BY rev DESC",
                (slug,),
            )
            latest = revisions[0]["rev"] if revisions else 0
            return ctx.page(
                "history.html", f"History of {found['title']}", page=found, revisions=revisions, latest=latest
            )

        @app.get("/wiki/{slug}/rev/{rev}")
        async def revision(slug: str, rev: int) -> Any:
            found = db.row(
                "SELECT r.*, p.title, e.display_name FROM revisions r JOIN pages p USING (slug) "
                "JOIN editors e ON e.username = r.author WHERE slug = ? AND rev = ?",
                (slug, rev),
            )
            if found is None:
                return ctx.missing(f"revision {rev} of {slug}")
            return ctx.page(
                "revision.html",
                f"{found['title']} (revision {rev})",
                rev=found,
                body=render_body(found["body"]),
            )

        @app.post("/wiki/{slug}/restore/{rev}")
        async def restore(slug: str, rev: int) -> Any:
            found = db.row(
                "SELECT r.body, p.category FROM revisions r JOIN pages p USING (slug) WHERE slug = ? AND "
                "rev = ?",
                (slug, rev),
            )
            if found is None:
                return ctx.missing(f"revision {rev} of {slug}")
            _save(db, slug, found["body"], found["category"], ctx.persona, f"restored revision {rev}")
            return ctx.redirect(f"/wiki/{slug}", f"Revision {rev} restored.")

        @app.get("/new")
        async def new_form() -> Any:
            return ctx.page("new.html", "New page", categories=CATEGORIES)

        @app.post("/new")
        async def new(request: Request) -> Any:
            form = await request.form()
            title, category = form_text(form, "title"), form_text(form, "category")
            body = form_text(form, "body").replace("\r\n", "\n")
            slug = slug_of(title)
            if not slug or not body or category not in CATEGORIES:
                return ctx.redirect("/new", "A page needs a title, a category and some text.")
            if (
                db.row("SELECT 1 FROM pages WHERE slug = ? OR lower(title) = lower(?)", (slug, title))
                is not None
            ):
                return ctx.redirect("/new", f"A page called {title} exists already.")
            db.write_many(
                [
                    ("INSERT INTO pages VALUES (?, ?, ?, ?)", (slug, title, category, body)),
                    (
                        "INSERT INTO revisions VALUES (?, 1, ?, ?, 'first version', ?)",
                        (slug, ctx.persona, TODAY, body),
                    ),
                ]
            )
            return ctx.redirect(f"/wiki/{slug}", "Page created.")


def _save(db: Any, slug: str, body: str, category: str, author: str, summary: str) -> None:
    rev = int(db.value("SELECT coalesce(max(rev), 0) FROM revisions WHERE slug = ?", (slug,))) + 1
    db.write_many(
        [
            ("UPDATE pages SET body = ?, category = ? WHERE slug = ?", (body, category, slug)),
            (
                "INSERT INTO revisions VALUES (?, ?, ?, ?, ?, ?)",
                (slug, rev, author, TODAY, summary[:200], body),
            ),
        ]
    )
