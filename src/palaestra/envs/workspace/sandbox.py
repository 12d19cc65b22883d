"""The episode's sandbox: one folder holding every service's state, and the calls that act on it.

A workspace episode lives in a folder of its own (a fresh temporary folder per episode unless the
env is given one):

    SANDBOX/
      world.json      which world this is (`workspace` or `code`) and its task id, so that an MCP
                      server started on the folder (`palaestra mcp serve --sandbox SANDBOX`) serves
                      the same tools
      services.db     SQLite: mail, attachments, calendar events and attendees, other people's busy
                      times, knowledge-base pages and records, the world clock, the tool log (and,
                      in code-v0, the file versions and line ranges read, for its metrics)
      files/          the filesystem service's root: text files, .xlsx workbooks, PDFs (or, in
                      code-v0, the repository)

Tools are the service kit's (`palaestra.envs.service.toolkit`): typed functions whose first
argument is a `WorkspaceContext` (the connection, the world clock and the files root). Every call,
in-process or over MCP, goes through `execute_call`: the arguments are checked against the schema
before anything runs, the tool runs inside a savepoint (a refusal or a crash rolls the database
back), file writes are checked before they touch the disk and land whole (written beside the
target, then renamed), and the call is appended to the tool log, which is how the env counts
calls made from outside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from palaestra.core.registry import EnvError
from palaestra.envs.service.database import canonical_hash
from palaestra.envs.service.toolkit import ToolContext, ToolError, ToolSpec, run_tool

WORLD_FILE = "world.json"
DB_FILE = "services.db"
FILES_DIR = "files"
MAX_FILE_BYTES = 2_000_000
"""Largest file a tool writes (a workbook, a PDF, a source file)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS world (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mail (
    id TEXT PRIMARY KEY, thread TEXT NOT NULL, folder TEXT NOT NULL, sender TEXT NOT NULL,
    recipients TEXT NOT NULL, cc TEXT NOT NULL DEFAULT '[]', subject TEXT NOT NULL, body TEXT NOT NULL,
    sent_at REAL NOT NULL, stage INTEGER NOT NULL DEFAULT -1, unread INTEGER NOT NULL DEFAULT 1,
    in_reply_to TEXT
);
CREATE TABLE IF NOT EXISTS attachment (
    mail_id TEXT NOT NULL, name TEXT NOT NULL, content BLOB NOT NULL, PRIMARY KEY (mail_id, name)
);
CREATE TABLE IF NOT EXISTS event (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, start REAL NOT NULL, end REAL NOT NULL,
    organizer TEXT NOT NULL, location TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'confirmed'
);
CREATE TABLE IF NOT EXISTS attendee (
    event_id TEXT NOT NULL, person TEXT NOT NULL, response TEXT NOT NULL DEFAULT 'needs_action',
    PRIMARY KEY (event_id, person)
);
CREATE TABLE IF NOT EXISTS busy (
    person TEXT NOT NULL, start REAL NOT NULL, end REAL NOT NULL, label TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kb_page (
    slug TEXT PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kb_record (
    collection TEXT NOT NULL, id TEXT NOT NULL, fields TEXT NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE TABLE IF NOT EXISTS file_version (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, sha TEXT NOT NULL, reverted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS code_read (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    epoch INTEGER NOT NULL, redundant INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tool_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stage INTEGER NOT NULL, time REAL NOT NULL, tool TEXT NOT NULL,
    arguments TEXT NOT NULL, ok INTEGER NOT NULL, write INTEGER NOT NULL, result_chars INTEGER NOT NULL,
    via TEXT NOT NULL
);
"""


@dataclass(slots=True)
class WorkspaceContext(ToolContext):
    """What a workspace tool works with: the service kit's context plus the sandbox.

    Fields (beyond `ToolContext`'s `db`, `now`, `caller`):
        root: the filesystem service's root folder (`SANDBOX/files`).
        me: the mailbox owner's address (the person the agent works for).
        stage: the stage (working day) the call is made in, 0-based.
    """

    root: Path = Path(".")
    me: str = ""
    stage: int = 0

    def path(self, relative: str, *, must_exist: bool = True) -> Path:
        """The file `relative` names inside the root; ToolError for anything that would leave it
        (absolute paths, `..`, symbolic links) or, with `must_exist`, a missing file."""
        text = relative.strip().replace("\\", "/")
        if not text or text in (".", "/"):
            return self.root
        if text.startswith("/") or any(part == ".." for part in text.split("/")):
            raise ToolError(f"path {relative!r} must be relative to the workspace, without '..'")
        candidate = self.root / text
        resolved = candidate.resolve()
        root = self.root.resolve()
        if resolved != root and root not in resolved.parents:
            raise ToolError(f"path {relative!r} leaves the workspace")
        probe = candidate
        while probe != self.root:
            if probe.is_symlink():
                raise ToolError(f"path {relative!r} goes through a link; links are not followed")
            probe = probe.parent
        if must_exist and not candidate.exists():
            raise ToolError(f"no file or folder {text!r}; list_files shows what there is")
        return candidate

    def shown(self, path: Path) -> str:
        """A path as tools show it: relative to the root, with forward slashes."""
        return path.relative_to(self.root).as_posix()


def write_bytes(ctx: WorkspaceContext, relative: str, content: bytes) -> Path:
    """Write a whole file inside the root (parents created), atomically: a failed write leaves the
    old file as it was. ToolError for bad paths and oversized content."""
    if len(content) > MAX_FILE_BYTES:
        raise ToolError(f"the file would be {len(content)} bytes; the limit is {MAX_FILE_BYTES}")
    target = ctx.path(relative, must_exist=False)
    if target == ctx.root or target.is_dir():
        raise ToolError(f"{relative!r} is a folder; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".writing-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def connect(path: Path) -> sqlite3.Connection:
    """The services database of a sandbox, in autocommit mode (tools run inside savepoints)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    connection.row_factory = sqlite3.Row
    # A sandbox lives for one episode: no fsync per call, the rollback journal in memory. File locks
    # still serialize the env and an MCP server working on the same folder.
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("PRAGMA journal_mode = MEMORY")
    return connection


def world_value(db: sqlite3.Connection, key: str, default: str = "") -> str:
    row = db.execute("SELECT value FROM world WHERE key = ?", (key,)).fetchone()
    return str(row["value"]) if row is not None else default


def set_world_values(db: sqlite3.Connection, values: Mapping[str, Any]) -> None:
    db.executemany(
        "INSERT INTO world (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [(key, str(value)) for key, value in values.items()],
    )


class Sandbox:
    """One episode's folder: the files root, the services database and the world description.

    Args:
        folder: where to keep it; None makes a fresh temporary folder, removed by `close()`.
    """

    def __init__(self, folder: Path | str | None = None) -> None:
        self.owned = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="palaestra-ws-")) if folder is None else Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db: sqlite3.Connection | None = None

    @property
    def files(self) -> Path:
        return self.folder / FILES_DIR

    @property
    def db_path(self) -> Path:
        return self.folder / DB_FILE

    def connection(self) -> sqlite3.Connection:
        if self.db is None:
            raise ValueError("the sandbox is not open; call fill() first")
        return self.db

    def fill(self, files: Mapping[str, bytes], db_image: bytes, world: Mapping[str, Any]) -> None:
        """Empty the folder and lay out a fresh world: these files, this database image, this
        world description. A folder given by the caller is emptied only when it is empty or
        already a sandbox (it has a world.json): never someone's files."""
        self.close_database()
        if any(self.folder.iterdir()) and not (self.folder / WORLD_FILE).is_file():
            raise EnvError(f"sandbox folder {self.folder} is not empty and not a sandbox; give an empty one")
        for child in self.folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        self.files.mkdir()
        for relative, content in files.items():
            target = self.files / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        self.db_path.write_bytes(db_image)
        (self.folder / WORLD_FILE).write_text(json.dumps(dict(world), sort_keys=True))
        self.db = connect(self.db_path)

    def file_image(self) -> dict[str, bytes]:
        """Every file under the root by relative path (for snapshots and hashes)."""
        if not self.files.is_dir():
            return {}
        return {
            path.relative_to(self.files).as_posix(): path.read_bytes()
            for path in sorted(self.files.rglob("*"))
            if path.is_file() and not path.is_symlink()
        }

    def snapshot(self) -> tuple[dict[str, bytes], bytes, str]:
        world = (self.folder / WORLD_FILE).read_text() if (self.folder / WORLD_FILE).exists() else "{}"
        return self.file_image(), self.connection().serialize(), world

    def restore(self, image: tuple[dict[str, bytes], bytes, str]) -> None:
        files, db_image, world = image
        self.fill(files, db_image, json.loads(world))

    def state_hash(self) -> str:
        digest = hashlib.sha256()
        for relative, content in self.file_image().items():
            digest.update(relative.encode() + b"\0" + hashlib.sha256(content).digest())
        digest.update(canonical_hash(self.connection()).encode())
        return digest.hexdigest()

    def close_database(self) -> None:
        """Close the env's connection (the folder stays: another process may serve it)."""
        if self.db is not None:
            self.db.close()
            self.db = None

    def close(self) -> None:
        self.close_database()
        if self.owned and self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)


def empty_database_image() -> bytes:
    """A services database with the schema and nothing else, as bytes."""
    memory = sqlite3.connect(":memory:")
    memory.executescript(SCHEMA)
    image = memory.serialize()
    memory.close()
    return image


@dataclass(frozen=True, slots=True)
class CallResult:
    """What one tool call gave: the text its caller reads, and whether it succeeded."""

    text: str
    ok: bool
    write: bool = False


def execute_call(
    tools: Mapping[str, ToolSpec],
    context: ToolContext,
    name: str,
    arguments: Any,
    *,
    via: str = "env",
    max_result_chars: int = 20_000,
) -> CallResult:
    """Run one call of a workspace tool by the service kit's rules and log it (see the module
    docstring). Never raises for what the caller sent: a bad call is an `Error: ...` result."""
    spec = tools.get(name)
    if spec is None:
        result = CallResult(f"Error: unknown tool {name[:64]!r}; available tools: {', '.join(tools)}", False)
    else:
        try:
            checked = spec.check_arguments(arguments)
            text = run_tool(spec, context, checked)
            result = CallResult(text, True, spec.write)
        except ToolError as exc:
            result = CallResult(f"Error: {exc}", False, spec.write)
        except Exception as exc:  # noqa: BLE001 - a bug in a tool must not end the episode
            result = CallResult(f"Error: {name} failed inside the tool ({type(exc).__name__}: {exc})", False)
    text = result.text
    if len(text) > max_result_chars:
        text = text[:max_result_chars] + f" ...(cut at {max_result_chars} characters)"
        result = CallResult(text, result.ok, result.write)
    context.db.execute(
        "INSERT INTO tool_log (stage, time, tool, arguments, ok, write, result_chars, via) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            getattr(context, "stage", 0),
            context.now,
            name[:64],
            json.dumps(arguments, sort_keys=True, default=str)[:4000],
            int(result.ok),
            int(result.write and result.ok),
            len(result.text),
            via,
        ),
    )
    return result


def tool_log(db: sqlite3.Connection, *, since: int = 0) -> list[dict[str, Any]]:
    """The logged calls after sequence number `since`, oldest first."""
    rows = db.execute("SELECT * FROM tool_log WHERE seq > ? ORDER BY seq", (since,)).fetchall()
    return [dict(row) for row in rows]


__all__ = [
    "DB_FILE",
    "FILES_DIR",
    "MAX_FILE_BYTES",
    "SCHEMA",
    "WORLD_FILE",
    "CallResult",
    "Sandbox",
    "WorkspaceContext",
    "connect",
    "empty_database_image",
    "execute_call",
    "set_world_values",
    "tool_log",
    "world_value",
    "write_bytes",
]
