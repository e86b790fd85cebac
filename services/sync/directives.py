"""Directives: what a higher level decides about a cadre that a lower deployment owns.

Issued at the higher level (`DirectiveIssued`, in its own chain), the directive goes down
with the rest of its sync events, verified on arrival like everything else. The deployment
it targets applies it once, as the command of the owning service, on the higher level's
authority (its organizer, acting at its unit), and records the outcome in its own chain
(`DirectiveApplied` or `DirectiveRefused` with the reason), which goes back up. Exactly
once: the outcome is the first and only event of the directive's stream here, and the
command itself carries ids derived from the directive (a repeat is answered "already there").
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import Actor, Envelope, Role, in_subtree, uuid7
from contracts.procedure import ProcedureConcluded, ProcedureKind
from contracts.sync import DeploymentId, DirectiveApplied, DirectiveIssued, DirectiveKind, DirectiveRefused, Reason
from runtime import logs
from runtime.auth import can_write, issue_token, require_scope
from runtime.commands import Accepted
from runtime.context import CommandContext
from runtime.db import Pool
from runtime.errors import ConcurrencyError, ConflictError, NotFoundError
from runtime.projection import Recorded, of_type
from runtime.service import Reaction
from runtime.store import EventStore
from runtime.topology import Topology

log = logs.get(__name__)


@dataclass(frozen=True)
class Route:
    """Where a directive of one kind becomes a command: the service, and its path."""

    service: str
    path: str
    id_field: str | None
    """The body field that makes the command idempotent, derived from the directive when absent."""


ROUTES: Final = {
    DirectiveKind.ASSIGN_POSTING: Route("training", "/cadres/{cadre_id}/postings", "posting_id"),
    DirectiveKind.RECORD_EVALUATION: Route("assessment", "/cadres/{cadre_id}/evaluations", "evaluation_id"),
    DirectiveKind.CONFIRM_EXIT: Route("registry", "/cadres/{cadre_id}/retirement", None),
    DirectiveKind.HAND_OVER: Route("registry", "/cadres/{cadre_id}/handover", None),
    DirectiveKind.ADMIT: Route("registry", "/cadres/{cadre_id}/admission", None),
    DirectiveKind.APPOINT: Route("selection", "/cadres/{cadre_id}/appointment", None),
}

OWNED_ELSEWHERE: Final = "Owned by another deployment"


class IssueDirective(BaseModel):
    """A decision about a cadre of a deployment below this one."""

    model_config = ConfigDict(extra="forbid")

    directive_id: UUID | None = Field(default=None, description="Chosen by the caller to make retries safe")
    target_deployment: DeploymentId
    cadre_id: UUID
    kind: DirectiveKind
    body: dict[str, Any] = Field(description="The command's body, as the owning service's API takes it")
    note: Reason = ""


def directive_stream(directive_id: UUID) -> str:
    """The stream of one directive (here: its issue, or its outcome)."""
    return f"directive-{directive_id}"


async def below(pool: Pool, topology: Topology) -> dict[str, str]:
    """The deployments below this one, each with its root: the children and, vouched for by them, theirs."""
    found = {name: child.root for name, child in topology.children.items()}
    if topology.root:
        for row in await pool.fetch("SELECT deployment, root FROM links"):
            name, root = str(row["deployment"]), str(row["root"])
            if name != topology.deployment and name not in found and in_subtree(root, topology.root):
                found[name] = root
    return found


def owner_below(deployments: dict[str, str], org_path: str) -> str | None:
    """The deployment below this one that owns `org_path`: the one with the deepest root above it (None: none)."""
    owners = [(len(root), name) for name, root in deployments.items() if in_subtree(org_path, root)]
    return max(owners)[1] if owners else None


async def issue(
    store: EventStore, pool: Pool, topology: Topology, ctx: CommandContext, cmd: IssueDirective
) -> Accepted:
    """Record a directive for a deployment below (it applies it and answers; a level between passes it on)."""
    can_write(ctx.actor)
    root = (await below(pool, topology)).get(cmd.target_deployment)
    if root is None:
        msg = f"deployment {cmd.target_deployment} is not linked below this one"
        raise NotFoundError(msg)
    require_scope(ctx.actor, root, f"deployment {cmd.target_deployment}")
    directive_id = cmd.directive_id or uuid7()
    body = dict(cmd.body)
    route = ROUTES[cmd.kind]
    if route.id_field and route.id_field not in body:
        body[route.id_field] = str(uuid.uuid5(directive_id, route.id_field))
    event = DirectiveIssued(
        directive_id=directive_id,
        target_deployment=cmd.target_deployment,
        cadre_id=cmd.cadre_id,
        kind=cmd.kind,
        body=body,
        note=cmd.note,
    )
    stream = directive_stream(directive_id)
    try:
        envelopes = await store.append(stream, 0, [event], ctx=ctx, org_path=ctx.actor.org_path, cadre_id=cmd.cadre_id)
    except ConcurrencyError:
        msg = f"directive {directive_id} was issued before"
        raise ConflictError(msg, directive_id=str(directive_id)) from None
    return Accepted.of(stream, 0, envelopes)


def outcome_directive(concluded: ProcedureConcluded, target: str) -> DirectiveIssued | None:
    """The directive that carries a procedure's outcome to the deployment `target` (None: nothing to carry).

    An admitted entry becomes `admit` (the registry nominates the candidate, ADR 0039); an appointment
    becomes `appoint` (the post's team records the appointment, naming the procedure, ADR 0042): the
    motion's post, the outcome's document and its date as the day of the appointment. One directive per
    outcome however often it arrives: its id is `uuid5(procedure_id, kind)`.
    """
    body: dict[str, object] = {"procedure_id": str(concluded.procedure_id), "org_code": concluded.org_code}
    if concluded.kind is ProcedureKind.ENTRY:
        if concluded.candidate is None or concluded.org_code is None or concluded.reserve_kind is None:
            return None
        kind, what = DirectiveKind.ADMIT, "entry procedure {} admitted the candidate"
        body |= {
            "candidate": concluded.candidate.model_dump(mode="json"),
            "reserve_kind": concluded.reserve_kind,
            "document_number": concluded.document_number,
            "document_date": concluded.document_date.isoformat(),
        }
    elif concluded.kind is ProcedureKind.APPOINTMENT and concluded.post_id is not None and concluded.org_code:
        kind, what = DirectiveKind.APPOINT, "appointment procedure {} appointed the cadre"
        body |= {
            "post_id": str(concluded.post_id),
            "appointed_on": concluded.document_date.isoformat(),
            "document_number": concluded.document_number,
        }
    else:
        return None
    return DirectiveIssued(
        directive_id=uuid.uuid5(concluded.procedure_id, kind.value),
        target_deployment=target,
        cadre_id=concluded.candidate_id,
        kind=kind,
        body=body,
        note=f"{what.format(concluded.procedure_id)}: {concluded.document_number} of {concluded.document_date}",
    )


class OutcomeDirectives(Reaction):
    """Procedures concluded here for a unit that a deployment below owns: their outcome goes down as a directive.

    An entry procedure admitted at such a unit becomes an `admit` directive, an appointment procedure an
    `appoint` directive, to the deployment that owns the unit (the deepest one below whose root holds it; a
    level between passes it on), on the authority of the person who recorded the outcome. Once: the
    directive's id comes from the procedure's, and its stream here takes one issue (ADR 0039, ADR 0042).
    """

    name = "outcome-directives"
    events = (ProcedureConcluded,)

    async def react(self, events: Sequence[Recorded]) -> None:
        """Issue the directive of each outcome that is applied below; skip the others and the repeats."""
        topology = self._service.settings.topology
        deployments: dict[str, str] | None = None
        for envelope, concluded in of_type(events, ProcedureConcluded):
            if concluded.unit_path is None:
                continue
            if deployments is None:
                deployments = await below(self._service.pool, topology)
            target = owner_below(deployments, concluded.unit_path)
            if target is None:
                continue  # this deployment's own unit: its registry admits, its selection appoints
            directive = outcome_directive(concluded, target)
            if directive is not None:
                await self._issue(envelope, directive)

    async def _issue(self, envelope: Envelope, event: DirectiveIssued) -> None:
        ctx = CommandContext(
            actor=envelope.actor, correlation_id=envelope.correlation_id, causation_id=envelope.event_id
        )
        try:
            await self._service.store.append(
                directive_stream(event.directive_id),
                0,
                [event],
                ctx=ctx,
                org_path=envelope.org_path,
                cadre_id=event.cadre_id,
            )
        except ConcurrencyError:
            return  # issued before (the outcome delivered again)
        log.info(
            "outcome sent down",
            directive_id=str(event.directive_id),
            kind=event.kind.value,
            target=event.target_deployment,
        )


class Applier:
    """Applies the directives that target this deployment, once each, through the owning services' APIs."""

    def __init__(
        self, store: EventStore, pool: Pool, topology: Topology, *, service_urls: dict[str, str], secret: str
    ) -> None:
        self._store = store
        self._pool = pool
        self._topology = topology
        self._urls = service_urls
        self._secret = secret

    async def round(self, client: httpx.AsyncClient) -> int:
        """Apply what is open; return how many directives were decided (a transient failure waits for a later round).

        A directive from above for a deployment further down is passed on first (`relay`).
        """
        await self.relay()
        rows = await self._pool.fetch(
            "SELECT * FROM directives WHERE target = $1 AND status = 'issued' ORDER BY issued_at LIMIT 50",
            self._topology.deployment,
        )
        decided = 0
        for row in rows:
            outcome = await self._attempt(client, row)
            if outcome is not None and await self._record(row, outcome):
                decided += 1
        return decided

    async def relay(self) -> int:
        """Pass on, once each, the directives from above for a deployment below this one; how many were passed on.

        A directive crosses one link (the parent's sync events reach its children only): a level between
        issues it again in its own chain, the same directive (id, target, cadre, body), naming the level
        that decided it in its actor. The deployment it targets applies it once, and its outcome goes up
        through every level, as all its events do.
        """
        if not self._topology.parent or not self._topology.root:
            return 0
        # From above: in the parent's chain (a directive from further up is there too, passed on by the parent).
        # Those of the levels below, which this deployment also sees, are theirs to pass on.
        rows = await self._pool.fetch(
            "SELECT * FROM directives d WHERE status = 'issued' AND issued_by = $2 AND target <> $1"
            " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = 'directive-' || d.directive_id::text)"
            " ORDER BY issued_at LIMIT 50",
            self._topology.deployment,
            self._topology.parent,
        )
        if not rows:
            return 0
        deployments = await below(self._pool, self._topology)
        passed = 0
        for row in rows:
            if row["target"] not in deployments:
                continue  # not below this deployment (a sibling's): not ours to pass on
            event = DirectiveIssued(
                directive_id=row["directive_id"],
                target_deployment=row["target"],
                cadre_id=row["cadre_id"],
                kind=DirectiveKind(row["kind"]),
                body=orjson.loads(row["body"]),
                note=row["note"],
            )
            actor = Actor(
                user=f"{row['issued_by']}:{row['actor_user']}", org_path=row["actor_path"], role=Role.ORGANIZER
            )
            ctx = CommandContext(actor=actor, correlation_id=row["correlation_id"])
            try:
                await self._store.append(
                    directive_stream(row["directive_id"]),
                    0,
                    [event],
                    ctx=ctx,
                    org_path=self._topology.root,
                    cadre_id=row["cadre_id"],
                )
            except ConcurrencyError:
                continue  # passed on already (another round, another replica)
            passed += 1
        return passed

    async def _attempt(self, client: httpx.AsyncClient, row: Any) -> DirectiveApplied | DirectiveRefused | None:
        kind = DirectiveKind(row["kind"])
        route = ROUTES[kind]
        base = self._urls.get(route.service)
        if base is None:
            return self._refused(row, 503, f"this deployment has no {route.service} service configured (SERVICE_URLS)")
        actor = Actor(user=f"{row['issued_by']}:{row['actor_user']}", org_path=row["actor_path"], role=Role.ORGANIZER)
        headers = {
            "Authorization": f"Bearer {issue_token(self._secret, actor)}",
            "X-Correlation-ID": str(row["correlation_id"]),
        }
        body = orjson.loads(row["body"])
        try:
            response = await client.post(base + route.path.format(cadre_id=row["cadre_id"]), json=body, headers=headers)
        except httpx.HTTPError as error:
            log.warning("directive not applied yet", directive_id=str(row["directive_id"]), error=repr(error))
            return None
        if response.is_success:
            answer = response.json()
            events = [UUID(e["event_id"]) for e in answer.get("events", [])]
            return DirectiveApplied(
                directive_id=row["directive_id"], issued_by=row["issued_by"], cadre_id=row["cadre_id"], events=events
            )
        if response.status_code >= 500 or response.status_code == 429:  # noqa: PLR2004 - HTTP codes
            return None  # the owning service is away or busy: a later round
        problem = _problem(response)
        mine = route.id_field and str(body.get(route.id_field)) in response.text
        if response.status_code == 409 and problem.get("title") != OWNED_ELSEWHERE and mine:  # noqa: PLR2004
            # The command carries the directive's own id: it was applied before (a repeat after a crash).
            return DirectiveApplied(
                directive_id=row["directive_id"], issued_by=row["issued_by"], cadre_id=row["cadre_id"]
            )
        return self._refused(row, response.status_code, str(problem.get("detail") or response.text)[:2000])

    @staticmethod
    def _refused(row: Any, status: int, reason: str) -> DirectiveRefused:
        return DirectiveRefused(
            directive_id=row["directive_id"],
            issued_by=row["issued_by"],
            cadre_id=row["cadre_id"],
            status=status,
            reason=reason,
        )

    async def _record(self, row: Any, outcome: DirectiveApplied | DirectiveRefused) -> bool:
        """Append the outcome as the first event of the directive's stream here: once, whoever tries again."""
        ctx = CommandContext(
            actor=Actor(user="system:sync", org_path=self._topology.root or row["actor_path"], role=Role.SYSTEM),
            correlation_id=row["correlation_id"],
        )
        try:
            await self._store.append(
                directive_stream(row["directive_id"]),
                0,
                [outcome],
                ctx=ctx,
                org_path=self._topology.root or row["actor_path"],
                cadre_id=row["cadre_id"],
            )
        except ConcurrencyError:
            return False  # decided already (another round, another replica)
        return True


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
