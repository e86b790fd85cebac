"""`python -m exchange` (or `./dev import`, `./dev template`): templates and imports from the command line."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Annotated

import httpx
import jwt
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from exchange import importer
from exchange.templates import TEMPLATES, Language, csv_text, workbook

app = typer.Typer(add_completion=False, help=__doc__)
console = Console()
KINDS = ", ".join(TEMPLATES)


@app.command()
def template(
    kind: Annotated[str, typer.Argument(help=f"One of: {KINDS}")],
    lang: Annotated[str, typer.Option(help="zh or en")] = "zh",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Default: <kind>-<lang>.xlsx")] = None,
) -> None:
    """Write an import template (XLSX, or CSV when the output ends in .csv)."""
    chosen = TEMPLATES[kind]
    language: Language = "en" if lang == "en" else "zh"
    path = output or Path(f"{kind}-{language}.xlsx")
    data = csv_text(chosen, language) if path.suffix == ".csv" else workbook(chosen, language)
    path.write_bytes(data)
    console.print(f"{path}: {chosen.title(language)}")


@app.command("import")
def import_file(  # noqa: PLR0917 - typer passes its options positionally
    file: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, help="An .xlsx or .csv file (not with --undo)")
    ] = None,
    kind: Annotated[str | None, typer.Option(help=f"The template the file follows: {KINDS}")] = None,
    url: Annotated[str, typer.Option(help="Base URL of the template's service (the registry for cadres, --undo)")] = "",
    token: Annotated[str, typer.Option(envvar="CADRE_TOKEN", help="Actor token (./dev token)")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check every row and cell; change nothing")] = False,
    source: Annotated[str | None, typer.Option(help="Names the records' ids (default: your org unit)")] = None,
    batch: Annotated[int, typer.Option(min=1, max=2000, help="Commands per request")] = 1000,
    undo: Annotated[
        str | None, typer.Option(help="Reverse the cadres import run RUN (the id an import printed) instead")
    ] = None,
    reason: Annotated[str, typer.Option(help="With --undo: why the import is reversed")] = "",
) -> None:
    """Import a file through the service's own commands (every rule applies); idempotent and resumable.

    With --undo RUN: reverse a mistaken import of cadres by compensating events (ADR 0026).
    """
    if not url or not token:
        console.print("--url and --token (or CADRE_TOKEN) are required")
        raise typer.Exit(2)
    if undo is not None:
        raise typer.Exit(_undo(undo, url, token, reason))
    if file is None or kind is None:
        console.print("a FILE and its --kind are required (or --undo RUN)")
        raise typer.Exit(2)
    chosen = TEMPLATES[kind]
    origin = source or str(jwt.decode(token, options={"verify_signature": False}).get("org", "unknown"))
    report = asyncio.run(_import(file, chosen.kind, url, token, origin, dry_run=dry_run, batch=batch))
    _summary(report, dry_run=dry_run)
    raise typer.Exit(0 if report.ok else 1)


def _undo(run: str, url: str, token: str, reason: str) -> int:
    """Ask the registry to reverse import run `run`; print what it did or why it refused."""
    try:
        run_id = uuid.UUID(run)
    except ValueError:
        console.print(f"{run!r} is not a run id (a UUID, as the import printed it)")
        return 2

    async def ask() -> tuple[bool, str]:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600) as http:
            return await importer.reverse(http, run_id, reason)

    reversed_, message = asyncio.run(ask())
    console.print(message)
    return 0 if reversed_ else 1


async def _import(
    file: Path, kind: str, url: str, token: str, source: str, *, dry_run: bool, batch: int
) -> importer.Report:
    headers = {"Authorization": f"Bearer {token}"}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("checking" if dry_run else "importing", total=None)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
            return await importer.run(
                client,
                TEMPLATES[kind],
                file,
                source=source,
                dry_run=dry_run,
                batch=batch,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            )


def _summary(report: importer.Report, *, dry_run: bool) -> None:
    verb = "would be accepted" if dry_run else "accepted"
    if report.run_id is not None:
        console.print(f"run {report.run_id} (./dev import --undo {report.run_id} reverses its cadres)")
    console.print(
        f"{report.rows} rows, {report.commands} commands: {report.accepted} {verb}, {report.skipped} already there"
        + (f", {report.unchecked} checked only when imported" if report.unchecked else "")
        + (f"; resumed after request {report.resumed_at}" if report.resumed_at else "")
    )
    if report.problems:
        table = Table(title=f"{len(report.problems)} problems")
        for name in ("row", "column", "problem"):
            table.add_column(name)
        for problem in report.problems[:200]:
            table.add_row(str(problem.row), problem.column or "", problem.message)
        console.print(table)
        if len(report.problems) > 200:  # noqa: PLR2004
            console.print(f"... and {len(report.problems) - 200} more")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    app()
