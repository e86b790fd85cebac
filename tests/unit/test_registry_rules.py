"""The registry's rules, without Kafka or PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from contracts.envelope import uuid7
from contracts.registry import (
    CadreNominated,
    CadreProfileUpdated,
    CadreRetired,
    Education,
    MentorAssigned,
    OrgLevel,
    Person,
    ProfileChanges,
    RetirementReason,
)
from runtime import clock
from runtime.errors import ConflictError, RuleViolationError
from services.registry import rules
from tests import support

RULES = rules.EntryRules(
    max_age_by_level={OrgLevel.TOWNSHIP: 35, OrgLevel.COUNTY: 40},
    default_max_age=45,
    min_education=Education.COLLEGE,
    min_years_of_service=2,
)
pytestmark = pytest.mark.dates


@pytest.fixture
def today() -> date:
    """The organization's date on the platform's clock (the tests run at awkward instants too)."""
    return clock.today()


def aged(years: int, today: date) -> date:
    """The birth date of someone who is `years` old today and turns `years + 1` tomorrow."""
    return rules.last_birth_date_older_than(years, today) + timedelta(days=1)


@pytest.mark.parametrize(
    ("level", "parent", "ok"),
    [
        (OrgLevel.PROVINCIAL, OrgLevel.CENTRAL, True),
        (OrgLevel.COUNTY, OrgLevel.PROVINCIAL, True),
        (OrgLevel.TOWNSHIP, OrgLevel.COUNTY, True),
        (OrgLevel.DEPARTMENT, OrgLevel.COUNTY, True),
        (OrgLevel.CENTRAL, None, True),
        (OrgLevel.PROVINCIAL, OrgLevel.MUNICIPAL, False),
        (OrgLevel.COUNTY, OrgLevel.COUNTY, False),
        (OrgLevel.TOWNSHIP, OrgLevel.TOWNSHIP, False),
        (OrgLevel.DEPARTMENT, OrgLevel.DEPARTMENT, False),
        (OrgLevel.COUNTY, OrgLevel.DEPARTMENT, False),
    ],
)
def test_placement_in_the_tree(level: OrgLevel, parent: OrgLevel | None, ok: bool) -> None:
    if ok:
        rules.check_placement(level, parent)
    else:
        with pytest.raises(RuleViolationError):
            rules.check_placement(level, parent)


def test_age_counts_full_years(today: date) -> None:
    oldest = rules.last_birth_date_older_than(35, today)
    assert rules.age_on(oldest, today) == 36
    assert rules.age_on(oldest + timedelta(days=1), today) == 35
    assert rules.age_on(aged(35, today), today + timedelta(days=1)) == 36


def test_born_on_29_february_one_is_a_year_older_on_1_march() -> None:
    born = date(1996, 2, 29)  # a fact, not a day time overtakes
    assert rules.age_on(born, date(2001, 2, 28)) == 4
    assert rules.age_on(born, date(2001, 3, 1)) == 5
    assert rules.age_on(born, date(2000, 2, 29)) == 4
    assert rules.last_birth_date_older_than(4, date(2000, 2, 29)) == date(1995, 2, 28)
    assert rules.last_birth_date_older_than(3, date(2000, 2, 29)) == date(1996, 2, 29)


def test_entry_rules_by_level(today: date) -> None:
    def violations(
        level: OrgLevel, birth: date, education: Education = Education.BACHELOR, years: int = 5
    ) -> list[str]:
        return rules.entry_violations(
            RULES, level=level, birth_date=birth, education=education, years_of_service=years, on=today
        )

    assert violations(OrgLevel.TOWNSHIP, aged(35, today)) == []
    assert "above the limit of 35" in violations(OrgLevel.TOWNSHIP, aged(36, today))[0]
    assert violations(OrgLevel.COUNTY, aged(36, today)) == []
    assert violations(OrgLevel.MUNICIPAL, aged(44, today)) == []  # the default limit: 45
    assert "below the required college" in violations(OrgLevel.COUNTY, aged(31, today), Education.SECONDARY)[0]
    assert "fewer than the required 2" in violations(OrgLevel.COUNTY, aged(31, today), years=1)[0]
    assert "below 18" in violations(OrgLevel.COUNTY, aged(16, today))[0]


def make_cadre(nominated_on: date | None = None) -> rules.Cadre:
    cadre_id = uuid7()
    nominated = support.nominated(cadre_id, reason="r", user_id="li.wei")
    cadre = rules.Cadre.replay([nominated], [nominated_on or clock.today()], "cn.qs.ly")
    assert cadre is not None
    return cadre


def test_replay_folds_the_stream(today: date) -> None:
    cadre = make_cadre()
    mentor = Person(user_id="m", name="M")
    events = [
        CadreNominated(**{**_nomination_fields(cadre), "cadre_id": cadre.cadre_id}),
        CadreProfileUpdated(cadre_id=cadre.cadre_id, changes=ProfileChanges(current_position="Head")),
        MentorAssigned(cadre_id=cadre.cadre_id, mentor=mentor),
        CadreRetired(cadre_id=cadre.cadre_id, reason=RetirementReason.WITHDREW, effective_on=today),
    ]
    folded = rules.Cadre.replay(events, [today] * 4, "cn.qs.ly")
    assert folded is not None
    assert folded.version == 4
    assert folded.status == "retired"
    assert folded.mentor_user_id == "m"
    assert folded.profile.current_position == "Head"


def _nomination_fields(cadre: rules.Cadre) -> dict[str, object]:
    return {
        "org_code": "ly",
        "full_name": "Li Wei",
        "gender": "female",
        "birth_date": date(1992, 5, 17),
        "education": "master",
        "current_position": "Deputy head",
        "years_of_service": 8,
        "grassroots_months": 30,
        "reason": "r",
    }


def test_profile_update_records_only_real_changes() -> None:
    cadre = make_cadre()
    assert rules.update_profile(cadre, ProfileChanges(full_name="Li Wei")) == []
    [event] = rules.update_profile(cadre, ProfileChanges(full_name="Li Wei", current_position="Head"))
    assert isinstance(event, CadreProfileUpdated)
    assert event.changes.model_dump(exclude_none=True) == {"current_position": "Head"}


def test_mentor_rules() -> None:
    cadre = make_cadre()
    with pytest.raises(RuleViolationError):
        rules.assign_mentor(cadre, Person(user_id="li.wei", name="Li Wei"))
    [event] = rules.assign_mentor(cadre, Person(user_id="m", name="M"))
    assert isinstance(event, MentorAssigned)


def test_retirement_rules(today: date) -> None:
    nominated_on = today - timedelta(days=600)
    cadre = make_cadre(nominated_on)

    def retire(reason: RetirementReason, on: date, appointed_to: str | None = None) -> list[object]:
        return list(
            rules.retire(cadre, reason=reason, effective_on=on, note="", appointed_to=appointed_to, today=today)
        )

    with pytest.raises(RuleViolationError, match="names the post"):
        retire(RetirementReason.APPOINTED, today)
    with pytest.raises(RuleViolationError, match="only for the reason"):
        retire(RetirementReason.WITHDREW, today, "Head")
    with pytest.raises(RuleViolationError, match="precedes the nomination"):
        retire(RetirementReason.WITHDREW, nominated_on - timedelta(days=1))
    with pytest.raises(RuleViolationError, match="future"):
        retire(RetirementReason.AGED_OUT, today + timedelta(days=1))
    assert retire(RetirementReason.WITHDREW, nominated_on)  # on the day of the nomination itself
    [event] = retire(RetirementReason.APPOINTED, today, "Deputy county head")
    assert isinstance(event, CadreRetired)
    gone = rules.Cadre.replay([_nominated(cadre), event], [nominated_on, today], cadre.org_path)
    assert gone is not None
    with pytest.raises(ConflictError):
        rules.assign_mentor(gone, Person(user_id="m", name="M"))


def test_a_reversed_import_takes_the_cadre_out_as_if_never_in(today: date) -> None:
    nominated_on = today - timedelta(days=30)
    cadre = make_cadre(nominated_on)
    run = uuid7()
    with pytest.raises(RuleViolationError, match="only by reversing an import run"):
        rules.retire(
            cadre, reason=RetirementReason.IMPORT_REVERSED, effective_on=today, note="", appointed_to=None, today=today
        )
    [event] = rules.reverse_import(cadre, run)
    assert isinstance(event, CadreRetired)
    assert (event.reason, event.effective_on, event.note) == (
        RetirementReason.IMPORT_REVERSED,
        nominated_on,
        f"import run {run} reversed",
    )
    reversed_ = rules.Cadre.replay([_nominated(cadre), event], [nominated_on, today], cadre.org_path)
    assert reversed_ is not None
    assert (reversed_.status, reversed_.retired_reason) == ("retired", RetirementReason.IMPORT_REVERSED)
    assert rules.reverse_import(reversed_, run) == []  # a cadre out of the pool stays as it is
    withdrew = rules.retire(
        cadre, reason=RetirementReason.WITHDREW, effective_on=today, note="", appointed_to=None, today=today
    )
    gone = rules.Cadre.replay([_nominated(cadre), *withdrew], [nominated_on, today], cadre.org_path)
    assert gone is not None
    assert gone.retired_reason is RetirementReason.WITHDREW
    assert rules.reverse_import(gone, run) == []


def _nominated(cadre: rules.Cadre) -> CadreNominated:
    return CadreNominated(cadre_id=cadre.cadre_id, **_nomination_fields(cadre))
