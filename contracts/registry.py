"""Events of the registry: org units, cadres entering and leaving the pool, mentors, leaders."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import Field, StringConstraints

from contracts import topics
from contracts.envelope import NOT_BLANK_LINE, NOT_BLANK_TEXT, ONE_LINE, WHITE_SPACE, OrgCode, OrgPath, Role
from contracts.event import Event, Value
from contracts.personal import Sealed

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NOT_BLANK_LINE)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Statement = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, pattern=NOT_BLANK_TEXT)
]
"""A text that must say something (a reason, a finding): lines allowed, not white space alone.

The pattern tells clients what `strip_whitespace` and `min_length` keep, so that a text of
white space the schema's `\\s` does not know (U+0085) is not a schema-valid one refused."""
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=254,
        pattern=rf"^[^@{WHITE_SPACE}\x00-\x1f\x7f]+@[^@{WHITE_SPACE}\x00-\x1f\x7f]+\.[^@{WHITE_SPACE}\x00-\x1f\x7f]+$",
    ),
]
UserId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=NOT_BLANK_LINE)]


class OrgLevel(StrEnum):
    """The levels of the organization, from the top down."""

    CENTRAL = "central"
    PROVINCIAL = "provincial"
    MUNICIPAL = "municipal"
    COUNTY = "county"
    TOWNSHIP = "township"
    DEPARTMENT = "department"
    """A department of a unit at any level above township."""


class Gender(StrEnum):
    """As recorded in the personnel file."""

    FEMALE = "female"
    MALE = "male"


class Education(StrEnum):
    """Highest completed education, lowest first."""

    SECONDARY = "secondary"
    COLLEGE = "college"
    BACHELOR = "bachelor"
    MASTER = "master"
    DOCTORATE = "doctorate"


class Ethnicity(StrEnum):
    """Recorded only as the category the statistics count (the personal file keeps the rest, sealed)."""

    HAN = "han"
    MINORITY = "minority"


class PartyMembership(StrEnum):
    """Whether the cadre is a member of the party (the category the statistics count)."""

    MEMBER = "member"
    NON_PARTY = "non_party"


class RetirementReason(StrEnum):
    """Why a cadre left the pool."""

    APPOINTED = "appointed"
    AGED_OUT = "aged_out"
    ELIMINATED_BY_ASSESSMENT = "eliminated_by_assessment"
    WITHDREW = "withdrew"
    DISCIPLINED = "disciplined"
    IMPORT_REVERSED = "import_reversed"
    """The nomination came in by a mistaken import, reversed as a whole (ADR 0026): never given by hand."""


class Basis(StrEnum):
    """What a nomination or an appointment stands on, as its event records it."""

    PROCEDURE = "procedure"
    """A procedure recorded step by step (its id in the event)."""
    WITHOUT_PROCEDURE = "without_procedure"
    """Recorded by one decision without a procedure on the record: made before procedures were, or directly."""
    IMPORTED = "imported"
    """Taken from another system's records (an import): the decision was made and kept there."""

    @classmethod
    def of(cls, procedure_id: object, *, imported: bool = False) -> Basis:
        """The basis of an event with this `procedure_id` (None: none) and import mark."""
        if procedure_id is not None:
            return cls.PROCEDURE
        return cls.IMPORTED if imported else cls.WITHOUT_PROCEDURE


class Language(StrEnum):
    """Languages the organization writes to people in."""

    ZH = "zh"
    EN = "en"


class Categories(Value):
    """What the structure statistics count a cadre by, beside gender, birth date and education.

    Every field is optional: absent (and in every event recorded before they existed) it reads
    as *not recorded*. Only the category is kept here (Han or minority, not the ethnicity; the
    year of joining the party, not the date): the sealed personal file keeps the rest.
    """

    ethnicity: Ethnicity | None = None
    party: PartyMembership | None = None
    party_joined_year: int | None = Field(default=None, ge=1900, le=2100)
    """The year a member joined the party (for the years of membership)."""
    full_time_education: Education | None = None
    """Highest education completed in full-time study (全日制教育)."""
    in_service_education: Education | None = None
    """Highest education completed in in-service study (在职教育)."""
    rank: Name | None = None
    """The cadre's present rank (职级), as the organization names it (e.g. 正科级)."""
    reserve_kind: Name | None = None
    """The kind of post the cadre is a reserve for (e.g. 县处级副职), as the entry procedure names it."""


CATEGORY_FIELDS: tuple[str, ...] = tuple(Categories.model_fields)


class Person(Value):
    """Someone who is not (necessarily) a cadre: a mentor, a unit's leader."""

    user_id: UserId
    name: Name
    email: Email | None = None
    language: Language = Language.ZH


class _RegistryEvent(Event):
    """An event of the registry service, on its topic."""

    topic: ClassVar[str] = topics.REGISTRY


class OrgUnitRegistered(_RegistryEvent):
    """A unit joined the organization tree under its parent (none for the root)."""

    code: OrgCode
    name: Name
    level: OrgLevel
    parent_code: OrgCode | None
    path: OrgPath
    target_pool_size: int = Field(default=0, ge=0)
    """How many reserve cadres the unit aims to keep in its pool."""


class ResponsibleLeaderDesignated(_RegistryEvent):
    """The unit's main leader became the first responsible person for its reserve cadres."""

    org_code: OrgCode
    leader: Person


class CadreNominatedV1(_RegistryEvent):
    """Version 1 of `CadreNominated`: only the birth year was recorded.

    Kept so that events stored in version 1 still validate; read through
    `contracts.upcasters.cadre_nominated_v1_to_v2`.
    """

    event_type: ClassVar[str] = "CadreNominated"
    schema_version: ClassVar[int] = 1

    cadre_id: UUID
    org_code: OrgCode
    full_name: Name
    gender: Gender
    birth_year: int = Field(ge=1900, le=2100)
    education: Education
    current_position: Name
    years_of_service: int = Field(ge=0, le=60)
    grassroots_months: int = Field(ge=0, le=720)
    reason: Text


class CadreNominated(Categories, _RegistryEvent):
    """A unit nominated a person into the reserve pool (with the categories the statistics count, if recorded)."""

    schema_version: ClassVar[int] = 2

    cadre_id: UUID
    org_code: OrgCode
    full_name: Name
    gender: Gender
    birth_date: date
    birth_date_precision: Literal["day", "year"] = "day"
    """`year` when only the year is known (events first recorded in version 1)."""
    education: Education
    current_position: Name
    years_of_service: int = Field(ge=0, le=60)
    grassroots_months: int = Field(ge=0, le=720)
    """Months worked at the grass roots (township, village, community) before nomination."""
    reason: Text
    user_id: UserId | None = None
    email: Email | None = None
    language: Language = Language.ZH
    procedure_id: UUID | None = None
    """The entry procedure that admitted the cadre (selection's); none for a nomination made before procedures
    were recorded, directly, or imported."""
    imported: bool = False
    """Taken from another system's records (an import of cadres), where the nomination was made."""


class ProfileChanges(Categories):
    """The fields of a cadre's profile that may change; absent means unchanged."""

    full_name: Name | None = None
    current_position: Name | None = None
    education: Education | None = None
    years_of_service: int | None = Field(default=None, ge=0, le=60)
    grassroots_months: int | None = Field(default=None, ge=0, le=720)
    user_id: UserId | None = None
    email: Email | None = None
    language: Language | None = None


class CadreProfileUpdated(_RegistryEvent):
    """Some fields of a cadre's profile changed."""

    cadre_id: UUID
    changes: ProfileChanges


class MentorAssigned(_RegistryEvent):
    """A cadre was given a one-on-one mentor (replacing any earlier one)."""

    cadre_id: UUID
    mentor: Person


class CadreRetired(_RegistryEvent):
    """A cadre left the reserve pool."""

    cadre_id: UUID
    reason: RetirementReason
    effective_on: date
    note: Text = ""
    appointed_to: Name | None = None
    """The post, when the reason is `appointed`."""
    post_id: UUID | None = None
    """The post in selection's teams, when the appointment was recorded there (older events name none)."""


class ImportRunReversed(_RegistryEvent):
    """An import run was reversed: each of its cadres still in the pool left it as `import_reversed` (ADR 0026).

    Recorded once per run, after the cadres' own `CadreRetired` events; the envelope's actor is
    who asked for it and its `recorded_at` when. The run is the correlation id of the import's requests.
    """

    run_id: UUID
    nominated: int = Field(ge=0)
    """Cadres the run nominated."""
    reversed: int = Field(ge=0)
    """Of those, the cadres taken out of the pool by the reversal."""
    already_left: int = Field(ge=0)
    """Of those, the cadres who had left the pool since the import for another reason (left as they are)."""
    reason: Text = ""


Subject = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=ONE_LINE)]
"""The identity provider's stable id of a person: the `sub` of its access tokens."""


class AccessGranted(_RegistryEvent):
    """A person may act at an org unit with a role (replacing whatever they had).

    Which unit and role a person acts with is the platform's to decide, not a claim the
    identity provider makes: every service maps an access token's subject to the actor
    through these grants.
    """

    user_id: UserId
    """The platform's name for the person: the actor recorded on everything they do."""
    subject: Subject
    name: Name
    org_code: OrgCode
    role: Role


class AccessRevoked(_RegistryEvent):
    """A person may no longer act anywhere (until granted again)."""

    user_id: UserId
    subject: Subject


class PersonalDataRecorded(_RegistryEvent):
    """A cadre's personal file was recorded (replacing any earlier one), sealed with the cadre's key.

    The payload holds only ciphertext: `Sealed` opens to a `contracts.personal.PersonalFile`
    where the cadre's key is held, and to nothing once the cadre's data was erased.
    """

    cadre_id: UUID
    sealed: Sealed


class PersonalDataErased(_RegistryEvent):
    """A cadre's personal data was erased: the key that sealed it was destroyed.

    Every `PersonalDataRecorded` of the cadre stays where it is, chained and verifiable,
    and can no longer be opened. Deployments that were granted the key destroy theirs
    when this event reaches them.
    """

    cadre_id: UUID
    key_id: UUID | None
    """The key destroyed (none when no personal data was ever recorded)."""
    reason: Statement
    """The request or legal basis (no personal data)."""


class PersonalDataKeyGranted(_RegistryEvent):
    """Another deployment was given the cadre's key (sealed to that deployment's public key)."""

    cadre_id: UUID
    key_id: UUID
    deployment: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    recipient_key_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """Fingerprint of the public key the grant was sealed to."""


class PersonalDataKeyAccepted(_RegistryEvent):
    """This deployment now holds a cadre's key another deployment granted it (beside, never instead of, any other).

    Recorded in the stream `personal-keys-<cadre id>` at the accepting organizer's unit: who
    and when are the envelope's, the grant's origin and key id are here.
    """

    cadre_id: UUID
    key_id: UUID
    from_deployment: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    cadre_org_path: OrgPath
    """Where the cadre sits, as this deployment knew it or the grant said."""
