"""Lists the APIs serve, downloaded as CSV and XLSX from running services."""

from __future__ import annotations

import csv
import io

import python_calamine

from runtime.export import XLSX_TYPE
from tests.integration.test_registry_api import CITY, OTHER_CITY, build_tree, nomination
from tests.support import Running


async def test_the_pool_downloads_whole_as_xlsx_and_csv_within_the_actors_subtree(registry: Running) -> None:
    await build_tree(registry.client)
    names = [f"Cadre {n:02d}" for n in range(12)]
    for name in names:
        response = await registry.client.post("/cadres", json=nomination(full_name=name), headers=CITY)
        assert response.status_code == 201, response.text

    # `limit` pages the JSON list; a file holds every row of the filter.
    xlsx = await registry.client.get("/cadres", params={"format": "xlsx", "limit": 5}, headers=CITY)
    assert xlsx.status_code == 200, xlsx.text
    assert xlsx.headers["content-type"] == XLSX_TYPE
    assert xlsx.headers["content-disposition"] == 'attachment; filename="cadres.xlsx"'
    rows = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(xlsx.content)).get_sheet_by_index(0).to_python()
    header = rows[0]
    assert {"cadre_id", "full_name", "org_path", "mentor", "personal_data"} <= set(header)
    assert sorted(row[header.index("full_name")] for row in rows[1:]) == names

    by_accept = await registry.client.get("/cadres", headers={**CITY, "Accept": "text/csv"})
    assert by_accept.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(by_accept.content.decode("utf-8-sig"))))
    assert sorted(row["full_name"] for row in table) == names

    # Outside the subtree: nothing; an unknown unit: a problem, before any file starts.
    other = await registry.client.get("/cadres", params={"format": "csv"}, headers=OTHER_CITY)
    assert other.content.decode("utf-8-sig") == ""
    unknown = await registry.client.get("/cadres", params={"format": "csv", "under": "nowhere"}, headers=CITY)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"

    units = await registry.client.get("/org-units", params={"format": "csv"}, headers=CITY)
    assert [row["code"] for row in csv.DictReader(io.StringIO(units.content.decode("utf-8-sig")))] == ["bh", "bh_ly"]


async def test_a_name_that_is_a_formula_downloads_as_text_in_every_format(registry: Running) -> None:
    """Issue 22, hole 4: a cadre named like a formula must not run when the list is opened."""
    await build_tree(registry.client)
    hostile = ['=HYPERLINK("http://x.example","A")', "+1+1", "-1+1", "@SUM(1)"]
    for name in hostile:
        response = await registry.client.post("/cadres", json=nomination(full_name=name), headers=CITY)
        assert response.status_code == 201, response.text
    expected = sorted("'" + name for name in hostile)
    text = await registry.client.get("/cadres", params={"format": "csv"}, headers=CITY)
    assert sorted(row["full_name"] for row in csv.DictReader(io.StringIO(text.content.decode("utf-8-sig")))) == expected
    xlsx = await registry.client.get("/cadres", params={"format": "xlsx"}, headers=CITY)
    rows = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(xlsx.content)).get_sheet_by_index(0).to_python()
    assert sorted(row[rows[0].index("full_name")] for row in rows[1:]) == expected
    # The JSON answer is data, not a spreadsheet: as recorded.
    listed = await registry.client.get("/cadres", headers=CITY)
    assert sorted(item["full_name"] for item in listed.json()["items"]) == sorted(hostile)
