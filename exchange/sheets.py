"""Reading the rows of an XLSX or CSV file: calamine for workbooks (measured faster than openpyxl), csv for text."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import python_calamine


def read(path: Path) -> tuple[list[str], Iterator[list[Any]]]:
    """The header of the first sheet and an iterator over its other rows (cells as calamine types them)."""
    if path.suffix.lower() == ".csv":
        handle = path.open(encoding="utf-8-sig", newline="")
        reader = csv.reader(handle)
        header = next(reader, [])

        def rows() -> Iterator[list[Any]]:
            with handle:
                yield from reader

        return [str(cell) for cell in header], rows()
    sheet = python_calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
    iterator: Iterator[list[Any]] = iter(sheet.iter_rows())
    first: list[Any] = next(iterator, [])
    return [str(cell) for cell in first], iterator
