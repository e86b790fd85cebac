"""The links between levels: each link's and each chain's progress, live; offline bundles out and in.

Everything comes from this deployment's sync service (`GET /status`, `/bundles...`) with the
person's token: the service decides who sees what (organizers and auditors see the links,
organizers of the deployment's root unit exchange bundles). A bundle uploaded here is first
only checked (`POST /bundles/check`: verified whole, nothing applied) and shown; importing it
is a second step that sends the same file (its digest must be the one shown) to `POST /bundles`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from runtime import clock
from services.console.apis import ApiError
from services.console.pages import Console, ConsoleDep, ScreenError, SessionDep
from services.console.session import Session

router = APIRouter(include_in_schema=False)

BUNDLE_MAX_BYTES: Final = 256 * 1024 * 1024
"""Largest bundle (or acknowledgement) the console takes in an upload: the sync service's own default limit."""
POLL_SECONDS: Final = 5


def _linked(console: Console, session: Session) -> None:
    if "sync" not in console.apis.clients:
        raise ScreenError(404, "this deployment is not linked with other levels (no sync service configured)")
    if not session.may_audit:
        raise ScreenError(403, "your role may not see the links between levels")


@dataclass
class Link:
    """One direct link (the parent, or a child) and the chains it brings."""

    deployment: str
    above: bool
    chains: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lag_events(self) -> int:
        """Events arrived over this link and not yet released."""
        return sum(int(c["lag_events"]) for c in self.chains)

    @property
    def lag_seconds(self) -> float:
        """The oldest of them, in seconds."""
        return max((float(c["lag_seconds"]) for c in self.chains), default=0.0)

    @property
    def last_heard(self) -> str | None:
        """When anything last arrived over this link."""
        return max((str(c["last_heard"]) for c in self.chains if c["last_heard"]), default=None)

    @property
    def refused(self) -> int:
        """Events refused on arrival over this link."""
        return sum(int(c["refused"]) for c in self.chains)

    @property
    def broken(self) -> int:
        """Chains stopped at a break."""
        return sum(1 for c in self.chains if c["broken"])


def _links(status: dict[str, Any]) -> list[Link]:
    """The direct links (parent first, then the children), each with the chains that came over it."""
    links = {name: Link(name, above=False) for name in status["children"]}
    if status["parent"]:
        links = {status["parent"]: Link(status["parent"], above=True), **links}
    for chain in status["chains"]:
        via = chain["link"] or chain["deployment"]
        if via in links:
            links[via].chains.append(chain)
    return list(links.values())


async def _names(console: Console, session: Session, status: dict[str, Any]) -> dict[str, str]:
    """Deployment → the name of the unit at its root, where this deployment knows the unit."""
    units = await console.apis.get("registry", "/org-units", session.access_token)
    by_code = {unit["code"]: unit["name"] for unit in units}
    roots: dict[str, str] = status.get("roots", {})
    return {
        name: by_code[path.rsplit(".", 1)[-1]] for name, path in roots.items() if path.rsplit(".", 1)[-1] in by_code
    }


def _ages(status: dict[str, Any]) -> None:
    """Seconds since each chain was last heard from, beside the moment."""
    now = clock.now()
    for chain in status["chains"]:
        heard = chain["last_heard"]
        chain["heard_ago"] = int((now - datetime.fromisoformat(heard)).total_seconds()) if heard else None


async def _status_context(console: Console, session: Session) -> dict[str, Any]:
    status: dict[str, Any] = await console.apis.get("sync", "/status", session.access_token)
    _ages(status)
    return {
        "state": status,  # `status` is the answer's HTTP status to `render`
        "links": _links(status),
        "names": await _names(console, session, status),
        "poll": POLL_SECONDS,
        "may_exchange": _may_exchange(session, status),
    }


def _may_exchange(session: Session, status: dict[str, Any]) -> bool:
    """Organizers of the deployment's root unit (or above it) carry bundles (the sync service decides too)."""
    root = str(status.get("roots", {}).get(status["deployment"], ""))
    inside = not root or session.org_path == root or root.startswith(f"{session.org_path}.")
    return session.may_write and inside and bool(status["parent"] or status["children"])


@router.get("/links")
async def links(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """Every link of this deployment, every chain, the latest refusals; bundles out and in for its organizers."""
    _linked(console, session)
    return console.render(request, "links.html", **await _status_context(console, session), checked=None,
                          imported=None, refusal=None)  # fmt: skip


@router.get("/links/status")
async def status_fragment(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The links' figures alone: htmx asks for them every few seconds."""
    _linked(console, session)
    return console.render(request, "links_status.html", **await _status_context(console, session))


@router.get("/links/ack")
async def acknowledgement(console: ConsoleDep, session: SessionDep) -> Response:
    """What this deployment holds of every chain (a JSON file): the linked deployment exports since it."""
    _linked(console, session)
    answer = await console.apis.call("sync", "GET", "/bundles/ack", session.access_token)
    ack = answer.json()
    name = f"cadre-sync-ack-{ack['deployment']}.json"
    return Response(answer.content, media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


async def _upload(request: Request, name: str, *, required: bool) -> bytes | None:
    form = await request.form()
    upload = form.get(name)
    if not isinstance(upload, UploadFile) or not upload.filename:
        if required:
            raise ScreenError(422, "choose a file first")
        return None
    data = await upload.read(BUNDLE_MAX_BYTES + 1)
    if len(data) > BUNDLE_MAX_BYTES:
        raise ScreenError(413, f"the file has more than {BUNDLE_MAX_BYTES:,} bytes")
    return data


def _since(ack: bytes, to: str) -> list[str]:
    """The `since` of an export from the receiver's acknowledgement file."""
    try:
        document = orjson.loads(ack)
        if document.get("deployment") != to:
            msg = f"the acknowledgement comes from {document.get('deployment')}, not from {to}"
            raise ScreenError(422, msg)
        return [f"{c['deployment']}:{c['source']}:{int(c['position'])}" for c in document["chains"]]
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        raise ScreenError(422, "the acknowledgement is not one the sync service wrote (JSON, its chains)") from None


@router.post("/links/export")
async def export(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """A signed bundle for a linked deployment (download), since its acknowledgement when one is given."""
    _linked(console, session)
    to = str((await request.form()).get("to") or "")
    ack = await _upload(request, "ack", required=False)
    since = _since(ack, to) if ack else []
    answer = await console.apis.call("sync", "GET", "/bundles", session.access_token,
                                     params={"to": to, "since": since})  # fmt: skip
    disposition = answer.headers.get("content-disposition", "attachment")
    return Response(answer.content, media_type="application/zip", headers={"Content-Disposition": disposition})


async def _bundle_answer(
    request: Request, console: Console, session: Session, *, checked: Any = None, imported: Any = None,
    refusal: ApiError | None = None,
) -> Response:  # fmt: skip
    """The verdict: a fragment for htmx (swapped in below the form, whatever it says), else the whole page."""
    status = refusal.status if refusal is not None else 200
    if request.headers.get("HX-Request"):
        return console.render(request, "links_bundle.html", checked=checked, imported=imported, refusal=refusal)
    return console.render(request, "links.html", status=status, **await _status_context(console, session),
                          checked=checked, imported=imported, refusal=refusal)  # fmt: skip


@router.post("/links/check")
async def check(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """Verify an uploaded bundle whole, applying nothing: what importing it would bring, or why it is refused."""
    _linked(console, session)
    data = await _upload(request, "bundle", required=True)
    try:
        checked = await console.apis.send_bytes("sync", "/bundles/check", session.access_token, data or b"")
    except ApiError as refused:
        if refused.status not in {413, 422}:
            raise
        return await _bundle_answer(request, console, session, refusal=refused)
    return await _bundle_answer(request, console, session, checked=checked)


@router.post("/links/import")
async def import_bundle(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """Import the bundle that was checked (the same file: its digest must match), in one transaction."""
    _linked(console, session)
    data = await _upload(request, "bundle", required=True) or b""
    confirmed = str((await request.form()).get("digest") or "")
    if not confirmed:
        raise ScreenError(422, "check the bundle first: it is imported only once its verification was shown")
    if hashlib.sha256(data).hexdigest() != confirmed:
        raise ScreenError(409, "this is not the file that was checked: check it again before importing")
    try:
        imported = await console.apis.send_bytes("sync", "/bundles", session.access_token, data)
    except ApiError as refused:
        if refused.status not in {413, 422}:
            raise
        return await _bundle_answer(request, console, session, refusal=refused)
    return await _bundle_answer(request, console, session, imported=imported)
