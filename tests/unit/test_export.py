"""Lists as CSV and XLSX: what the files hold, and that a million rows stream in flat memory."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from uuid import UUID

import openpyxl
import python_calamine
from pydantic import BaseModel

from exchange.templates import TEMPLATES, csv_text, workbook
from runtime.export import cell_text, csv_chunks, xlsx_chunks

REPO = Path(__file__).resolve().parents[2]


class Posting(BaseModel):
    kind: str
    months: int


class Entry(BaseModel):
    cadre_id: UUID
    full_name: str
    born: date
    score: float
    posting: Posting | None
    tags: list[str]


ENTRIES = [
    Entry(
        cadre_id=UUID(int=1),
        full_name="李伟",
        born=date(1990, 3, 7),
        score=87.5,
        posting=Posting(kind="downward", months=12),
        tags=["a", "b"],
    ),
    Entry(cadre_id=UUID(int=2), full_name=" Zhang\x01 Min ", born=date(1988, 1, 2), score=70, posting=None, tags=[]),
]
HEADER = ["cadre_id", "full_name", "born", "score", "posting.kind", "posting.months", "tags"]


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def test_xlsx_holds_the_rows_as_excel_and_calamine_read_them() -> None:
    data = asyncio.run(collect(xlsx_chunks(ENTRIES, HEADER, sheet="pool")))
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert book.sheetnames == ["pool"]
    rows = [list(row) for row in book["pool"].iter_rows(values_only=True)]
    assert rows[0] == HEADER
    assert rows[1] == [str(UUID(int=1)), "李伟", "1990-03-07", 87.5, "downward", 12, '["a","b"]']
    assert rows[2] == [str(UUID(int=2)), " Zhang Min ", "1988-01-02", 70, None, None, "[]"]
    sheet = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_name("pool")
    assert sheet.to_python()[1][:4] == [str(UUID(int=1)), "李伟", "1990-03-07", 87.5]


def test_csv_has_a_byte_order_mark_and_the_columns_of_the_first_row() -> None:
    data = asyncio.run(collect(csv_chunks(ENTRIES)))
    assert data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == HEADER
    assert rows[1][1] == "李伟"
    assert rows[2][4:6] == ["", ""]


def test_an_empty_list_is_a_header_only_file() -> None:
    data = asyncio.run(collect(csv_chunks([], ["a", "b"])))
    assert data.decode("utf-8-sig").splitlines() == ["a,b"]
    book = openpyxl.load_workbook(io.BytesIO(asyncio.run(collect(xlsx_chunks([], ["a", "b"])))), read_only=True)
    assert [list(r) for r in book["Sheet1"].iter_rows(values_only=True)] == [["a", "b"]]


_PROBE = textwrap.dedent(
    """
    import asyncio, resource, sys
    from runtime.export import csv_chunks, xlsx_chunks

    async def rows(n):
        for i in range(n):
            yield {"n": i, "name": f"李伟 {i}", "org_path": "cn.qs.bh.bh_ly", "grade": "competent"}

    async def main(fmt, n):
        size = 0
        async for chunk in (csv_chunks if fmt == "csv" else xlsx_chunks)(rows(n)):
            size += len(chunk)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, size)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def peak_kib(fmt: str, rows: int) -> tuple[int, int]:
    done = subprocess.run(  # noqa: S603 - our interpreter, our probe
        [sys.executable, "-c", _PROBE, fmt, str(rows)],
        capture_output=True, text=True, check=True, cwd=REPO, env={"PYTHONPATH": str(REPO)}, timeout=280,
    )  # fmt: skip
    peak, size = done.stdout.split()
    return int(peak), int(size)


def test_a_million_rows_stream_in_the_memory_of_a_thousand() -> None:
    for fmt in ("csv", "xlsx"):
        small, _ = peak_kib(fmt, 1_000)
        large, size = peak_kib(fmt, 1_000_000)
        assert size > 5_000_000, (fmt, size)  # the rows really were written
        assert large - small < 16 * 1024, (fmt, small, large)  # peak resident memory grew by less than 16 MiB


FORMULAS = ["=1+2", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1", "\uff1d1+2"]


class Named(BaseModel):
    full_name: str
    score: float


def test_no_exported_cell_runs_as_a_formula_in_either_format() -> None:
    """Issue 22, hole 4: text a spreadsheet would run gets a leading apostrophe, in CSV and XLSX alike."""
    rows = [Named(full_name=text, score=-1.5) for text in FORMULAS]
    expected = ["'" + text for text in FORMULAS]
    data = asyncio.run(collect(csv_chunks(rows)))
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert [row[0] for row in table[1:]] == expected
    assert {row[1] for row in table[1:]} == {"-1.5"}  # a number is no text: as it is
    data = asyncio.run(collect(xlsx_chunks(rows, sheet="pool")))
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True)["pool"]
    cells = [list(row) for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert [row[0] for row in cells] == expected
    assert {row[1] for row in cells} == {-1.5}
    # A column name is a cell too.
    header = asyncio.run(collect(csv_chunks([], ["=name"])))
    assert header.decode("utf-8-sig").splitlines() == ["'=name"]


def test_cell_text_leaves_ordinary_text_and_values_alone() -> None:
    assert cell_text("李伟") == "李伟"
    assert cell_text("a=b") == "a=b"
    assert cell_text(-3) == "-3"
    assert cell_text(date(1990, 3, 7)) == "1990-03-07"
    assert cell_text(None) == ""


def test_the_import_templates_neutralize_their_cells_too() -> None:
    template = next(iter(TEMPLATES.values()))
    hostile = dataclasses.replace(template, columns=(dataclasses.replace(template.columns[0], example="=1+2"),))
    text = csv_text(hostile, "en").decode("utf-8-sig")
    assert text.splitlines()[1] == "'=1+2"
    sheet = openpyxl.load_workbook(io.BytesIO(workbook(hostile, "en"))).active
    assert sheet is not None
    assert sheet.cell(row=2, column=1).value == "'=1+2"
    assert sheet.cell(row=2, column=1).data_type == "s"
