"""The trajectory viewer: a small FastAPI app over a runs folder and its results store.

Everything it lists comes from the SQLite index (`palaestra.db` in the runs folder); an episode is
read as one line of its run's `episodes.jsonl` at the byte offset the index recorded and sent as it
is, so a run of 100,000 episodes costs the server no more memory than a run of ten.

Paths from requests never leave the runs folder: runs are named by their index key (checked
against the store), and `/files/...` resolves the path (symlinks included) and answers 404 for
anything outside the folder, before opening anything.

Routes:
    GET  /                      the single-page viewer
    GET  /api/runs              runs in the folder
    GET  /api/run?run=KEY       one run: its config and per-seat results
    GET  /api/facets?run=KEY    envs, agents and players to filter by
    GET  /api/episodes?...      a page of episodes (filters: run, env, agent, player, outcome, status)
    GET  /api/episode?run=KEY&id=ID   one episode record (JSON)
    POST /api/reindex           index new runs and new lines
    GET  /files/PATH            a file inside the runs folder (reports, learning curves)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from palaestra.store import EpisodeFilter, Store, StoreError, index_tree
from palaestra.store.schema import DB_NAME

PAGE_LIMIT = 200


def safe_path(root: Path, requested: str) -> Path | None:
    """The file `requested` names inside `root`, or None when it is not a plain file inside it.

    Refuses, without touching the disk beyond resolving links: absolute paths, `..` or `.` segments,
    backslashes and NUL bytes, and any path whose resolved target (symlinks followed) leaves `root`.
    """
    if not requested or "\x00" in requested or "\\" in requested:
        return None
    parts = PurePosixPath(requested).parts
    if not parts or PurePosixPath(requested).is_absolute():
        return None
    if any(part in ("..", ".", "") for part in requested.split("/")):
        return None
    base = root.resolve()
    try:
        target = (base / Path(*parts)).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


def _page_html() -> str:
    return (
        importlib.resources.files("palaestra.web").joinpath("static/index.html").read_text(encoding="utf-8")
    )


def create_app(runs_dir: Path | str, *, db_path: Path | str | None = None, index: bool = True) -> FastAPI:
    """The viewer app for `runs_dir` (indexed into `db_path`, default `runs_dir/palaestra.db`)."""
    root = Path(runs_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{runs_dir} is not a folder; give the folder holding your runs")
    database = Path(db_path) if db_path is not None else root / DB_NAME
    if index:
        index_tree(root, database)
    store = Store(database)
    page = _page_html()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="palaestra viewer", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.store = store
    app.state.root = root
    reindex_lock = asyncio.Lock()

    def inside_root(key: str) -> bool:
        # Keys are relative to the database's folder (or absolute); only runs inside root are served.
        folder = Path(key) if PurePosixPath(key).is_absolute() else store.root / key
        return folder.resolve().is_relative_to(root)

    def known_run(key: str | None) -> str | None:
        if key is None or key == "":
            return None
        if store.run(key) is None or not inside_root(key):
            raise HTTPException(status_code=404, detail="no such run")
        return key

    def run_keys() -> list[str]:
        return [run.path for run in store.runs() if inside_root(run.path)]

    def scope(key: str | None) -> list[str] | None:
        """The runs a request looks at: one, or every run inside root (None: no filter, the fast path)."""
        if key:
            return [key]
        keys = run_keys()
        return None if len(keys) == len(store.runs()) else keys

    @app.get("/", response_class=HTMLResponse)
    async def index_page() -> HTMLResponse:
        return HTMLResponse(page.replace("{{ROOT}}", _html_text(str(root))))

    @app.get("/api/runs")
    async def runs() -> dict[str, Any]:
        listed = []
        for run in store.runs():
            if not inside_root(run.path):
                continue
            item = run.to_dict()
            item.pop("config")
            listed.append(item)
        return {"root": str(root), "runs": listed}

    @app.get("/api/run")
    async def run_detail(run: str = Query(...)) -> dict[str, Any]:
        key = known_run(run)
        assert key is not None
        info = store.run(key)
        assert info is not None
        folder = store.run_folder(key).resolve()
        relative = folder.relative_to(root).as_posix()
        files = [
            f"{relative}/{name}" if relative != "." else name
            for name in ("report.html", "learning_curve.png")
            if (folder / name).is_file()
        ]
        return {"run": info.to_dict(), "seats": store.seat_table([key]), "files": files}

    @app.get("/api/facets")
    async def facets(run: str | None = None) -> dict[str, list[str]]:
        return store.facets(scope(known_run(run)))

    @app.get("/api/episodes")
    async def episodes(
        run: str | None = None,
        env: str | None = None,
        agent: str | None = None,
        player: str | None = None,
        outcome: str | None = None,
        status: str | None = None,
        after: int | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=PAGE_LIMIT),
        count: bool = True,
    ) -> dict[str, Any]:
        key = known_run(run)
        flt = EpisodeFilter(
            runs=scope(key),
            env=env or None,
            agent=agent or None,
            player=player or None,
            outcome=outcome or None,
            status=status or None,
        )
        try:
            page = store.episodes(flt, limit=limit + 1, after=after, offset=offset)
            total = store.count(flt) if count else None
        except StoreError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        more = len(page) > limit
        page = page[:limit]
        return {
            "episodes": [episode.to_dict() for episode in page],
            "next_after": page[-1].pk if more and page else None,
            "total": total,
        }

    @app.get("/api/episode")
    async def episode(run: str = Query(...), id: str = Query(..., max_length=200)) -> Response:
        key = known_run(run)
        assert key is not None
        try:
            # In the event loop's thread: one seek and one read, and the store's connection is only
            # ever used from this thread.
            line = store.episode_line(key, id)
        except StoreError:
            raise HTTPException(status_code=404, detail="no such episode") from None
        return Response(content=line, media_type="application/json")

    @app.post("/api/reindex")
    async def reindex() -> dict[str, Any]:
        async with reindex_lock:
            results = await asyncio.to_thread(index_tree, root, database)
        return {
            "runs": len(results),
            "new_episodes": sum(r.new_episodes for r in results),
            "corrupt": sum(len(r.corrupt) for r in results),
        }

    @app.get("/files/{requested:path}")
    async def files(requested: str) -> FileResponse:
        target = safe_path(root, requested)
        if target is None:
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(target)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Any, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    return app


def _html_text(text: str) -> str:
    import html

    return html.escape(text)


def serve(
    runs_dir: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    db_path: Path | str | None = None,
    index: bool = True,
    on_ready: Any = None,
) -> None:
    """Index `runs_dir` and serve the viewer until interrupted."""
    import uvicorn

    app = create_app(runs_dir, db_path=db_path, index=index)
    if on_ready is not None:
        on_ready(f"http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["create_app", "safe_path", "serve"]
