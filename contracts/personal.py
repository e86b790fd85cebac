"""Personal data that may be erased: what a sealed field looks like on the wire, and what it holds.

Fields such as the ID number, the family, the photo, health and address never travel in the
clear. The registry seals them with the cadre's own key (AES-256-GCM) before the event is
hashed and published; the key lives outside the event store (runtime.keystore). Erasing the
cadre destroys the key: every copy of the ciphertext (store, topics, archives, bundles) stays
as it was, hash chain intact, and can no longer be read (ADR 0013).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints

from contracts.envelope import ONE_LINE
from contracts.event import Value

Line = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200, pattern=ONE_LINE)]
Paragraphs = Annotated[str, StringConstraints(max_length=20_000)]
YearMonth = Annotated[str, StringConstraints(pattern=r"^([0-9]{6})?$")]
"""`yyyymm` as the appointment form writes months (empty: unknown)."""
IdNumber = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^([0-9]{17}[0-9Xx]|[0-9]{15})?$")]
"""A resident identity card number (18 characters, the last a digit or X; 15 for old cards)."""

PHOTO_MAX_BASE64 = 2_800_000
"""About 2 MiB of image."""


class Sealed(Value):
    """Bytes encrypted with one cadre's key (AES-256-GCM); readable only where that key is held."""

    key_id: UUID
    """Which key sealed it (one per cadre)."""
    nonce: Annotated[str, StringConstraints(min_length=16, max_length=16)]
    """12 random bytes, base64."""
    ciphertext: Annotated[str, StringConstraints(min_length=1, max_length=8_000_000)]
    """The encrypted canonical JSON of a `PersonalFile` with its 16-byte tag, base64."""


class Education(Value):
    """One of the form's two education rows (full-time, in service)."""

    level: Line = ""
    """学历, e.g. 大学, 研究生."""
    degree: Line = ""
    """学位, e.g. 法学学士."""
    level_school: Line = ""
    """Where the level was obtained: school, department and major."""
    degree_school: Line = ""
    """Where the degree was obtained."""


class FamilyMember(Value):
    """A family member or important social relation, as the form lists them."""

    relation: Line
    """称谓: 妻子, 父亲, ..."""
    name: Line
    birth: YearMonth = ""
    political_status: Line = ""
    work: Line = ""
    """Work unit and post (工作单位及职务)."""


class PersonalFile(Value):
    """Everything about a cadre that the appointment form needs and the pool's records do not hold.

    Sealed whole in `PersonalDataRecorded`; each recording replaces the previous one.
    """

    id_number: IdNumber = ""
    ethnicity: Line = ""
    native_place: Line = ""
    birthplace: Line = ""
    party_joined: YearMonth = ""
    work_started: YearMonth = ""
    health: Line = ""
    address: Line = ""
    phone: Line = ""
    professional_title: Line = ""
    expertise: Line = ""
    full_time: Education = Field(default_factory=Education)
    in_service: Education = Field(default_factory=Education)
    resume: Paragraphs = ""
    """简历: one line per period."""
    rewards_and_penalties: Paragraphs = ""
    annual_assessments: Paragraphs = ""
    proposed_post: Line = ""
    proposed_removal: Line = ""
    reason_for_appointment: Paragraphs = ""
    reporting_unit: Line = ""
    form_filled_by: Line = ""
    family: list[FamilyMember] = Field(default_factory=list, max_length=30)
    photo: Annotated[str, StringConstraints(max_length=PHOTO_MAX_BASE64)] = ""
    """A JPEG or PNG, base64 (the form's ZhaoPian)."""
