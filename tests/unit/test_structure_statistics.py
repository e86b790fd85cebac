"""The structure statistics' pure parts: the fold of the registry's events, the tally, the workbook."""

from __future__ import annotations

import io
from datetime import date
from typing import Any
from uuid import UUID, uuid4

from openpyxl import load_workbook

from contracts.registry import (
    CadreNominated,
    CadreProfileUpdated,
    CadreRetired,
    Education,
    Ethnicity,
    Gender,
    ProfileChanges,
    RetirementReason,
)
from exchange import statistics as sheet
from services.registry import statistics
from services.selection import team_ages
from tests.unit.test_notify_rules import recorded

ON = date(2030, 6, 30)
UNITS = [statistics.Unit("ly", "Liuyang County", "county"), statistics.Unit("ly_x", "Xiaohe Township", "township")]


def member(**fields: Any) -> statistics.Member:
    base: dict[str, Any] = {"org_code": "ly", "gender": "female", "birth_date": date(1996, 7, 1)}
    return statistics.Member(**{**base, **fields})


def test_every_cadre_is_counted_once_in_each_group_and_not_recorded_is_a_category() -> None:
    members = [
        member(),  # 33 on the date: its birthday is tomorrow
        member(gender="male", birth_date=date(1980, 1, 1), ethnicity="minority", party="member",
               party_joined_year=2010, rank="正科级", org_code="ly_x"),
        member(party="member", in_service_education="master", full_time_education="bachelor"),
    ]  # fmt: skip
    stats = statistics.tally("cn.ly", "Liuyang County", ON, UNITS, members)
    counts = stats.total.counts
    for group, by_category in counts.items():
        if group not in {"women_by_age", "party_years"}:
            assert sum(by_category.values()) == 3, group
    assert counts["age"] == {"under 30": 0, "30-34": 2, "35-39": 0, "40-44": 0, "45 and over": 1}
    assert counts["women_by_age"]["30-34"] == 2
    assert counts["ethnicity"] == {"han": 0, "minority": 1, "not_recorded": 2}
    assert counts["party_years"] == {
        "under 5 years": 0, "5-9 years": 0, "10-19 years": 0, "20 years and over": 1, "not_recorded": 1
    }  # fmt: skip
    assert counts["rank"] == {"正科级": 1, "not_recorded": 2}
    assert stats.total.average_age == round((33 + 50 + 33) / 3, 1)
    assert [s.level for s in stats.levels] == ["county", "township"]
    assert [(u.code, u.total) for u in stats.levels[0].units] == [("ly", 2)]


def test_the_fold_keeps_who_is_in_the_pool_with_their_latest_categories() -> None:
    kept, left = uuid4(), uuid4()

    def nominated(cadre_id: UUID) -> CadreNominated:
        return CadreNominated(cadre_id=cadre_id, org_code="ly", full_name="Li Wei", gender=Gender.FEMALE,
                              birth_date=date(1990, 1, 1), education=Education.BACHELOR, current_position="Deputy head",
                              years_of_service=5, grassroots_months=12, reason="Recommended")  # fmt: skip

    changes = ProfileChanges(ethnicity=Ethnicity.HAN, rank="副科级")
    events = [
        recorded(nominated(kept), "cn.ly"),
        recorded(nominated(left), "cn.ly"),
        recorded(CadreProfileUpdated(cadre_id=kept, changes=changes), "cn.ly"),
        recorded(CadreRetired(cadre_id=left, reason=RetirementReason.WITHDREW, effective_on=ON), "cn.ly"),
    ]
    members = statistics.pool_on(events, "cn.ly")
    assert members == [member(birth_date=date(1990, 1, 1), ethnicity="han", rank="副科级")]
    assert statistics.pool_on(events, "cn.other") == []


def test_the_workbook_has_a_sheet_per_level_with_the_figures() -> None:
    stats = statistics.tally("cn.ly", "Liuyang County", ON, UNITS, [member(), member(org_code="ly_x")])
    book = load_workbook(io.BytesIO(sheet.workbook(stats)))
    assert book.sheetnames == ["县级", "乡镇级"]
    county = book["县级"]
    assert county.cell(2, 1).value == "截至2030年6月30日"
    assert [county.cell(3, c).value for c in range(1, 5)] == ["单位", "总数", "平均年龄", "性别"]
    assert [county.cell(4, c).value for c in range(4, 6)] == ["女", "男"]
    assert [county.cell(5, c).value for c in range(1, 5)] == ["Liuyang County", 1, 33, 1]
    assert county.cell(6, 1).value == "合计"
    empty = statistics.tally("cn.ly", "Liuyang County", ON, [], [])
    assert load_workbook(io.BytesIO(sheet.workbook(empty))).sheetnames == ["合计"]


def test_a_team_counts_its_members_by_age_band_and_those_without_a_birth_date_apart() -> None:
    seats, unknown = team_ages.Seats, team_ages.NOT_RECORDED
    held = [
        (
            team_ages.Team("ly", "Liuyang County", "county"),
            [seats("51-55", "principal", 1, 55), seats("36-40", "deputy", 1, 36), seats(unknown, "deputy", 1, 0)],
        ),
        (team_ages.Team("ly_y", "Yonghe Township", "township"), []),  # held no seat that day: no line
        (team_ages.Team("ly_x", "Xiaohe Township", "township"), [seats("35 and under", "deputy", 1, 34)]),
    ]
    structure = team_ages.tally("cn.ly", "Liuyang County", ON, held)
    county, township = structure.teams
    assert (county.org_code, county.members, county.average_age) == ("ly", 3, 45.5)
    assert {band: n for band, n in county.by_age.items() if n} == {"51-55": 1, "36-40": 1, "not_recorded": 1}
    assert county.by_kind == {"principal": 1, "deputy": 2}
    assert township.by_age["35 and under"] == 1
    assert structure.total.members == 4
    assert sum(structure.total.by_age.values()) == 4
