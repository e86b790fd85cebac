"""Any list an API serves, as CSV or XLSX, streamed: a million rows never sit in memory.

A list endpoint takes `Table` (the `format` query parameter, or an `Accept` header naming CSV or
XLSX) and, when one is asked for, answers `table_response(...)` with its rows as an async
iterable instead of a JSON list (`table_or_rows` picks between the two for a list at hand). Rows
are pydantic models or mappings; nested fields become dotted columns (`posting.kind`), lists
become JSON text.

XLSX is written as it goes: a ZIP stream (stdlib `zipfile` over a sink that is drained after
every few hundred rows) whose worksheet part lxml writes incrementally; the other parts are the
few fixed ones every workbook has. Memory stays flat whatever the row count (tested with a
million rows, tests/unit/test_export.py).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any, Final, Literal, TypeVar

import orjson
from fastapi import Depends, Query, Request
from fastapi.responses import StreamingResponse
from lxml import etree
from pydantic import BaseModel

from runtime import limits
from runtime.auth import CurrentActor
from runtime.errors import CommandError

Format = Literal["csv", "xlsx"]
CSV_TYPE: Final = "text/csv"
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_ROWS_PER_CHUNK: Final = 500
_MAX_CELL: Final = 32_767  # Excel's limit on the characters of one cell
_ILLEGAL_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


async def table_format(
    request: Request,
    actor: CurrentActor,
    format: Annotated[  # noqa: A002 - the parameter's public name
        Format | None, Query(description="csv or xlsx: the whole list as a file, streamed (default: JSON)")
    ] = None,
) -> Format | None:
    """FastAPI dependency: the file format asked for (query parameter first, then `Accept`), or None for JSON.

    A whole list as a file is an expensive read: it counts against the actor's share (runtime.limits).
    """
    chosen: Format | None = format
    if chosen is None:
        accept = request.headers.get("accept", "")
        if XLSX_TYPE in accept:
            chosen = "xlsx"
        elif CSV_TYPE in accept:
            chosen = "csv"
    if chosen is not None:
        limits.charge(request, actor, limits.EXPENSIVE)
    return chosen


Table = Annotated[Format | None, Depends(table_format)]

T = TypeVar("T")


def _plain(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _plain(inner, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list | tuple):
        out[prefix] = orjson.dumps(value, default=str).decode()
    else:
        out[prefix] = value


def flatten(row: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """One row as flat columns: nested models and mappings become dotted names."""
    if isinstance(row, BaseModel):
        row = row.model_dump(mode="json")
    if not any(isinstance(value, _NESTED) for value in row.values()):
        return dict(row)
    out: dict[str, Any] = {}
    _plain(row, "", out)
    return out


_NESTED: Final = (BaseModel, Mapping, list, tuple)


_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
"""What makes a spreadsheet read a cell as a formula (full-width forms too: some spreadsheets fold them)."""


def cell_text(value: Any) -> str:
    """A value as an exported cell's text; text that a spreadsheet would run as a formula is neutralized.

    Every exporter's cells (CSV and XLSX alike) go through here: a text beginning with `=`, `+`,
    `-`, `@`, a tab or a carriage return gets a leading apostrophe, so that it shows as written
    and never runs (a cadre named `=HYPERLINK(...)` stays a name). Numbers, dates and booleans are
    not text and stay as they are.
    """
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


async def _rows(rows: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[dict[str, Any]]:
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield flatten(row)
    else:
        for row in rows:
            yield flatten(row)


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream whose bytes are taken out as they come."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


async def csv_chunks(
    rows: AsyncIterable[Any] | Iterable[Any], columns: list[str] | None = None
) -> AsyncIterator[bytes]:
    """CSV (UTF-8 with a byte order mark, so that Excel reads Chinese right), a chunk every few hundred rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header: list[str] | None = columns
    count = 0
    yield "\ufeff".encode()
    async for row in _rows(rows):
        if header is None:
            header = list(row)
        if count == 0:
            writer.writerow([cell_text(name) for name in header])
        writer.writerow([cell_text(row.get(name)) for name in header])
        count += 1
        if count % _ROWS_PER_CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if count == 0 and header is not None:
        writer.writerow([cell_text(name) for name in header])
    yield buffer.getvalue().encode()


_NS: Final = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_FIXED_PARTS: Final = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml"'
        ' ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml"'
        ' ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Target="xl/workbook.xml"'
        ' Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>'
        "</Relationships>"
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Target="worksheets/sheet1.xml"'
        ' Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"/>'
        "</Relationships>"
    ),
}


def _workbook(sheet: str) -> bytes:
    root = etree.Element(f"{{{_NS}}}workbook", nsmap={None: _NS, "r": _REL_NS})  # type: ignore[dict-item]
    sheets = etree.SubElement(root, f"{{{_NS}}}sheets")
    etree.SubElement(sheets, f"{{{_NS}}}sheet", {"name": sheet[:31], "sheetId": "1", f"{{{_REL_NS}}}id": "rId1"})
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True))


_REL_NS: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


_SubElement: Final = etree.SubElement
_PRESERVE: Final = "{http://www.w3.org/XML/1998/namespace}space"


def _row(values: Iterable[Any]) -> etree._Element:
    row = etree.Element("row")
    for value in values:
        if value is None:
            _SubElement(row, "c")  # an empty cell keeps the next ones in their columns
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            _SubElement(_SubElement(row, "c", t="n"), "v").text = repr(value)
            continue
        text = cell_text(value)
        if _ILLEGAL_XML.search(text):
            text = _ILLEGAL_XML.sub("", text)
        node = _SubElement(_SubElement(_SubElement(row, "c", t="inlineStr"), "is"), "t")
        node.text = text[:_MAX_CELL]
        if text[:1].isspace() or text[-1:].isspace():
            node.set(_PRESERVE, "preserve")
    return row


async def xlsx_chunks(
    rows: AsyncIterable[Any] | Iterable[Any], columns: list[str] | None = None, *, sheet: str = "Sheet1"
) -> AsyncIterator[bytes]:
    """A one-sheet XLSX workbook (header row, then the rows), a chunk every few hundred rows."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, text in _FIXED_PARTS.items():
            archive.writestr(name, text)
        archive.writestr("xl/workbook.xml", _workbook(sheet))
        with (
            archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as part,
            etree.xmlfile(part, encoding="UTF-8") as xml,
        ):
            xml.write_declaration(standalone=True)
            with xml.element("worksheet", nsmap={None: _NS}), xml.element("sheetData"):
                header: list[str] | None = columns
                count = 0
                if header is not None:
                    xml.write(_row(header))
                async for row in _rows(rows):
                    if header is None:
                        header = list(row)
                        xml.write(_row(header))
                    xml.write(_row(row.get(name) for name in header))
                    count += 1
                    if count % _ROWS_PER_CHUNK == 0:
                        xml.flush()
                        yield sink.take()
    yield sink.take()


def table_response(
    fmt: Format,
    rows: AsyncIterable[Any] | Iterable[Any],
    *,
    filename: str,
    columns: list[str] | None = None,
) -> StreamingResponse:
    """The rows as a streamed CSV or XLSX download named `filename` (without extension)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,80}", filename):
        msg = f"bad export file name {filename!r}"
        raise CommandError(msg)
    body = csv_chunks(rows, columns) if fmt == "csv" else xlsx_chunks(rows, columns, sheet=filename)
    media = f"{CSV_TYPE}; charset=utf-8" if fmt == "csv" else XLSX_TYPE
    headers = {"Content-Disposition": f'attachment; filename="{filename}.{fmt}"'}
    return StreamingResponse(body, media_type=media, headers=headers)


def table_or_rows(fmt: Format | None, rows: list[T], *, filename: str) -> list[T] | StreamingResponse:
    """`rows` as they are (a JSON list), or the `fmt` download of them when one was asked for (`Table`)."""
    return table_response(fmt, rows, filename=filename) if fmt else rows
