"""The registry's rules: pure functions over plain values, no I/O.

Where an org unit may sit in the tree, who may enter the pool, and what may
happen to a cadre once in it.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal
from uuid import UUID

from contracts.envelope import Role
from contracts.event import Event
from contracts.registry import (
    CATEGORY_FIELDS,
    AccessGranted,
    AccessRevoked,
    CadreNominated,
    CadreProfileUpdated,
    CadreRetired,
    Education,
    Gender,
    MentorAssigned,
    OrgLevel,
    OrgUnitRegistered,
    Person,
    PersonalDataErased,
    PersonalDataRecorded,
    ProfileChanges,
    ResponsibleLeaderDesignated,
    RetirementReason,
)
from runtime.errors import ConflictError, GoneError, RuleViolationError

TREE_ORDER: tuple[OrgLevel, ...] = (
    OrgLevel.CENTRAL,
    OrgLevel.PROVINCIAL,
    OrgLevel.MUNICIPAL,
    OrgLevel.COUNTY,
    OrgLevel.TOWNSHIP,
)
EDUCATION_ORDER: tuple[Education, ...] = tuple(Education)


def check_placement(level: OrgLevel, parent_level: OrgLevel | None) -> None:
    """A unit sits strictly below its parent; departments hang under any level above township."""
    if parent_level is None:
        return
    if parent_level in (OrgLevel.TOWNSHIP, OrgLevel.DEPARTMENT) and level is not OrgLevel.DEPARTMENT:
        msg = f"a {level.value} unit cannot sit under a {parent_level.value} unit"
        raise RuleViolationError(msg)
    if parent_level is OrgLevel.DEPARTMENT:
        msg = "departments have no sub-units"
        raise RuleViolationError(msg)
    if level is OrgLevel.DEPARTMENT:
        return
    if TREE_ORDER.index(level) <= TREE_ORDER.index(parent_level):
        msg = f"a {level.value} unit cannot sit under a {parent_level.value} unit"
        raise RuleViolationError(msg)


@dataclass(frozen=True)
class EntryRules:
    """Who may be nominated into the pool (configurable per deployment)."""

    max_age_by_level: Mapping[OrgLevel, int]
    """Oldest age at nomination, by the level of the nominating unit."""
    default_max_age: int
    min_education: Education
    min_years_of_service: int

    def max_age(self, level: OrgLevel) -> int:
        """The age limit that applies to nominations by a unit of `level`."""
        return self.max_age_by_level.get(level, self.default_max_age)


def age_on(birth_date: date, day: date) -> int:
    """Full years of age on `day` (born on 29 February: a year older on 1 March of other years)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


@dataclass(frozen=True)
class EntryCheck:
    """One entry rule applied to a nominee: whether it passes, and why."""

    rule: Literal["max_age", "min_age", "education", "years_of_service"]
    passed: bool
    detail: str


def entry_checks(
    rules: EntryRules,
    *,
    level: OrgLevel,
    birth_date: date,
    education: Education,
    years_of_service: int,
    on: date,
) -> list[EntryCheck]:
    """Every entry rule, applied to a nominee: each passing or failing, with the reason."""
    age = age_on(birth_date, on)
    limit = rules.max_age(level)
    educated = EDUCATION_ORDER.index(education) >= EDUCATION_ORDER.index(rules.min_education)
    served = years_of_service >= rules.min_years_of_service
    return [
        EntryCheck(
            "max_age",
            age <= limit,
            f"aged {age}, {'within' if age <= limit else 'above'} the limit of {limit} for {level.value} units",
        ),
        EntryCheck("min_age", age >= 18, f"aged {age}, {'at least' if age >= 18 else 'below'} 18"),  # noqa: PLR2004
        EntryCheck(
            "education",
            educated,
            f"education {education.value} {'meets' if educated else 'is below'} the required"
            f" {rules.min_education.value}",
        ),
        EntryCheck(
            "years_of_service",
            served,
            f"{years_of_service} years of service, {'at least' if served else 'fewer than'} the required"
            f" {rules.min_years_of_service}",
        ),
    ]


def last_birth_date_older_than(age: int, day: date) -> date:
    """The latest birth date of someone older than `age` on `day`: whoever is born later is at most `age`."""
    year = day.year - age - 1
    if (day.month, day.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, day.month, day.day)


def entry_violations(
    rules: EntryRules,
    *,
    level: OrgLevel,
    birth_date: date,
    education: Education,
    years_of_service: int,
    on: date,
) -> list[str]:
    """Every entry rule a nomination breaks (empty: it may enter the pool)."""
    checks = entry_checks(
        rules, level=level, birth_date=birth_date, education=education, years_of_service=years_of_service, on=on
    )
    return [check.detail for check in checks if not check.passed]


@dataclass(frozen=True)
class OrgUnit:
    """An org unit as its own stream knows it."""

    code: str
    path: str
    level: OrgLevel
    leader_user_id: str | None
    version: int

    @classmethod
    def replay(cls, events: Sequence[Event]) -> OrgUnit | None:
        """Fold a unit's stream; None for a unit never registered."""
        unit: OrgUnit | None = None
        for version, event in enumerate(events, start=1):
            if isinstance(event, OrgUnitRegistered):
                unit = OrgUnit(event.code, event.path, event.level, None, version)
            elif isinstance(event, ResponsibleLeaderDesignated) and unit is not None:
                unit = replace(unit, leader_user_id=event.leader.user_id, version=version)
            elif unit is not None:
                unit = replace(unit, version=version)
        return unit


def designate_leader(unit: OrgUnit, leader: Person) -> list[Event]:
    """Name the unit's first responsible person; nothing when it already is that person."""
    if unit.leader_user_id == leader.user_id:
        return []
    return [ResponsibleLeaderDesignated(org_code=unit.code, leader=leader)]


@dataclass(frozen=True)
class Cadre:
    """A cadre as its own stream knows it."""

    cadre_id: UUID
    org_path: str
    status: Literal["in_pool", "retired"]
    nominated_on: date
    profile: ProfileChanges
    mentor_user_id: str | None
    version: int
    personal_data: Literal["none", "recorded", "erased"] = "none"
    personal_key_id: UUID | None = None
    gender: Gender | None = None
    birth_date: date | None = None
    retired_reason: RetirementReason | None = None

    @classmethod
    def replay(cls, events: Sequence[Event], dates: Sequence[date], org_path: str) -> Cadre | None:
        """Fold a cadre's stream (with the day each event happened); None if never nominated."""
        cadre: Cadre | None = None
        for version, (event, day) in enumerate(zip(events, dates, strict=True), start=1):
            if isinstance(event, CadreNominated):
                profile = ProfileChanges(
                    full_name=event.full_name,
                    current_position=event.current_position,
                    education=event.education,
                    years_of_service=event.years_of_service,
                    grassroots_months=event.grassroots_months,
                    user_id=event.user_id,
                    email=event.email,
                    language=event.language,
                    **{field: getattr(event, field) for field in CATEGORY_FIELDS},
                )
                cadre = Cadre(
                    event.cadre_id,
                    org_path,
                    "in_pool",
                    day,
                    profile,
                    None,
                    version,
                    gender=event.gender,
                    birth_date=event.birth_date,
                )
            elif cadre is None:
                continue
            elif isinstance(event, CadreProfileUpdated):
                merged = cadre.profile.model_copy(update=event.changes.model_dump(exclude_none=True))
                cadre = replace(cadre, profile=merged, version=version)
            elif isinstance(event, MentorAssigned):
                cadre = replace(cadre, mentor_user_id=event.mentor.user_id, version=version)
            elif isinstance(event, CadreRetired):
                cadre = replace(cadre, status="retired", retired_reason=event.reason, version=version)
            elif isinstance(event, PersonalDataRecorded):
                key_id = event.sealed.key_id
                cadre = replace(cadre, personal_data="recorded", personal_key_id=key_id, version=version)
            elif isinstance(event, PersonalDataErased):
                cadre = replace(cadre, personal_data="erased", version=version)
            else:
                cadre = replace(cadre, version=version)
        return cadre


def _still_in_pool(cadre: Cadre) -> None:
    if cadre.status == "retired":
        msg = f"cadre {cadre.cadre_id} has left the pool"
        raise ConflictError(msg)


def update_profile(cadre: Cadre, changes: ProfileChanges) -> list[Event]:
    """Record the fields that really change; nothing when none does."""
    _still_in_pool(cadre)
    current = cadre.profile.model_dump()
    effective = {k: v for k, v in changes.model_dump(exclude_none=True).items() if current.get(k) != v}
    if not effective:
        return []
    return [CadreProfileUpdated(cadre_id=cadre.cadre_id, changes=ProfileChanges(**effective))]


def assign_mentor(cadre: Cadre, mentor: Person) -> list[Event]:
    """Give the cadre a one-on-one mentor; nothing when it already has this one."""
    _still_in_pool(cadre)
    if mentor.user_id == cadre.profile.user_id and mentor.user_id is not None:
        msg = "a cadre cannot mentor themselves"
        raise RuleViolationError(msg)
    if cadre.mentor_user_id == mentor.user_id:
        return []
    return [MentorAssigned(cadre_id=cadre.cadre_id, mentor=mentor)]


def retire(
    cadre: Cadre,
    *,
    reason: RetirementReason,
    effective_on: date,
    note: str,
    appointed_to: str | None,
    today: date,
    post_id: UUID | None = None,
) -> list[Event]:
    """Take the cadre out of the pool for `reason`."""
    _still_in_pool(cadre)
    if reason is RetirementReason.IMPORT_REVERSED:
        msg = "'import_reversed' is recorded only by reversing an import run (POST /import-runs/{run_id}/reversal)"
        raise RuleViolationError(msg)
    if effective_on < cadre.nominated_on:
        msg = f"retirement on {effective_on} precedes the nomination on {cadre.nominated_on}"
        raise RuleViolationError(msg)
    if effective_on > today:
        msg = "a retirement cannot take effect in the future"
        raise RuleViolationError(msg)
    if reason is RetirementReason.APPOINTED and not appointed_to:
        msg = "an appointment names the post (appointed_to)"
        raise RuleViolationError(msg)
    if reason is not RetirementReason.APPOINTED and appointed_to:
        msg = "appointed_to is only for the reason 'appointed'"
        raise RuleViolationError(msg)
    return [
        CadreRetired(
            cadre_id=cadre.cadre_id,
            reason=reason,
            effective_on=effective_on,
            note=note,
            appointed_to=appointed_to,
            post_id=post_id,
        )
    ]


def reverse_import(cadre: Cadre, run_id: UUID) -> list[Event]:
    """Take a cadre a mistaken import nominated out of the pool, as if it had never entered (ADR 0026).

    Whatever was recorded of the cadre since the import stays in its history; the retirement
    takes effect on the day of the nomination. A cadre who already left the pool is left as it is.
    """
    if cadre.status == "retired":
        return []
    note = f"import run {run_id} reversed"
    return [
        CadreRetired(
            cadre_id=cadre.cadre_id,
            reason=RetirementReason.IMPORT_REVERSED,
            effective_on=cadre.nominated_on,
            note=note,
        )
    ]


@dataclass(frozen=True)
class Access:
    """A person's grant as its own stream knows it (`None` grant: none now)."""

    grant: AccessGranted | None
    org_path: str | None
    version: int

    @classmethod
    def replay(cls, events: Sequence[Event], paths: Sequence[str]) -> Access:
        """Fold a person's access stream (with the org path each event was recorded at)."""
        access = Access(None, None, 0)
        for version, (event, path) in enumerate(zip(events, paths, strict=True), start=1):
            granted = event if isinstance(event, AccessGranted) else None
            access = Access(granted, path if granted else None, version)
        return access


GRANTABLE_ROLES: tuple[Role, ...] = (Role.ORGANIZER, Role.AUDITOR, Role.VIEWER, Role.CADRE)
"""Roles a person may be granted; `system` belongs to services acting on their own."""


def grant(access: Access, new: AccessGranted) -> list[Event]:
    """Grant `new`; nothing when the person already has exactly that."""
    if new.role not in GRANTABLE_ROLES:
        msg = f"role {new.role.value} cannot be granted to a person"
        raise RuleViolationError(msg)
    if access.grant == new:
        return []
    return [new]


def check_own_grant(new: AccessGranted, unit_path: str, cadre: Cadre | None) -> None:
    """A cadre's own grant (role `cadre`) names a cadre in the pool by its id, at the cadre's own unit (ADR 0028)."""
    if new.role is not Role.CADRE:
        return
    if cadre is None:
        msg = f"a cadre's own grant is given to a cadre: {new.user_id} is no cadre's id"
        raise RuleViolationError(msg)
    _still_in_pool(cadre)
    if unit_path != cadre.org_path:
        msg = f"a cadre's own grant is at the cadre's own unit, not {new.org_code}"
        raise RuleViolationError(msg)


def revoke(access: Access, user_id: str) -> list[Event]:
    """Take the person's access away; nothing when they have none."""
    if access.grant is None:
        return []
    return [AccessRevoked(user_id=user_id, subject=access.grant.subject)]


def may_record_personal_data(cadre: Cadre) -> None:
    """A cadre in the pool whose personal data was never erased (sealing comes next)."""
    if cadre.personal_data == "erased":
        msg = f"the personal data of cadre {cadre.cadre_id} was erased"
        raise GoneError(msg)
    _still_in_pool(cadre)


def may_grant_personal_data(cadre: Cadre) -> None:
    """Only recorded, not erased, personal data can be shared."""
    if cadre.personal_data == "erased":
        msg = f"the personal data of cadre {cadre.cadre_id} was erased"
        raise GoneError(msg)
    if cadre.personal_data == "none":
        msg = f"cadre {cadre.cadre_id} has no personal data to share"
        raise ConflictError(msg)


def erase_personal_data(cadre: Cadre, reason: str) -> list[Event]:
    """Erase a cadre's personal data (in the pool or not): once, and for good."""
    if cadre.personal_data == "erased":
        msg = f"the personal data of cadre {cadre.cadre_id} is already erased"
        raise ConflictError(msg)
    return [PersonalDataErased(cadre_id=cadre.cadre_id, key_id=cadre.personal_key_id, reason=reason)]


def check_form_identity(cadre: Cadre, *, gender: Gender | None, birth: str) -> None:
    """An appointment form is of this cadre: its gender and month of birth (where given) are the record's.

    Both are fixed at nomination; a form that says otherwise is of someone else, or the record
    needs correcting first.
    """
    problems = []
    if gender is not None and cadre.gender is not None and gender is not cadre.gender:
        problems.append(f"XingBie: the form says {gender.value}, the record {cadre.gender.value}")
    if birth and cadre.birth_date is not None and birth != f"{cadre.birth_date:%Y%m}":
        problems.append(f"ChuShengNianYue: the form says {birth}, the record {cadre.birth_date:%Y%m}")
    if problems:
        msg = f"the form is not of cadre {cadre.cadre_id}"
        raise RuleViolationError(msg, violations=problems)
