"""The registry's commands: load the stream, apply the rules, append what they decide."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel, Field

from contracts.envelope import Actor, Envelope, OrgCode, Role, canonical_json, uuid7
from contracts.event import Event
from contracts.personal import PersonalFile, Sealed
from contracts.procedure import Candidate, ProcedureConcluded, ProcedureKind
from contracts.registry import (
    AccessGranted,
    CadreNominated,
    Categories,
    Education,
    Email,
    Gender,
    ImportRunReversed,
    Language,
    Name,
    OrgLevel,
    OrgUnitRegistered,
    Person,
    PersonalDataKeyAccepted,
    PersonalDataKeyGranted,
    PersonalDataRecorded,
    ProfileChanges,
    RetirementReason,
    Statement,
    Subject,
    Text,
    UserId,
)
from contracts.selection import CadreAppointed
from contracts.sync import DeploymentId, StreamHandedOver
from exchange import lrmx
from runtime import clock
from runtime.auth import can_write, require_role, require_scope
from runtime.batch import Memo
from runtime.commands import Accepted, Command, Streams, check_expected, record, retrying
from runtime.context import CommandContext
from runtime.db import Pool
from runtime.errors import ConflictError, NotFoundError, RuleViolationError
from runtime.keystore import GrantKey, KeyGrant, KeyStore
from runtime.received import cadre_stream
from runtime.store import EventStore
from services.registry import rules

org_stream = Streams("orgunit")
"""Stream id of an org unit."""


class RegisterOrgUnit(Command):
    """Add a unit to the tree."""

    code: OrgCode
    name: Name
    level: OrgLevel
    parent_code: OrgCode | None = None
    target_pool_size: int = Field(default=0, ge=0, le=100_000)


class Nominate(Categories, Command):
    """Nominate a person into the reserve pool of a unit."""

    cadre_id: UUID | None = Field(default=None, description="Chosen by the caller to make retries safe")
    org_code: OrgCode
    full_name: Name
    gender: Gender
    birth_date: date
    education: Education
    current_position: Name
    years_of_service: int = Field(ge=0, le=60)
    grassroots_months: int = Field(ge=0, le=720)
    reason: Text
    user_id: UserId | None = None
    email: Email | None = None
    language: Language = Language.ZH
    imported: bool = Field(
        default=False, description="Taken from another system's records, where the nomination was made (imports)"
    )


class EntryCheckRequest(Command):
    """A nominee's facts the entry rules look at."""

    org_code: OrgCode
    birth_date: date
    education: Education
    years_of_service: int = Field(ge=0, le=60)


class Retire(Command):
    """Take a cadre out of the pool."""

    reason: RetirementReason
    effective_on: date | None = Field(default=None, description="Defaults to today")
    note: Text = ""
    appointed_to: Name | None = None


personal_keys_stream = Streams("personal-keys")
"""Stream id of the keys of a cadre this deployment accepted from others."""


access_stream = Streams("access")
"""Stream id of a person's access."""


class GrantAccess(Command):
    """Let a person act at a unit of your subtree with a role."""

    subject: Subject = Field(description="The identity provider's id of the person (the `sub` of its tokens)")
    name: Name
    org_code: OrgCode
    role: Role


class HandOver(Command):
    """Move a cadre's streams to another deployment (multi-level sync): this deployment's last word on them."""

    to_deployment: DeploymentId
    reason: Text = ""


class ReverseImport(Command):
    """Reverse a mistaken import run: its cadres leave the pool by compensating events (ADR 0026)."""

    reason: Text = Field(default="", description="Why the import is reversed (recorded with the reversal)")


class Reversal(BaseModel):
    """What reversing an import run did."""

    run_id: UUID
    nominated: int
    """Cadres the run nominated."""
    reversed: int
    """Of those, taken out of the pool as `import_reversed`."""
    already_left: int
    """Of those, gone from the pool since the import for another reason: left as they are."""
    stream_id: str
    """The stream of the reversal's own record (`ImportRunReversed`)."""
    version: int


class ReversalRecord(BaseModel):
    """An import run's reversal as recorded (`ImportRunReversed`)."""

    reversed: int
    already_left: int
    reason: str
    by: str
    """Who asked for it."""
    at: datetime
    """When it was recorded."""
    event_id: UUID
    """The record's event (audit: `GET /events/{event_id}`)."""


class ImportRunView(BaseModel):
    """An import run of cadres: what it nominated, what is left of it in the pool, its reversal."""

    run_id: UUID
    nominated: int
    in_pool: int
    """Of the cadres it nominated, those in the pool now."""
    reversal: ReversalRecord | None


import_run_stream = Streams("import-run")
"""Stream id of an import run's record (its reversal)."""


REVERSAL_CONCURRENCY = 200
"""Cadres reversed at once: their appends meet in the store's group commit without flooding the pool."""


class Erase(Command):
    """Erase a cadre's personal data for good."""

    reason: Statement = Field(description="The request or legal basis (no personal data)")


class Admission(Command):
    """An entry procedure that a level above ran and concluded admitted: its outcome, as its directive carries it."""

    procedure_id: UUID
    org_code: OrgCode
    candidate: Candidate
    reserve_kind: Name
    document_number: Name
    document_date: date


class RegistryCommands:
    """Handles the registry's commands against its store, its own tables and the cadres' keys."""

    def __init__(
        self, store: EventStore, pool: Pool, entry_rules: rules.EntryRules, keystore: KeyStore, memo: Memo | None = None
    ) -> None:
        self._store = store
        self._pool = pool
        self._entry_rules = entry_rules
        self._keystore = keystore
        self._memo = memo or Memo()

    async def _unit(self, code: str, actor: Actor | None = None) -> tuple[str, OrgLevel]:
        """An org unit's path and level: 404 when there is none (and, given the `actor`, outside its subtree).

        They never change: looked up once per request or batch.
        """

        async def load() -> tuple[str, OrgLevel] | None:
            row = await self._pool.fetchrow("SELECT path, level FROM org_units WHERE code = $1", code)
            return None if row is None else (str(row["path"]), OrgLevel(row["level"]))

        unit = await self._memo.get(("org_unit", code), load)
        if unit is None:
            msg = f"org unit {code} not found"
            raise NotFoundError(msg)
        if actor is not None:
            require_scope(actor, unit[0], f"org unit {code}")
        return unit

    async def register_org_unit(self, ctx: CommandContext, cmd: RegisterOrgUnit) -> Accepted:
        """Register a unit under a parent in the actor's subtree (the root: by its own actor)."""
        can_write(ctx.actor)
        if cmd.parent_code is None:
            if ctx.actor.org_path != cmd.code:
                msg = "only an actor of the root unit itself may register the root"
                raise NotFoundError(msg)
            path, parent_level = cmd.code, None
        elif self._is_deployment_root(cmd):
            # The root of this deployment's subtree: its parent unit lives in the deployment above.
            path, parent_level = self._store.topology.root, None
            require_scope(ctx.actor, path, f"org unit {cmd.code}")
        else:
            parent_path, parent_level = await self._unit(cmd.parent_code, ctx.actor)
            path = f"{parent_path}.{cmd.code}"
        rules.check_placement(cmd.level, parent_level)
        event = OrgUnitRegistered(
            code=cmd.code,
            name=cmd.name,
            level=cmd.level,
            parent_code=cmd.parent_code,
            path=path,
            target_pool_size=cmd.target_pool_size,
        )
        stream = org_stream(cmd.code)
        return await record(self._store, stream, 0, [event], ctx=ctx, org_path=path)

    def _is_deployment_root(self, cmd: RegisterOrgUnit) -> bool:
        root = self._store.topology.root
        return bool(root) and root.endswith(f"{cmd.parent_code}.{cmd.code}")

    async def hand_over(self, ctx: CommandContext, cadre_id: UUID, cmd: HandOver, expected: int | None) -> Accepted:
        """Hand the cadre over to a deployment above this one; its other services follow with their streams."""
        cadre = await self._cadre_to_change(ctx, cadre_id, expected)
        topology = self._store.topology
        if cmd.to_deployment == topology.deployment or cmd.to_deployment in topology.children:
            msg = (
                f"a cadre is handed over upwards: deployment {cmd.to_deployment} does not receive this deployment's"
                " events"
            )
            raise RuleViolationError(msg)
        if cadre.status != "in_pool":
            msg = "a cadre who left the pool is not handed over"
            raise RuleViolationError(msg)
        return await self._append(ctx, cadre, [StreamHandedOver(to_deployment=cmd.to_deployment, reason=cmd.reason)])

    async def _org_unit(self, ctx: CommandContext, code: str) -> rules.OrgUnit:
        history = await self._store.read_stream(org_stream(code))
        unit = rules.OrgUnit.replay([r.event for r in history])
        if unit is None:
            msg = f"org unit {code} not found"
            raise NotFoundError(msg)
        require_scope(ctx.actor, unit.path, f"org unit {code}")
        return unit

    async def designate_leader(self, ctx: CommandContext, code: str, leader: Person, expected: int | None) -> Accepted:
        """Make `leader` the unit's first responsible person for its reserve cadres."""
        can_write(ctx.actor)
        unit = await self._org_unit(ctx, code)
        check_expected(org_stream(code), expected, unit.version)
        events = rules.designate_leader(unit, leader)
        return await record(self._store, org_stream(code), unit.version, events, ctx=ctx, org_path=unit.path)

    async def nominate(self, ctx: CommandContext, cmd: Nominate) -> Accepted:
        """Nominate a person into the pool of a unit in the actor's subtree."""
        can_write(ctx.actor)
        unit_path, unit_level = await self._unit(cmd.org_code, ctx.actor)
        self._require_entry(unit_level, cmd, ctx.day, "the nominee does not meet the entry rules")
        cadre_id = cmd.cadre_id or uuid7()
        event = CadreNominated(cadre_id=cadre_id, **cmd.model_dump(exclude={"cadre_id"}))
        stream = cadre_stream(cadre_id)
        try:
            envelopes = await self._store.append(stream, 0, [event], ctx=ctx, org_path=unit_path, cadre_id=cadre_id)
        except ConflictError:
            msg = f"cadre {cadre_id} is already registered"
            raise ConflictError(msg, cadre_id=str(cadre_id)) from None
        return Accepted.of(stream, 0, envelopes)

    def _require_entry(self, level: OrgLevel, nominee: Nominate | Candidate, on: date, refused: str) -> None:
        """Refuse (422, saying `refused` and each rule broken) a nominee the entry rules keep out of the pool."""
        problems = rules.entry_violations(
            self._entry_rules,
            level=level,
            birth_date=nominee.birth_date,
            education=nominee.education,
            years_of_service=nominee.years_of_service,
            on=on,
        )
        if problems:
            raise RuleViolationError(refused, violations=problems)

    async def check_entry(self, ctx: CommandContext, cmd: EntryCheckRequest) -> list[rules.EntryCheck]:
        """Each entry rule applied to a nominee for a unit of the actor's subtree (nothing is recorded)."""
        _, level = await self._unit(cmd.org_code, ctx.actor)
        return rules.entry_checks(
            self._entry_rules,
            level=level,
            birth_date=cmd.birth_date,
            education=cmd.education,
            years_of_service=cmd.years_of_service,
            on=ctx.day,
        )

    async def _cadre(self, ctx: CommandContext, cadre_id: UUID) -> rules.Cadre:
        history = await self._store.read_stream(cadre_stream(cadre_id))
        org_path = history[0].envelope.org_path if history else ""
        cadre = rules.Cadre.replay(
            [r.event for r in history], [clock.date_of(r.envelope.occurred_at) for r in history], org_path
        )
        if cadre is None:
            msg = f"cadre {cadre_id} not found"
            raise NotFoundError(msg)
        require_scope(ctx.actor, cadre.org_path, f"cadre {cadre_id}")
        return cadre

    async def _cadre_to_change(self, ctx: CommandContext, cadre_id: UUID, expected: int | None) -> rules.Cadre:
        """The cadre an organizer (else 403) changes, in the actor's subtree (else 404), at `expected` (else 409)."""
        can_write(ctx.actor)
        cadre = await self._cadre(ctx, cadre_id)
        check_expected(cadre_stream(cadre_id), expected, cadre.version)
        return cadre

    async def update_profile(
        self, ctx: CommandContext, cadre_id: UUID, changes: ProfileChanges, expected: int | None
    ) -> Accepted:
        """Change fields of a cadre's profile."""
        cadre = await self._cadre_to_change(ctx, cadre_id, expected)
        return await self._append(ctx, cadre, rules.update_profile(cadre, changes))

    async def assign_mentor(
        self, ctx: CommandContext, cadre_id: UUID, mentor: Person, expected: int | None
    ) -> Accepted:
        """Give a cadre a one-on-one mentor."""
        cadre = await self._cadre_to_change(ctx, cadre_id, expected)
        return await self._append(ctx, cadre, rules.assign_mentor(cadre, mentor))

    async def retire(self, ctx: CommandContext, cadre_id: UUID, cmd: Retire, expected: int | None) -> Accepted:
        """Take a cadre out of the pool."""
        cadre = await self._cadre_to_change(ctx, cadre_id, expected)
        today = ctx.day
        events = rules.retire(
            cadre,
            reason=cmd.reason,
            effective_on=cmd.effective_on or today,
            note=cmd.note,
            appointed_to=cmd.appointed_to,
            today=today,
        )
        return await self._append(ctx, cadre, events)

    async def retire_appointed(self, envelope: Envelope, appointed: CadreAppointed) -> Accepted | None:
        """Selection appointed a reserve to a post: take the cadre out of the pool as appointed, linked to the post.

        Idempotent by state: a redelivery finds the cadre out of the pool and appends nothing (None).
        The registry acts on its own authority at the cadre's unit (the post may lie elsewhere).
        """
        history = await self._store.read_stream(cadre_stream(appointed.cadre_id))
        if not history:
            msg = f"cadre {appointed.cadre_id} is not in this registry"
            raise NotFoundError(msg)
        ctx = CommandContext.reacting_to(envelope, "registry", org_path=history[0].envelope.org_path)

        async def attempt() -> Accepted | None:
            cadre = await self._cadre(ctx, appointed.cadre_id)
            if cadre.status != "in_pool":
                return None
            events = rules.retire(
                cadre,
                reason=RetirementReason.APPOINTED,
                effective_on=appointed.appointed_on,
                note=f"{appointed.document_number}: {appointed.post_title}, {appointed.org_code}",
                appointed_to=appointed.post_title,
                today=ctx.day,
                post_id=appointed.post_id,
            )
            return await self._append(ctx, cadre, events)

        return await retrying(attempt, expected=None)

    async def reverse_import(self, ctx: CommandContext, run_id: UUID, cmd: ReverseImport) -> Reversal:
        """Reverse an import run (the correlation id of its requests) by compensating events, never by rewriting.

        Every cadre the run nominated must lie in the actor's subtree, else the whole run is
        unknown to the actor (404) and nothing changes. Each cadre still in the pool leaves it as
        `import_reversed`, whatever was recorded of it since; a cadre who left since for another
        reason is left as it is. Then the reversal itself is recorded, once: a run reversed before
        is refused (409). A reversal cut short is asked for again and finishes the rest.
        """
        can_write(ctx.actor)
        nominated = await self._run_cadres(ctx.actor, run_id)
        stream = import_run_stream(run_id)
        if await self._store.read_stream(stream):
            msg = f"import run {run_id} was already reversed"
            raise ConflictError(msg, run_id=str(run_id))
        outcomes: list[Literal["reversed", "already_left"]] = []
        for start in range(0, len(nominated), REVERSAL_CONCURRENCY):
            chunk = nominated[start : start + REVERSAL_CONCURRENCY]
            outcomes += await asyncio.gather(*(self._reverse_one(ctx, row["cadre_id"], run_id) for row in chunk))
        event = ImportRunReversed(
            run_id=run_id,
            nominated=len(nominated),
            reversed=outcomes.count("reversed"),
            already_left=outcomes.count("already_left"),
            reason=cmd.reason,
        )
        try:
            envelopes = await self._store.append(stream, 0, [event], ctx=ctx, org_path=ctx.actor.org_path)
        except ConflictError:
            msg = f"import run {run_id} was already reversed"
            raise ConflictError(msg, run_id=str(run_id)) from None
        accepted = Accepted.of(stream, 0, envelopes)
        return Reversal(
            run_id=run_id,
            nominated=event.nominated,
            reversed=event.reversed,
            already_left=event.already_left,
            stream_id=stream,
            version=accepted.version,
        )

    async def _run_cadres(self, actor: Actor, run_id: UUID) -> list[asyncpg.Record]:
        """The cadres run `run_id` nominated (`cadre_id`, `org_path`): 404 unless all lie in the actor's subtree."""
        nominated = await self._pool.fetch(
            "SELECT cadre_id, org_path FROM events WHERE correlation_id = $1 AND event_type = $2 ORDER BY position",
            run_id,
            CadreNominated.event_type,
        )
        if not nominated:
            msg = f"import run {run_id} not found"
            raise NotFoundError(msg)
        for row in nominated:
            require_scope(actor, row["org_path"], f"import run {run_id}")
        return nominated

    async def import_run(self, actor: Actor, run_id: UUID) -> ImportRunView:
        """What an import run nominated, how many are in the pool now, and its reversal if any (records nothing).

        For organizers and auditors of a subtree that holds every cadre of the run (else 404).
        """
        require_role(actor, Role.ORGANIZER, Role.AUDITOR)
        nominated = await self._run_cadres(actor, run_id)
        in_pool = await self._pool.fetchval(
            "SELECT count(*) FROM cadres WHERE cadre_id = ANY($1::uuid[]) AND status = 'in_pool'",
            [row["cadre_id"] for row in nominated],
        )
        record = await self._store.read_stream(import_run_stream(run_id))
        reversal = None
        if record and isinstance(record[0].event, ImportRunReversed):
            done, envelope = record[0].event, record[0].envelope
            reversal = ReversalRecord(
                reversed=done.reversed,
                already_left=done.already_left,
                reason=done.reason,
                by=envelope.actor.user,
                at=envelope.recorded_at,
                event_id=envelope.event_id,
            )
        return ImportRunView(run_id=run_id, nominated=len(nominated), in_pool=int(in_pool), reversal=reversal)

    async def _reverse_one(
        self, ctx: CommandContext, cadre_id: UUID, run_id: UUID
    ) -> Literal["reversed", "already_left"]:
        async def attempt() -> Literal["reversed", "already_left"]:
            cadre = await self._cadre(ctx, cadre_id)
            if cadre.status == "retired":
                # Reversed by an earlier try of this reversal, or gone for another reason since the import.
                return "reversed" if cadre.retired_reason is RetirementReason.IMPORT_REVERSED else "already_left"
            await self._append(ctx, cadre, rules.reverse_import(cadre, run_id))
            return "reversed"

        return await retrying(attempt, expected=None)

    async def admit(self, envelope: Envelope, concluded: ProcedureConcluded) -> Accepted | None:
        """An entry procedure ended admitted: nominate its candidate into its unit's pool, naming the procedure.

        The entry rules apply as to any nomination, on the day of the outcome's document. Idempotent by
        state: a redelivery finds the cadre nominated by this procedure and appends nothing (None); a
        different cadre under the candidate's id is a conflict (the outcome goes to the dead-letter topic).
        A unit that a deployment below this one owns is left to it: the sync service sends it the outcome
        as a directive (`admit`, ADR 0039), and it nominates the candidate there (None here).
        """
        if concluded.kind is not ProcedureKind.ENTRY or concluded.candidate is None or concluded.org_code is None:
            msg = f"procedure {concluded.procedure_id}'s outcome carries no entry candidate"
            raise RuleViolationError(msg)
        unit_path, _ = await self._unit(concluded.org_code)
        if self._store.topology.owner_of(unit_path) is not None:
            return None
        ctx = CommandContext.reacting_to(envelope, "registry", org_path=unit_path)
        return await self._nominate_admitted(ctx, concluded)

    async def admit_directed(self, ctx: CommandContext, cadre_id: UUID, cmd: Admission) -> Accepted:
        """A level above admitted the candidate by a procedure it ran (its directive, ADR 0039): nominate them here.

        On that level's authority (the directive's actor); the same rules and the same record as an
        outcome of this deployment's own procedure. A repeat (the directive applied again after a crash)
        appends nothing and is answered with no events.
        """
        can_write(ctx.actor)
        unit_path, _ = await self._unit(cmd.org_code, ctx.actor)
        concluded = ProcedureConcluded(
            procedure_id=cmd.procedure_id,
            kind=ProcedureKind.ENTRY,
            candidate_id=cadre_id,
            document_number=cmd.document_number,
            document_date=cmd.document_date,
            org_code=cmd.org_code,
            candidate=cmd.candidate,
            reserve_kind=cmd.reserve_kind,
            unit_path=unit_path,
        )
        accepted = await self._nominate_admitted(ctx, concluded)
        if accepted is not None:
            return accepted
        stream = cadre_stream(cadre_id)
        version = await self._pool.fetchval("SELECT max(stream_version) FROM events WHERE stream_id = $1", stream)
        return Accepted.of(stream, int(version or 0), [])

    async def _nominate_admitted(self, ctx: CommandContext, concluded: ProcedureConcluded) -> Accepted | None:
        """Record the nomination an admitted entry makes (None: this procedure nominated the cadre before)."""
        candidate, org_code = concluded.candidate, concluded.org_code
        if candidate is None or org_code is None:  # pragma: no cover - both callers checked
            raise AssertionError
        unit_path, unit_level = await self._unit(org_code)
        refused = f"the candidate of procedure {concluded.procedure_id} does not meet the entry rules"
        self._require_entry(unit_level, candidate, concluded.document_date, refused)
        kind = f" ({concluded.reserve_kind})" if concluded.reserve_kind else ""
        event = CadreNominated(
            cadre_id=concluded.candidate_id,
            org_code=org_code,
            **candidate.model_dump(),
            reason=f"admitted by procedure{kind}, {concluded.document_number} of {concluded.document_date}",
            procedure_id=concluded.procedure_id,
            reserve_kind=concluded.reserve_kind,
        )
        stream = cadre_stream(concluded.candidate_id)
        try:
            envelopes = await self._store.append(
                stream, 0, [event], ctx=ctx, org_path=unit_path, cadre_id=concluded.candidate_id
            )
        except ConflictError:
            history = await self._store.read_stream(stream)
            first = history[0].event if history else None
            if isinstance(first, CadreNominated) and first.procedure_id == concluded.procedure_id:
                return None
            msg = f"cadre {concluded.candidate_id} is already registered, not by procedure {concluded.procedure_id}"
            raise ConflictError(msg) from None
        return Accepted.of(stream, 0, envelopes)

    async def record_personal_data(
        self, ctx: CommandContext, cadre_id: UUID, personal: PersonalFile, expected: int | None
    ) -> Accepted:
        """Seal a cadre's personal file with the cadre's key and record it."""
        cadre = await self._cadre_to_change(ctx, cadre_id, expected)
        rules.may_record_personal_data(cadre)
        return await self._record_personal(ctx, cadre, personal, [])

    async def import_appointment_form(
        self, ctx: CommandContext, cadre_id: UUID, form: lrmx.Form, expected: int | None
    ) -> Accepted:
        """Take an appointment form into the cadre's profile (name, post, education) and personal file.

        The form must be of this cadre (gender, month of birth); what it does not carry (address,
        phone) stays as recorded. One command: the profile's changes and the sealed file in one append.
        """
        cadre = await self._cadre_to_change(ctx, cadre_id, expected)
        rules.may_record_personal_data(cadre)
        rules.check_form_identity(cadre, gender=form.gender, birth=form.birth)
        before = await self._personal_file(cadre) if cadre.personal_data == "recorded" else None
        changes = ProfileChanges(
            full_name=form.full_name,
            current_position=form.current_position or None,
            education=lrmx.level_of(form.personal),
        )
        events = rules.update_profile(cadre, changes)
        return await self._record_personal(ctx, cadre, lrmx.merged(form.personal, before), events)

    async def _personal_file(self, cadre: rules.Cadre) -> PersonalFile | None:
        sealed = await self._pool.fetchval("SELECT personal_sealed FROM cadres WHERE cadre_id = $1", cadre.cadre_id)
        if sealed is None:
            return None
        plaintext = await self._keystore.open(cadre.cadre_id, Sealed.model_validate_json(sealed))
        return None if plaintext is None else PersonalFile.model_validate_json(plaintext)

    async def _record_personal(
        self, ctx: CommandContext, cadre: rules.Cadre, personal: PersonalFile, events: list[Event]
    ) -> Accepted:
        sealed = await self._keystore.seal(cadre.cadre_id, canonical_json(personal.model_dump(mode="json")))
        return await self._append(ctx, cadre, [*events, PersonalDataRecorded(cadre_id=cadre.cadre_id, sealed=sealed)])

    async def erase_personal_data(
        self, ctx: CommandContext, cadre_id: UUID, cmd: Erase, expected: int | None
    ) -> Accepted:
        """Record the erasure, then destroy the cadre's key (ADR 0013).

        In this order: the event is the record that the right was exercised. Should the process
        stop between the two, the registry destroys the key when it starts again.
        """
        cadre = await self._cadre_to_change(ctx, cadre_id, expected)
        accepted = await self._append(ctx, cadre, rules.erase_personal_data(cadre, cmd.reason))
        if not ctx.dry_run:
            await self._keystore.destroy({cadre_id: cadre.personal_key_id})
        return accepted

    async def grant_personal_data(self, ctx: CommandContext, cadre_id: UUID, recipient: GrantKey) -> KeyGrant:
        """Seal the cadre's key to another deployment's public key; the grant is recorded."""
        cadre = await self._cadre_to_change(ctx, cadre_id, expected=None)
        rules.may_grant_personal_data(cadre)
        grant = await self._keystore.grant(cadre_id, cadre.org_path, recipient)
        event = PersonalDataKeyGranted(
            cadre_id=cadre_id,
            key_id=grant.key_id,
            deployment=recipient.deployment,
            recipient_key_id=grant.recipient_key_id,
        )
        await self._append(ctx, cadre, [event])
        return grant

    async def accept_personal_data_key(self, ctx: CommandContext, grant: KeyGrant) -> None:
        """Keep a cadre's key another deployment granted this one, beside any other; recorded (ADR 0022).

        The cadre must lie in the actor's subtree: where this deployment knows it, else where the
        grant says it sits (outside: 404, as if it did not exist). The key store refuses a key that
        would stand beside or instead of one it holds; the same grant twice changes nothing.
        """
        can_write(ctx.actor)
        known = await self._store.read_stream(cadre_stream(grant.cadre_id))
        org_path = known[0].envelope.org_path if known else grant.org_path
        require_scope(ctx.actor, org_path, f"cadre {grant.cadre_id}")
        await self._keystore.accept(grant, dry_run=ctx.dry_run)
        if ctx.dry_run:
            return
        # The key is kept first (idempotent), then the record, unless an earlier try made it.
        stream = personal_keys_stream(grant.cadre_id)
        history = await self._store.read_stream(stream)
        if any(isinstance(r.event, PersonalDataKeyAccepted) and r.event.key_id == grant.key_id for r in history):
            return
        event = PersonalDataKeyAccepted(
            cadre_id=grant.cadre_id, key_id=grant.key_id, from_deployment=grant.from_deployment, cadre_org_path=org_path
        )
        await self._store.append(
            stream,
            history[-1].envelope.stream_version if history else 0,
            [event],
            ctx=ctx,
            org_path=ctx.actor.org_path,
            cadre_id=grant.cadre_id,
        )

    async def _append(self, ctx: CommandContext, cadre: rules.Cadre, events: list[Event]) -> Accepted:
        stream = cadre_stream(cadre.cadre_id)
        return await record(
            self._store, stream, cadre.version, events, ctx=ctx, org_path=cadre.org_path, cadre_id=cadre.cadre_id
        )

    async def _access(self, ctx: CommandContext, user_id: str) -> rules.Access:
        history = await self._store.read_stream(access_stream(user_id))
        access = rules.Access.replay([r.event for r in history], [r.envelope.org_path for r in history])
        if access.org_path is not None:
            require_scope(ctx.actor, access.org_path, f"user {user_id}")  # granted elsewhere: not yours to change
        return access

    async def grant_access(self, ctx: CommandContext, user_id: str, cmd: GrantAccess, expected: int | None) -> Accepted:
        """Let a person act at a unit of the actor's subtree (replacing a grant the actor could also change)."""
        can_write(ctx.actor)
        unit = await self._pool.fetchrow("SELECT path FROM org_units WHERE code = $1", cmd.org_code)
        if unit is None:
            msg = f"org unit {cmd.org_code} not found"
            raise NotFoundError(msg)
        require_scope(ctx.actor, unit["path"], f"org unit {cmd.org_code}")
        access = await self._access(ctx, user_id)
        check_expected(access_stream(user_id), expected, access.version)
        holder = await self._pool.fetchval(
            "SELECT org_path FROM access_grants WHERE subject = $1 AND user_id <> $2", cmd.subject, user_id
        )
        if holder is not None:
            # Whether someone acts elsewhere is not the actor's to learn: outside its subtree, 404.
            require_scope(ctx.actor, holder, f"identity {cmd.subject}")
            msg = "this identity already acts as another user"
            raise ConflictError(msg)
        granted = AccessGranted(user_id=user_id, **cmd.model_dump())
        if cmd.role is Role.CADRE:
            rules.check_own_grant(granted, unit["path"], await self._own_cadre(ctx, user_id))
        events = rules.grant(access, granted)
        stream = access_stream(user_id)
        return await record(self._store, stream, access.version, events, ctx=ctx, org_path=unit["path"])

    async def _own_cadre(self, ctx: CommandContext, user_id: str) -> rules.Cadre | None:
        """The cadre a cadre's own grant names by its id (None when `user_id` is no cadre's id)."""
        try:
            cadre_id = UUID(user_id)
        except ValueError:
            return None
        return await self._cadre(ctx, cadre_id)

    async def revoke_access(self, ctx: CommandContext, user_id: str, expected: int | None) -> Accepted:
        """Take a person's access away (a grant in the actor's subtree)."""
        can_write(ctx.actor)
        access = await self._access(ctx, user_id)
        if access.org_path is None:
            msg = f"user {user_id} has no access"
            raise NotFoundError(msg)
        check_expected(access_stream(user_id), expected, access.version)
        stream = access_stream(user_id)
        return await record(
            self._store, stream, access.version, rules.revoke(access, user_id), ctx=ctx, org_path=access.org_path
        )
