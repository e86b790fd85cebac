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
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import Actor, Role, uuid7
from contracts.sync import DeploymentId, DirectiveApplied, DirectiveIssued, DirectiveKind, DirectiveRefused, Reason
from runtime import logs
from runtime.auth import can_write, issue_token, require_scope
from runtime.commands import Accepted
from runtime.context import CommandContext
from runtime.db import Pool
from runtime.errors import ConcurrencyError, ConflictError, NotFoundError
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


async def issue(store: EventStore, topology: Topology, ctx: CommandContext, cmd: IssueDirective) -> Accepted:
    """Record a directive for a child deployment (it applies it and answers)."""
    can_write(ctx.actor)
    child = topology.children.get(cmd.target_deployment)
    if child is None:
        msg = f"deployment {cmd.target_deployment} is not linked below this one"
        raise NotFoundError(msg)
    require_scope(ctx.actor, child.root, f"deployment {cmd.target_deployment}")
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
        """Apply what is open; return how many directives were decided (a transient failure waits for a later round)."""
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
