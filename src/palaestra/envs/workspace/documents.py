"""Real document formats for the filesystem service: spreadsheets through openpyxl, PDFs through
pypdf. Both libraries are the `workspace` extra and load on first use.

- A workbook is read as rows of cells with their A1 references; values are numbers, text or
  empty. openpyxl keeps formulas as written and never computes them (docs/references.md §12), so
  the workspace's workbooks hold values, and a formula the agent writes is stored as its text.
- A PDF is written with pypdf's writer: pages whose content streams draw the text in the standard
  Helvetica font (WinAnsi encoding), which pypdf's own text extraction reads back line by line.
  Richer layouts (tables, images) would want a layout library (fpdf2 or reportlab); workspace
  documents are plain text pages, which pypdf writes alone.
"""

from __future__ import annotations

import datetime
import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

from palaestra.envs.service.toolkit import ToolError

CellValue = str | int | float | None
_CELL = re.compile(r"^([A-Z]{1,3})([1-9][0-9]{0,5})$")
LINES_PER_PAGE = 48
CHARS_PER_LINE = 90


def _openpyxl() -> Any:
    try:
        import openpyxl
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "spreadsheets need openpyxl: pip install 'palaestra[workspace]'", name=exc.name
        ) from exc
    return openpyxl


def _pypdf() -> Any:
    try:
        import pypdf
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "PDFs need pypdf: pip install 'palaestra[workspace]'", name=exc.name
        ) from exc
    return pypdf


def check_cell(reference: str) -> str:
    """An A1 cell reference in upper case; ToolError for anything else."""
    cell = reference.strip().upper()
    if not _CELL.match(cell):
        raise ToolError(f"cell {reference!r} is not an A1 reference such as B4")
    return cell


def cell_value(text: str) -> CellValue:
    """What a written cell holds: a number when the text is one, else the text ('' empties it)."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        number = float(stripped.replace(",", ""))
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in stripped else round(number, 6)


def make_workbook(sheets: Mapping[str, Sequence[Sequence[CellValue]]]) -> bytes:
    """An .xlsx file with these sheets (name -> rows), in order."""
    openpyxl = _openpyxl()
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(title=name)
        for row in rows:
            sheet.append(list(row))
    return _save(book)


FIXED_STAMP = datetime.datetime(2024, 1, 1)
"""The time written into every workbook: openpyxl stamps the save time into the document
properties and every zip entry, so two saves of the same cells would differ in their bytes (and a
file listing's sizes, and the sandbox's state hash) by when they ran."""


_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


def _save(book: Any) -> bytes:
    book.properties.created = book.properties.modified = FIXED_STAMP
    out = io.BytesIO()
    book.save(out)
    stamped = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as source, zipfile.ZipFile(stamped, "w") as target:
        for entry in source.infolist():
            fixed = zipfile.ZipInfo(entry.filename, date_time=FIXED_STAMP.timetuple()[:6])
            fixed.compress_type = entry.compress_type
            fixed.external_attr = entry.external_attr
            content = source.read(entry.filename)
            if entry.filename == "docProps/core.xml":  # openpyxl sets `modified` to now when it saves
                content = _MODIFIED.sub(rb"\g<1>2024-01-01T00:00:00Z\g<2>", content)
            target.writestr(fixed, content)
    return stamped.getvalue()


def _load(content: bytes, where: str) -> Any:
    openpyxl = _openpyxl()
    try:
        return openpyxl.load_workbook(io.BytesIO(content))
    except Exception as exc:
        raise ToolError(f"{where} is not a readable .xlsx workbook ({type(exc).__name__})") from exc


def _sheet(book: Any, sheet: str | None, where: str) -> Any:
    if sheet is None or sheet == "":
        return book.worksheets[0]
    if sheet not in book.sheetnames:
        raise ToolError(f"{where} has no sheet {sheet!r}; sheets: {', '.join(book.sheetnames)}")
    return book[sheet]


def read_workbook(content: bytes, where: str, sheet: str | None = None) -> dict[str, Any]:
    """One sheet as `{sheet, sheets, rows: [[{cell, value}...]...]}` (empty cells left out)."""
    book = _load(content, where)
    chosen = _sheet(book, sheet, where)
    rows = []
    for row in chosen.iter_rows():
        cells = {cell.coordinate: cell.value for cell in row if cell.value is not None}
        if cells:
            rows.append(cells)
    return {"sheet": chosen.title, "sheets": list(book.sheetnames), "rows": rows}


def workbook_cells(content: bytes, sheet: str | None = None) -> dict[str, CellValue]:
    """Every non-empty cell of one sheet by reference (for checkers)."""
    book = _load(content, "workbook")
    chosen = _sheet(book, sheet, "workbook")
    return {
        cell.coordinate: cell.value for row in chosen.iter_rows() for cell in row if cell.value is not None
    }


def set_cells(
    content: bytes | None, updates: Mapping[str, CellValue], where: str, sheet: str | None
) -> bytes:
    """The workbook (a new one when `content` is None) with these cells set; ToolError for bad refs."""
    checked = {check_cell(cell): value for cell, value in updates.items()}
    if content is None:
        book = _openpyxl().Workbook()
        if sheet:
            book.active.title = sheet
        chosen = book.active
    else:
        book = _load(content, where)
        if sheet and sheet not in book.sheetnames:
            chosen = book.create_sheet(title=sheet)
        else:
            chosen = _sheet(book, sheet, where)
    for cell, value in checked.items():
        chosen[cell] = value
    return _save(book)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _wrapped(lines: Sequence[str]) -> list[str]:
    out: list[str] = []
    for given in lines:
        line = given.rstrip()
        while len(line) > CHARS_PER_LINE:
            cut = line.rfind(" ", 0, CHARS_PER_LINE)
            cut = cut if cut > 0 else CHARS_PER_LINE
            out.append(line[:cut])
            line = line[cut:].lstrip()
        out.append(line)
    return out


def make_pdf(title: str, lines: Sequence[str]) -> bytes:
    """A text PDF: the title, then the lines (wrapped, 48 to a page), in Helvetica."""
    pypdf = _pypdf()
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = pypdf.PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        }
    )
    body = _wrapped([title, "", *lines])
    pages = [body[i : i + LINES_PER_PAGE] for i in range(0, len(body), LINES_PER_PAGE)] or [[title]]
    for page_lines in pages:
        page = writer.add_blank_page(width=612, height=792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        operations = ["BT", "/F1 11 Tf", "14 TL", "60 740 Td"]
        operations += [f"({_escape(line)}) Tj T*" for line in page_lines]
        operations.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(operations).encode("cp1252", errors="replace"))
        page.replace_contents(stream)
    writer.add_metadata({"/Title": title, "/Producer": "palaestra workspace"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_text(content: bytes, where: str) -> list[str]:
    """The text of each page of a PDF."""
    pypdf = _pypdf()
    try:
        reader = pypdf.PdfReader(io.BytesIO(content))
        return [page.extract_text() or "" for page in reader.pages]
    except Exception as exc:
        raise ToolError(f"{where} is not a readable PDF ({type(exc).__name__})") from exc


__all__ = [
    "CellValue",
    "cell_value",
    "check_cell",
    "make_pdf",
    "make_workbook",
    "pdf_text",
    "read_workbook",
    "set_cells",
    "workbook_cells",
]
