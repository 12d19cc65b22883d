"""What every self-hosted site shares: its per-episode SQLite database, its FastAPI app, its pages.

A `Site` builds its database once (schema and seed data, kept as a serialized image) and, per
episode, a fresh in-memory copy (`SiteDatabase`) and a FastAPI app over it, which the env serves
on a free loopback port (`palaestra.envs.web.browser.HostedApp`). The database lives in this
process, not in a file: the task's checks read it directly after the episode, and a killed run
leaves no file behind. The site's handlers run on the browser worker's loop thread and the
checks on the env's, so every query holds the database's lock.

Each episode has one signed-in user (the task's persona), so a site needs no login and keeps one
flash message (shown on the next page, then cleared). Pages are Jinja2 templates under
`templates/`, escaped automatically, sharing `base.html` (a header with the site's links, the
flash message, the page).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).with_name("templates")


@lru_cache(maxsize=1)
def jinja() -> Any:
    """The Jinja2 environment every site renders with (compiled templates are cached)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["money"] = lambda value: f"${float(value):,.2f}"
    return environment


class SiteDatabase:
    """An episode's copy of a site's database (in memory), safe to use from two threads."""

    def __init__(self, image: bytes) -> None:
        self.connection = sqlite3.connect(":memory:", check_same_thread=False)
        self.connection.deserialize(image)
        self.connection.row_factory = sqlite3.Row
        self.lock = threading.Lock()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.connection.execute(sql, params).fetchall()

    def row(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self.lock:
            found: sqlite3.Row | None = self.connection.execute(sql, params).fetchone()
            return found

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        found = self.row(sql, params)
        return None if found is None else found[0]

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one change and commit it; the new row's id (for inserts)."""
        with self.lock:
            cursor = self.connection.execute(sql, params)
            self.connection.commit()
            return int(cursor.lastrowid or 0)

    def write_many(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Several changes in one transaction."""
        with self.lock:
            for sql, params in statements:
                self.connection.execute(sql, params)
            self.connection.commit()

    def close(self) -> None:
        with self.lock:
            self.connection.close()


class SiteContext:
    """What a site's handlers work with in one episode: the database, the signed-in user, pages."""

    def __init__(self, site: Site, db: SiteDatabase, persona: str) -> None:
        self.site = site
        self.db = db
        self.persona = persona
        self.flash: str = ""

    def page(self, template: str, title: str, **values: Any) -> Any:
        """An HTML response rendering `SITE/template` (the flash message shown once)."""
        from fastapi.responses import HTMLResponse

        flash, self.flash = self.flash, ""
        html = (
            jinja()
            .get_template(f"{self.site.name}/{template}")
            .render(
                site=self.site,
                page_title=title,
                flash=flash,
                signed_in=self.site.user_label(self),
                **values,
            )
        )
        return HTMLResponse(html)

    def missing(self, what: str) -> Any:
        from fastapi.responses import HTMLResponse

        html = (
            jinja()
            .get_template("not_found.html")
            .render(site=self.site, what=what, signed_in="", flash="", page_title="Not found")
        )
        return HTMLResponse(html, status_code=404)

    def redirect(self, path: str, flash: str = "") -> Any:
        """After a form: show `flash` on the page at `path` (303, so the browser GETs it)."""
        from fastapi.responses import RedirectResponse

        if flash:
            self.flash = flash
        return RedirectResponse(path, status_code=303)


class Site:
    """A self-hosted site: subclasses set `name`, `title`, `links` and write `build` and `routes`.

    Attributes:
        name: the site's id (`shop`); also its templates' folder.
        title: shown in every page's header and title.
        links: the header's navigation, (label, path) pairs.
        default_persona: the user signed in when a task names none.
    """

    name = ""
    title = ""
    links: tuple[tuple[str, str], ...] = ()
    default_persona = ""

    def build(self, db: sqlite3.Connection) -> None:
        """Create the schema and the seed data in an empty database."""
        raise NotImplementedError

    def routes(self, app: Any, ctx: SiteContext) -> None:
        """Add the site's pages and forms to `app`."""
        raise NotImplementedError

    def user_label(self, ctx: SiteContext) -> str:
        """How the header names the signed-in user."""
        return ctx.persona

    def image(self) -> bytes:
        """The seeded database, serialized (built once per process)."""
        return _image_of(type(self))

    def database(self) -> SiteDatabase:
        return SiteDatabase(self.image())

    def app(self, db: SiteDatabase, persona: str | None = None) -> tuple[Any, SiteContext]:
        """A FastAPI app of this site over `db`, signed in as `persona`."""
        from fastapi import FastAPI
        from starlette.exceptions import HTTPException

        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        ctx = SiteContext(self, db, persona or self.default_persona)

        async def not_found(request: Any, exc: Any) -> Any:
            # A path no route serves (a mistyped `goto`) gets the site's own page, not JSON.
            return ctx.missing(f"page at {request.url.path}")

        app.add_exception_handler(HTTPException, not_found)
        self.routes(app, ctx)
        return app, ctx


@cache
def _image_of(site_type: type[Site]) -> bytes:
    connection = sqlite3.connect(":memory:")
    site_type().build(connection)
    connection.commit()
    image = connection.serialize()
    connection.close()
    return image


Handler = Callable[..., Any]


def form_text(form: Any, key: str, default: str = "") -> str:
    """A form field as trimmed text (`default` when absent)."""
    value = form.get(key)
    return default if value is None else str(value).strip()


def form_int(form: Any, key: str, default: int = 0) -> int:
    try:
        return int(form_text(form, key, str(default)))
    except ValueError:
        return default
