"""Reading the rows of an XLSX or CSV file: calamine for workbooks (measured faster than openpyxl), csv for text.

Every input is bounded before it is read (issue 22): the file's size, the bytes a workbook
unpacks to (each part inflated as a stream and counted, never trusting the sizes it declares),
and its rows. A workbook of 1 MB that unpacks to gigabytes, or holds millions of rows, is
refused with a `SheetError` saying which bound it passed, before calamine loads any of it.
"""

from __future__ import annotations

import csv
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import python_calamine

MAX_FILE_BYTES: Final = 64 * 1024 * 1024
"""The largest file taken (an XLSX of 100,000 cadres is about 10 MB)."""
MAX_UNPACKED_BYTES: Final = 256 * 1024 * 1024
"""The most an XLSX may unpack to, all its parts together."""
MAX_ROWS: Final = 200_000
"""The most rows one file may hold (twice the largest import measured)."""

_ROW: Final = re.compile(rb"<(?:\w+:)?row[\s>/]")
_CHUNK: Final = 1024 * 1024


class SheetError(ValueError):
    """The file is not read: too large, unpacks to too much, too many rows, or no workbook."""


def read(path: Path) -> tuple[list[str], Iterator[list[Any]]]:
    """The header of the first sheet and an iterator over its other rows (cells as calamine types them)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        msg = f"the file is {size} bytes; at most {MAX_FILE_BYTES} are taken (split it)"
        raise SheetError(msg)
    if path.suffix.lower() == ".csv":
        handle = path.open(encoding="utf-8-sig", newline="")
        reader = csv.reader(handle)
        header = next(reader, [])

        def rows() -> Iterator[list[Any]]:
            with handle:
                for count, row in enumerate(reader, start=1):
                    if count > MAX_ROWS:
                        msg = f"the file has more than {MAX_ROWS} rows (split it)"
                        raise SheetError(msg)
                    yield row

        return [str(cell) for cell in header], rows()
    check_workbook(path)
    sheet = python_calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
    iterator: Iterator[list[Any]] = iter(sheet.iter_rows())
    first: list[Any] = next(iterator, [])
    return [str(cell) for cell in first], iterator


def check_workbook(path: Path) -> None:
    """Refuse a workbook that unpacks to more than `MAX_UNPACKED_BYTES` or holds more than `MAX_ROWS` rows.

    Each part is inflated in chunks and counted as it comes (a part's declared size may lie), so
    the check itself never holds more than a chunk, and stops at the first bound passed.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = 0
            for info in archive.infolist():
                rows = 0
                tail = b""
                with archive.open(info) as part:
                    while chunk := part.read(_CHUNK):
                        unpacked += len(chunk)
                        if unpacked > MAX_UNPACKED_BYTES:
                            msg = f"the workbook unpacks to more than {MAX_UNPACKED_BYTES} bytes (split it)"
                            raise SheetError(msg)
                        if info.filename.startswith("xl/worksheets/"):
                            window = tail + chunk
                            rows += len(_ROW.findall(window)) - len(_ROW.findall(tail))
                            tail = window[-32:]
                if rows > MAX_ROWS + 1:  # the header row besides
                    msg = f"a sheet has more than {MAX_ROWS} rows (split it)"
                    raise SheetError(msg)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        msg = f"not a readable XLSX workbook: {error}"
        raise SheetError(msg) from None
