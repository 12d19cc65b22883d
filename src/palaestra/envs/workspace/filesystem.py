"""The filesystem service: files under the sandbox's `files/` folder, including spreadsheets
(.xlsx, read and written cell by cell) and PDFs (read as text, written as text pages).

Paths are relative to the workspace root; a path that would leave it (absolute, `..`, a link) is
refused before anything is read or written.
"""

from __future__ import annotations

from palaestra.envs.service.toolkit import ToolError, tool
from palaestra.envs.workspace.documents import (
    cell_value,
    check_cell,
    make_pdf,
    pdf_text,
    read_workbook,
    set_cells,
)
from palaestra.envs.workspace.sandbox import WorkspaceContext, write_bytes

MAX_LISTED = 500
MAX_READ_CHARS = 20_000
BINARY_SUFFIXES = {".xlsx": "read_spreadsheet", ".pdf": "read_pdf"}


@tool
def list_files(ctx: WorkspaceContext, path: str = "") -> list[dict[str, object]]:
    """List the files under a folder of the workspace (all of it by default), with their sizes.

    Args:
        path: a folder relative to the workspace root, such as 'reports'; empty for everything.
    """
    folder = ctx.path(path)
    if folder.is_file():
        return [{"path": ctx.shown(folder), "bytes": folder.stat().st_size}]
    found = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".writing-")]
    listed: list[dict[str, object]] = [
        {"path": ctx.shown(p), "bytes": p.stat().st_size} for p in found[:MAX_LISTED]
    ]
    if len(found) > MAX_LISTED:
        listed.append({"note": f"{len(found) - MAX_LISTED} more files not shown; list a subfolder"})
    return listed


@tool
def read_file(ctx: WorkspaceContext, path: str) -> str:
    """Read a text file of the workspace.

    Args:
        path: the file, relative to the workspace root, such as 'notes/plan.md'.
    """
    target = ctx.path(path)
    if target.is_dir():
        raise ToolError(f"{path!r} is a folder; list_files shows what is in it")
    other = BINARY_SUFFIXES.get(target.suffix.lower())
    if other is not None:
        raise ToolError(f"{path!r} is not a text file; use {other}")
    try:
        text = target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{path!r} is not a UTF-8 text file") from None
    if len(text) > MAX_READ_CHARS:
        return text[:MAX_READ_CHARS] + f"\n...(cut: the file has {len(text)} characters)"
    return text


@tool(write=True)
def write_file(ctx: WorkspaceContext, path: str, content: str) -> str:
    """Create or replace a text file of the workspace with this content.

    Args:
        path: the file, relative to the workspace root, such as 'reports/summary.md'.
        content: the whole new text of the file (longer texts: write a part, then append_file).
    """
    if ctx.path(path, must_exist=False).suffix.lower() in BINARY_SUFFIXES:
        raise ToolError(f"{path!r} is not a text file; use set_cell for .xlsx and create_pdf for .pdf")
    target = write_bytes(ctx, path, content.encode("utf-8"))
    return f"wrote {ctx.shown(target)} ({len(content)} characters)"


@tool(write=True)
def append_file(ctx: WorkspaceContext, path: str, content: str) -> str:
    """Add text at the end of a text file (created when missing): long files are written in parts.

    Args:
        path: the file, relative to the workspace root.
        content: the text to add (include the newlines you want).
    """
    target = ctx.path(path, must_exist=False)
    if target.suffix.lower() in BINARY_SUFFIXES:
        raise ToolError(f"{path!r} is not a text file")
    if target.is_dir():
        raise ToolError(f"{path!r} is a folder; give a file name")
    try:
        before = target.read_text(encoding="utf-8") if target.exists() else ""
    except UnicodeDecodeError:
        raise ToolError(f"{path!r} is not a UTF-8 text file") from None
    write_bytes(ctx, path, (before + content).encode("utf-8"))
    return f"appended {len(content)} characters to {ctx.shown(target)}"


@tool
def read_spreadsheet(ctx: WorkspaceContext, path: str, sheet: str | None = None) -> dict[str, object]:
    """Read one sheet of an .xlsx workbook: its non-empty cells row by row, with A1 references.

    Args:
        path: the workbook, such as 'finance/expenses.xlsx'.
        sheet: the sheet name; the first sheet when left out.
    """
    target = ctx.path(path)
    if target.suffix.lower() != ".xlsx":
        raise ToolError(f"{path!r} is not an .xlsx workbook")
    return read_workbook(target.read_bytes(), path, sheet)


@tool(write=True)
def set_cell(ctx: WorkspaceContext, path: str, cell: str, value: str, sheet: str | None = None) -> str:
    """Set one cell of an .xlsx workbook (the workbook is created when it does not exist yet).

    Args:
        path: the workbook, such as 'finance/summary.xlsx'.
        cell: the A1 reference, such as 'B4'.
        value: what the cell holds; numbers are stored as numbers, an empty value clears the cell.
        sheet: the sheet name; the first sheet when left out (created if the workbook lacks it).
    """
    target = ctx.path(path, must_exist=False)
    if target.suffix.lower() != ".xlsx":
        raise ToolError(f"{path!r} is not an .xlsx workbook")
    reference = check_cell(cell)
    content = target.read_bytes() if target.exists() else None
    updated = set_cells(content, {reference: cell_value(value)}, path, sheet)
    write_bytes(ctx, path, updated)
    return f"set {ctx.shown(target)} {reference} = {value.strip()!r}"


@tool
def read_pdf(ctx: WorkspaceContext, path: str) -> dict[str, object]:
    """Read the text of a PDF, page by page.

    Args:
        path: the PDF, such as 'contracts/acme.pdf'.
    """
    target = ctx.path(path)
    if target.suffix.lower() != ".pdf":
        raise ToolError(f"{path!r} is not a PDF")
    pages = pdf_text(target.read_bytes(), path)
    return {"path": ctx.shown(target), "pages": len(pages), "text": "\n".join(pages)}


@tool(write=True)
def create_pdf(ctx: WorkspaceContext, path: str, title: str, text: str) -> str:
    """Write a PDF document: a title, then the text (one line per line of the text).

    Args:
        path: where to write it, ending in .pdf, such as 'quotes/Q-104.pdf'.
        title: the document title (its first line).
        text: the body; newlines start new lines.
    """
    if ctx.path(path, must_exist=False).suffix.lower() != ".pdf":
        raise ToolError(f"{path!r} must end in .pdf")
    target = write_bytes(ctx, path, make_pdf(title, text.splitlines()))
    return f"wrote {ctx.shown(target)}"


TOOLS = (list_files, read_file, write_file, append_file, read_spreadsheet, set_cell, read_pdf, create_pdf)
