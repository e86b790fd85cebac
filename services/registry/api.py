"""The registry's HTTP API: commands (POST/PUT/PATCH) and queries (GET), scoped to the actor."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel

from contracts.personal import PersonalFile
from contracts.registry import Education, Person, ProfileChanges
from exchange import lrmx
from exchange import statistics as statistics_sheet
from runtime.auth import OWN_RECORD, CurrentActor
from runtime.commands import Accepted
from runtime.errors import RuleViolationError
from runtime.export import XLSX_TYPE, Table, table_or_rows, table_response
from runtime.http import Change, Context, Create, Day, Under
from runtime.keystore import GrantKey, KeyGrant
from runtime.openapi import ERASED
from runtime.service import given, scoped, service_of
from services.registry.commands import (
    Admission,
    EntryCheckRequest,
    Erase,
    GrantAccess,
    HandOver,
    ImportRunView,
    Nominate,
    RegisterOrgUnit,
    RegistryCommands,
    Retire,
    Reversal,
    ReverseImport,
)
from services.registry.queries import (
    CadreFilter,
    CadrePage,
    CadreView,
    GrantView,
    Me,
    OrgUnitView,
    RegistryQueries,
    StatusCounts,
    Structure,
)
from services.registry.statistics import Statistics

router = APIRouter()


Commands = Annotated[RegistryCommands, given(RegistryCommands)]
Queries = Annotated[RegistryQueries, scoped(RegistryQueries)]


@router.post("/org-units", status_code=status.HTTP_201_CREATED, tags=["org units"])
async def register_org_unit(body: RegisterOrgUnit, act: Create, cmd: Commands) -> Accepted:
    """Register an org unit under a parent in your subtree."""
    return act.tagged(await cmd.register_org_unit(act.ctx, body))


@router.put("/org-units/{code}/responsible-leader", tags=["org units"])
async def designate_leader(code: str, body: Person, act: Change, cmd: Commands) -> Accepted:
    """Designate the unit's main leader as first responsible person for its reserve cadres."""
    return act.tagged(await cmd.designate_leader(act.ctx, code, body, act.expected))


@router.get("/org-units", tags=["org units"], response_model=list[OrgUnitView])
async def list_org_units(
    actor: CurrentActor,
    reads: Queries,
    table: Table,
    under: Under = None,
    depth: Annotated[int | None, Query(ge=0, le=10, description="Levels below the root at most")] = None,
) -> list[OrgUnitView] | Response:
    """The units of a subtree (default: yours), `depth` levels below its root at most."""
    return table_or_rows(table, await reads.org_units(actor, under, depth), filename="org-units")


@router.get("/org-units/{code}", tags=["org units"])
async def get_org_unit(code: str, actor: CurrentActor, reads: Queries) -> OrgUnitView:
    """One unit of your subtree."""
    return await reads.org_unit(actor, code)


@router.post("/cadres", status_code=status.HTTP_201_CREATED, tags=["cadres"])
async def nominate(body: Nominate, act: Create, cmd: Commands) -> Accepted:
    """Nominate a person into the reserve pool (entry rules apply)."""
    accepted = await cmd.nominate(act.ctx, body)
    act.response.headers["Location"] = f"/cadres/{accepted.stream_id.removeprefix('cadre-')}"
    return act.tagged(accepted)


class EntryCheckView(BaseModel):
    """One entry rule applied to a nominee."""

    rule: str
    passed: bool
    detail: str


@router.post("/entry-checks", tags=["cadres"])
async def check_entry(body: EntryCheckRequest, ctx: Context, cmd: Commands) -> list[EntryCheckView]:
    """Which entry rule a nominee would pass or fail, and why (records nothing)."""
    return [EntryCheckView(rule=c.rule, passed=c.passed, detail=c.detail) for c in await cmd.check_entry(ctx, body)]


@router.patch("/cadres/{cadre_id:uuid}", tags=["cadres"])  # :uuid: not /cadres/counts
async def update_profile(cadre_id: UUID, body: ProfileChanges, act: Change, cmd: Commands) -> Accepted:
    """Change fields of a cadre's profile."""
    return act.tagged(await cmd.update_profile(act.ctx, cadre_id, body, act.expected))


@router.put("/cadres/{cadre_id}/mentor", tags=["cadres"])
async def assign_mentor(cadre_id: UUID, body: Person, act: Change, cmd: Commands) -> Accepted:
    """Give a cadre a one-on-one mentor."""
    return act.tagged(await cmd.assign_mentor(act.ctx, cadre_id, body, act.expected))


@router.post("/cadres/{cadre_id}/retirement", tags=["cadres"])
async def retire(cadre_id: UUID, body: Retire, act: Change, cmd: Commands) -> Accepted:
    """Take a cadre out of the pool, with the reason."""
    return act.tagged(await cmd.retire(act.ctx, cadre_id, body, act.expected))


@router.post("/import-runs/{run_id}/reversal", tags=["imports"])
async def reverse_import(run_id: UUID, body: ReverseImport, ctx: Context, cmd: Commands) -> Reversal:
    """Reverse a mistaken import run: each of its cadres still in the pool leaves it as `import_reversed`.

    The run is the id `./dev import` prints (the correlation id of its requests). Every cadre of
    the run must lie in your subtree; a run reversed before is refused (409). History is kept:
    the reversal is new events, its record names who asked and when (ADR 0026).
    """
    return await cmd.reverse_import(ctx, run_id, body)


@router.get("/import-runs/{run_id}", tags=["imports"])
async def import_run(run_id: UUID, actor: CurrentActor, cmd: Commands) -> ImportRunView:
    """An import run of cadres: how many it nominated, how many are in the pool now, and its reversal (who, when)."""
    return await cmd.import_run(actor, run_id)


@router.post("/cadres/{cadre_id}/admission", tags=["cadres"])
async def admit(cadre_id: UUID, body: Admission, ctx: Context, cmd: Commands) -> Accepted:
    """Nominate a candidate that a level above admitted by an entry procedure it ran (its `admit` directive).

    The cadre's id is the candidate's; the entry rules apply on the day of the outcome's document. Applied
    again, it records nothing and answers with no events (ADR 0039).
    """
    return await cmd.admit_directed(ctx, cadre_id, body)


@router.post("/cadres/{cadre_id}/handover", tags=["cadres"])
async def hand_over(cadre_id: UUID, body: HandOver, act: Change, cmd: Commands) -> Accepted:
    """Hand the cadre over to a deployment above this one (multi-level sync): from then on it writes the cadre."""
    return act.tagged(await cmd.hand_over(act.ctx, cadre_id, body, act.expected))


@router.get("/cadres", tags=["cadres"], response_model=CadrePage)
async def list_cadres(
    actor: CurrentActor,
    reads: Queries,
    table: Table,
    under: Under = None,
    status: Literal["in_pool", "retired", "any"] = "in_pool",
    name: Annotated[str | None, Query(max_length=100)] = None,
    education: Education | None = None,
    has_mentor: bool | None = None,
    max_age: Annotated[int | None, Query(ge=18, le=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> CadrePage | Response:
    """Cadres of a subtree, unit by unit, with filters and cursor pagination; with `format`, all of them as a file."""
    filters = CadreFilter(
        status=None if status == "any" else status,
        name=name,
        education=education,
        has_mentor=has_mentor,
        max_age=max_age,
    )
    if table is not None:
        return table_response(table, await reads.all_cadres(actor, under=under, filters=filters), filename="cadres")
    return await reads.cadres(actor, under=under, filters=filters, limit=limit, cursor=cursor)


@router.get("/cadres/counts", tags=["cadres"])
async def count_cadres(
    actor: CurrentActor,
    reads: Queries,
    under: Under = None,
) -> StatusCounts:
    """How many cadres of a subtree are in the pool and how many left it."""
    return await reads.counts(actor, under)


@router.get("/cadres/{cadre_id:uuid}", tags=["cadres"], openapi_extra=OWN_RECORD)
async def get_cadre(cadre_id: UUID, actor: CurrentActor, reads: Queries, response: Response) -> CadreView:
    """One cadre of your subtree (a cadre's own grant: themselves only)."""
    view = await reads.cadre(actor, cadre_id)
    response.headers["ETag"] = f'"{view.version}"'
    return view


@router.get("/access/me", tags=["access"], openapi_extra=OWN_RECORD)
async def me(actor: CurrentActor, reads: Queries) -> Me:
    """Who you act as: your user, role and unit (from your grant, or from a service token)."""
    return await reads.me(actor)


@router.get("/access", tags=["access"])
async def list_grants(actor: CurrentActor, reads: Queries, under: Under = None) -> list[GrantView]:
    """Who may act in a subtree (default: yours), and with which role."""
    return await reads.grants(actor, under)


@router.put("/access/{user_id}", tags=["access"])
async def grant_access(user_id: str, body: GrantAccess, act: Change, cmd: Commands) -> Accepted:
    """Let a person act at a unit of your subtree with a role (replaces what they had)."""
    return act.tagged(await cmd.grant_access(act.ctx, user_id, body, act.expected))


@router.delete("/access/{user_id}", tags=["access"])
async def revoke_access(user_id: str, act: Change, cmd: Commands) -> Accepted:
    """Take a person's access away (a grant inside your subtree)."""
    return act.tagged(await cmd.revoke_access(act.ctx, user_id, act.expected))


@router.get("/structure", tags=["statistics"])
async def structure(actor: CurrentActor, reads: Queries, under: Under = None) -> Structure:
    """The make-up of a subtree's pool (gender, education, age, level) and each unit's pool against its target."""
    return await reads.structure(actor, under)


@router.get(
    "/statistics",
    tags=["statistics"],
    response_model=Statistics,
    responses={200: {"content": {XLSX_TYPE: {}}}},
)
async def pool_statistics(
    actor: CurrentActor,
    reads: Queries,
    under: Under = None,
    on: Annotated[Day | None, Query(description="The date (default: today; never after it)")] = None,
    format: Annotated[Literal["json", "xlsx"], Query()] = "json",  # noqa: A002 - the parameter's public name
) -> Statistics | Response:
    """The structure statistics of a subtree's pool on a date, per unit and per level (情况统计表).

    Counted by gender, age band (and the women in each), ethnicity, party membership and its years,
    full-time and in-service education, rank and reserve kind; `not_recorded` where a cadre's record
    lacks the field. A past date's figures are the registry's events recorded by the end of that day,
    replayed. With `format=xlsx`, the same figures as a workbook, one sheet per level.
    """
    figures = await reads.statistics(actor, under, on)
    if format == "json":
        return figures
    name = f"statistics-{figures.root.rsplit('.', 1)[-1]}-{figures.on.isoformat()}.xlsx"
    return Response(
        statistics_sheet.workbook(figures),
        media_type=XLSX_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.put("/cadres/{cadre_id}/personal-data", tags=["personal data"], responses=ERASED)
async def record_personal_data(cadre_id: UUID, body: PersonalFile, act: Change, cmd: Commands) -> Accepted:
    """Record a cadre's personal file (ID number, family, photo, health, ...), sealed with the cadre's own key."""
    return act.tagged(await cmd.record_personal_data(act.ctx, cadre_id, body, act.expected))


@router.get("/cadres/{cadre_id}/personal-data", tags=["personal data"], responses=ERASED)
async def read_personal_data(cadre_id: UUID, actor: CurrentActor, reads: Queries) -> PersonalFile:
    """A cadre's personal file (organizers of its subtree); 410 once erased."""
    return await reads.personal_data(actor, cadre_id)


LRMX_MEDIA = "application/xml"


@router.get(
    "/cadres/{cadre_id}/appointment-form",
    tags=["personal data"],
    response_class=Response,
    responses={200: {"content": {LRMX_MEDIA: {}, "text/html": {}}}},
)
async def appointment_form(
    cadre_id: UUID,
    actor: CurrentActor,
    reads: Queries,
    format: Annotated[Literal["lrmx", "html"], Query()] = "lrmx",  # noqa: A002 - the parameter's public name
) -> Response:
    """The cadre's appointment and removal approval form (任免审批表) as `.lrmx`, or as a page to print.

    Filled from the profile, the personal file, the last annual grades and the postings; organizers
    and auditors of the cadre's subtree. After erasure the personal boxes are empty.
    """
    form = await reads.appointment_form(actor, cadre_id)
    if format == "html":
        return Response(
            lrmx.printable(form),
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": lrmx.PRINTABLE_CSP},
        )
    ascii_name = f"appointment-form-{cadre_id}.lrmx"
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(form.full_name)}.lrmx"
    return Response(lrmx.write(form), media_type=LRMX_MEDIA, headers={"Content-Disposition": disposition})


@router.put(
    "/cadres/{cadre_id}/appointment-form",
    tags=["personal data"],
    openapi_extra={"requestBody": {"required": True, "content": {LRMX_MEDIA: {"schema": {"type": "string"}}}}},
)
async def import_appointment_form(cadre_id: UUID, request: Request, act: Change, cmd: Commands) -> Accepted:
    """Take an `.lrmx` form into the cadre's profile (name, post, education) and sealed personal file."""
    data = await request.body()
    try:
        form = lrmx.read(data)
    except lrmx.FormError as error:
        raise RuleViolationError(str(error), violations=error.problems) from None
    return act.tagged(await cmd.import_appointment_form(act.ctx, cadre_id, form, act.expected))


@router.post("/cadres/{cadre_id}/erasure", tags=["personal data"], responses=ERASED)
async def erase_personal_data(cadre_id: UUID, body: Erase, act: Change, cmd: Commands) -> Accepted:
    """Erase a cadre's personal data: the key is destroyed, every sealed copy stays unreadable, the chain intact."""
    return act.tagged(await cmd.erase_personal_data(act.ctx, cadre_id, body, act.expected))


@router.post(
    "/cadres/{cadre_id}/personal-data/grants",
    status_code=status.HTTP_201_CREATED,
    tags=["personal data"],
    responses=ERASED,
)
async def grant_personal_data(cadre_id: UUID, body: GrantKey, ctx: Context, cmd: Commands) -> KeyGrant:
    """Seal the cadre's key to another deployment (its `/personal-data/grant-key`); recorded as an event."""
    return await cmd.grant_personal_data(ctx, cadre_id, body)


@router.get("/personal-data/grant-key", tags=["personal data"])
async def grant_key(request: Request, actor: CurrentActor) -> GrantKey:
    """This deployment's public key, for another deployment to grant it a cadre's key."""
    del actor
    return service_of(request).keystore.grant_public_key()


@router.post("/personal-data/keys", status_code=status.HTTP_204_NO_CONTENT, tags=["personal data"], responses=ERASED)
async def accept_key(body: KeyGrant, ctx: Context, cmd: Commands) -> None:
    """Keep a cadre's key another deployment granted to this one, beside (never instead of) any key held.

    Only an organizer of the cadre's subtree; recorded as `PersonalDataKeyAccepted`. Refused once
    the cadre was erased (410), and when a key is already held that it would stand beside (409).
    """
    await cmd.accept_personal_data_key(ctx, body)
