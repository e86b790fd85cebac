"""What is due: open reminders, overdue check-ins, hours behind the quota, self-study to confirm, your inbox."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.console.pages import ConsoleDep, SessionDep

router = APIRouter(include_in_schema=False)


@router.get("/due")
async def due(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """Everything waiting for someone in the person's subtree."""
    token, apis = session.access_token, console.apis
    return console.render(
        request,
        "due.html",
        reminders=await apis.get("assessment", "/reminders", token),
        overdue=await apis.get("assessment", "/overdue-check-ins", token),
        behind=await apis.get("training", "/behind-quota", token, limit=100),
        reports=await apis.get("training", "/self-study-reports", token, limit=100),
        inbox=await apis.get("notify", "/inbox", token, unread_only=True, limit=20),
    )
