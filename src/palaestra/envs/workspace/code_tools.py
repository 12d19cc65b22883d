"""The tools of code-v0: list, read (line ranges), search, write, patch and run the tests of a
repository in the sandbox's files root.

The tools keep what the efficiency metrics need in the services database, so that calls made
over MCP count like the env's own: every line range read (and whether it was already read since
that file last changed: a redundant read), and every version of an edited file (an edit that
brings a file back to a version it had before is a revert).

`run_tests` runs the visible tests (`tests/`) with the runner in `_testrunner.py` under the
sandbox limits (`palaestra.envs.workspace.limits`): CPU time, memory, wall clock, no network,
no writes outside the repository.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path
from typing import Any

from palaestra.envs.service.toolkit import ToolError, tool
from palaestra.envs.workspace.limits import GUARD, Limits, run_limited
from palaestra.envs.workspace.sandbox import WorkspaceContext, world_value, write_bytes

MAX_LINES = 300
MAX_MATCHES = 100
MAX_LISTED = 400
RUNNER = GUARD.with_name("_testrunner.py")


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _text(ctx: WorkspaceContext, path: str) -> tuple[Path, str]:
    target = ctx.path(path)
    if target.is_dir():
        raise ToolError(f"{path!r} is a folder; list_files shows what is in it")
    try:
        return target, target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{path!r} is not a UTF-8 text file") from None


def _epoch(ctx: WorkspaceContext, shown: str) -> int:
    return int(ctx.db.execute("SELECT COUNT(*) FROM file_version WHERE path = ?", (shown,)).fetchone()[0])


def _record_version(ctx: WorkspaceContext, shown: str, before: bytes | None, after: bytes) -> bool:
    """Log an edit's new version; True when it brings the file back to an earlier version."""
    seen = {row[0] for row in ctx.db.execute("SELECT sha FROM file_version WHERE path = ?", (shown,))}
    if not seen:
        original = hashlib.sha256(before).hexdigest() if before is not None else "absent"
        ctx.db.execute("INSERT INTO file_version (path, sha, reverted) VALUES (?, ?, 0)", (shown, original))
        seen = {original}
    sha = hashlib.sha256(after).hexdigest()
    reverted = sha in seen
    ctx.db.execute(
        "INSERT INTO file_version (path, sha, reverted) VALUES (?, ?, ?)", (shown, sha, int(reverted))
    )
    return reverted


def _write(ctx: WorkspaceContext, path: str, content: str) -> str:
    target = ctx.path(path, must_exist=False)
    if target != ctx.root and not _visible(target, ctx.root):
        raise ToolError(f"{path!r}: hidden files and folders (starting with '.') cannot be written")
    before = target.read_bytes() if target.is_file() else None
    data = content.encode("utf-8")
    write_bytes(ctx, path, data)
    reverted = _record_version(ctx, ctx.shown(target), before, data)
    return " (this brings the file back to an earlier version)" if reverted else ""


@tool
def list_files(ctx: WorkspaceContext, path: str = "") -> list[str]:
    """List the files of the repository under a folder (all of it by default).

    Args:
        path: a folder such as 'app/billing'; empty for the whole repository.
    """
    folder = ctx.path(path)
    if folder.is_file():
        return [ctx.shown(folder)]
    found = [ctx.shown(p) for p in sorted(folder.rglob("*")) if p.is_file() and _visible(p, ctx.root)]
    if len(found) > MAX_LISTED:
        return [*found[:MAX_LISTED], f"... {len(found) - MAX_LISTED} more; list a subfolder"]
    return found


@tool
def read_file(ctx: WorkspaceContext, path: str, start_line: int = 1, end_line: int | None = None) -> str:
    """Read lines of a file, numbered (at most 300 lines per call).

    Args:
        path: the file, such as 'app/billing/service.py'.
        start_line: the first line to show (1 is the first line of the file).
        end_line: the last line to show; to the end of the file (or 300 lines) when left out.
    """
    target, text = _text(ctx, path)
    lines = text.splitlines()
    if start_line < 1 or (lines and start_line > len(lines)):
        raise ToolError(f"start_line must be between 1 and {max(len(lines), 1)}")
    last = min(len(lines), end_line if end_line is not None else len(lines), start_line + MAX_LINES - 1)
    if last < start_line:
        raise ToolError("end_line must not be before start_line")
    shown = ctx.shown(target)
    epoch = _epoch(ctx, shown)
    covered: set[int] = set()
    for first, end in ctx.db.execute(
        "SELECT first, last FROM code_read WHERE path = ? AND epoch = ?", (shown, epoch)
    ).fetchall():
        covered.update(range(first, end + 1))
    redundant = set(range(start_line, last + 1)) <= covered
    ctx.db.execute(
        "INSERT INTO code_read (path, first, last, epoch, redundant) VALUES (?, ?, ?, ?, ?)",
        (shown, start_line, last, epoch, int(redundant)),
    )
    body = "\n".join(f"{number:>5}  {lines[number - 1]}" for number in range(start_line, last + 1))
    return f"{shown} lines {start_line}-{last} of {len(lines)}\n{body}"


@tool
def search(ctx: WorkspaceContext, pattern: str, path: str = "") -> list[str]:
    """Find lines matching a regular expression in the repository's files: `path:line: text`.

    Args:
        pattern: a Python regular expression, such as 'def paginate_' or 'from app\\.billing'.
        path: a folder or file to search in; empty for everything.
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"the pattern is not a regular expression: {exc}") from None
    where = ctx.path(path)
    files = (
        [where]
        if where.is_file()
        else sorted(p for p in where.rglob("*") if p.is_file() and _visible(p, ctx.root))
    )
    found: list[str] = []
    for file in files:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(lines, start=1):
            if regex.search(line):
                found.append(f"{ctx.shown(file)}:{number}: {line.strip()[:200]}")
                if len(found) >= MAX_MATCHES:
                    return [*found, f"... stopped at {MAX_MATCHES} matches; narrow the pattern or the path"]
    return found


@tool(write=True)
def write_file(ctx: WorkspaceContext, path: str, content: str) -> str:
    """Create or replace a file with this content (for long files: write a part, then patch_file).

    Args:
        path: the file, such as 'app/billing/export.py'.
        content: the whole new text.
    """
    note = _write(ctx, path, content)
    return f"wrote {path.strip()} ({len(content.splitlines())} lines){note}"


@tool(write=True)
def patch_file(ctx: WorkspaceContext, path: str, old: str, new: str) -> str:
    """Replace one exact piece of a file with new text; the piece must occur exactly once.

    Args:
        path: the file to change.
        old: the exact text to replace (include enough lines to make it unique).
        new: the text to put in its place.
    """
    target, text = _text(ctx, path)
    count = text.count(old) if old else 0
    if count != 1:
        raise ToolError(
            f"old text occurs {count} times in {ctx.shown(target)}; it must occur exactly once "
            "(copy it from read_file, without the line numbers, with more lines if needed)"
        )
    note = _write(ctx, path, text.replace(old, new, 1))
    return f"patched {ctx.shown(target)}{note}"


def limits_of(ctx: WorkspaceContext) -> Limits:
    """The run limits the world sets (defaults where it sets none)."""
    default = Limits()
    return Limits(
        cpu_seconds=int(world_value(ctx.db, "cpu_seconds", str(default.cpu_seconds))),
        memory_mb=int(world_value(ctx.db, "memory_mb", str(default.memory_mb))),
        wall_seconds=float(world_value(ctx.db, "wall_seconds", str(default.wall_seconds))),
        file_mb=default.file_mb,
    )


def run_test_folder(root: Path, folder: str, limits: Limits) -> dict[str, Any]:
    """Run the tests of a folder under the limits: `{passed, failed, limit, output}`."""
    nonce = secrets.token_hex(8)
    outcome = run_limited(RUNNER, root, args=(folder,), limits=limits, env={"PALAESTRA_RESULT_NONCE": nonce})
    marker = f"RESULT-{nonce} "
    line = next((line for line in reversed(outcome.stdout.splitlines()) if line.startswith(marker)), None)
    if outcome.limit is not None or line is None:
        why = f"the run hit its {outcome.limit} limit" if outcome.limit else "the run ended without results"
        tail = (outcome.stderr or outcome.stdout).strip().splitlines()[-3:]
        return {
            "passed": [],
            "failed": [{"test": "(run)", "error": f"{why}: {' | '.join(tail)[:500]}"}],
            "limit": outcome.limit,
        }
    results = json.loads(line[len(marker) :])
    return {"passed": results["passed"], "failed": results["failed"], "limit": None}


@tool
def run_tests(ctx: WorkspaceContext, path: str = "tests") -> str:
    """Run the repository's tests (test_* functions in test_*.py files) and report the failures.

    Args:
        path: the folder (or file's folder) of tests to run, relative to the repository root.
    """
    folder = ctx.path(path)
    if folder.is_file():
        folder = folder.parent
    result = run_test_folder(ctx.root, ctx.shown(folder) or ".", limits_of(ctx))
    lines = [f"FAILED {f['test']}: {f['error']}" for f in result["failed"][:10]]
    lines.append(f"{len(result['passed'])} passed, {len(result['failed'])} failed")
    return "\n".join(lines)


TOOLS = (list_files, read_file, search, write_file, patch_file, run_tests)
