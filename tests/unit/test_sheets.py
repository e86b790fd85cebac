"""The importer's readers are bounded before they read (issue 22, hole 6: zip bombs)."""

from __future__ import annotations

import asyncio
import io
import resource
import zipfile
from pathlib import Path

import httpx
import pytest

from exchange import importer, sheets
from exchange.templates import TEMPLATES, workbook


def _bomb(path: Path, rows: int) -> Path:
    """A valid workbook whose one sheet holds `rows` tiny rows (megabytes of XML in a small file)."""
    template = zipfile.ZipFile(io.BytesIO(workbook(TEMPLATES["cadres"], "en")))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for info in template.infolist():
            if info.filename == "xl/worksheets/sheet1.xml":
                with out.open(info.filename, "w") as part:
                    part.write(
                        b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/'
                        b'spreadsheetml/2006/main"><sheetData>'
                    )
                    chunk = b"".join(
                        b'<row r="%d"><c t="inlineStr"><is><t>x</t></is></c></row>' % n for n in range(1, 10_001)
                    )
                    for _ in range(rows // 10_000):
                        part.write(chunk)
                    part.write(b"</sheetData></worksheet>")
            else:
                out.writestr(info, template.read(info))
    return path


def test_a_workbook_of_too_many_rows_is_refused_before_it_is_loaded(tmp_path: Path) -> None:
    path = _bomb(tmp_path / "rows.xlsx", sheets.MAX_ROWS + 10_000)
    assert path.stat().st_size < 2 * 1024 * 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(sheets.SheetError, match="more than 200000 rows"):
        sheets.read(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024


def test_a_workbook_that_unpacks_to_too_much_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sheets, "MAX_UNPACKED_BYTES", 4 * 1024 * 1024)
    path = tmp_path / "zeros.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr("xl/media/zeros.bin", b"\0" * (8 * 1024 * 1024))
    with pytest.raises(sheets.SheetError, match="unpacks to more than"):
        sheets.read(path)


def test_a_file_too_large_or_not_a_workbook_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(sheets.SheetError, match="not a readable XLSX"):
        sheets.read(junk)
    monkeypatch.setattr(sheets, "MAX_FILE_BYTES", 4)
    text = tmp_path / "big.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(sheets.SheetError, match="at most 4"):
        sheets.read(text)


def test_a_csv_of_too_many_rows_stops_at_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sheets, "MAX_ROWS", 5)
    path = tmp_path / "rows.csv"
    path.write_text("a\n" + "1\n" * 6)
    _, rows = sheets.read(path)
    with pytest.raises(sheets.SheetError, match="more than 5 rows"):
        list(rows)


def test_the_import_of_a_bomb_is_one_clear_problem_and_sends_nothing(tmp_path: Path) -> None:
    path = _bomb(tmp_path / "bomb.xlsx", sheets.MAX_ROWS + 10_000)

    def no_request(request: httpx.Request) -> httpx.Response:
        raise AssertionError(request)

    async def run() -> importer.Report:
        async with httpx.AsyncClient(transport=httpx.MockTransport(no_request), base_url="http://registry") as client:
            return await importer.run(client, TEMPLATES["cadres"], path, source="t", keep_progress=False)

    report = asyncio.run(run())
    assert not report.ok
    assert [(p.row, p.column) for p in report.problems] == [(0, None)]
    assert "more than 200000 rows" in report.problems[0].message
    assert report.commands == 0
