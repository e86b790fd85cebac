"""`python -m services.sync.cli` (or `./dev sync`): the links of this deployment from the command line.

Reads the sync service's own environment (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, TOPIC_NAMESPACE,
DEPLOYMENT_ID, PARENT_DEPLOYMENT, PARENT_PUBLIC_KEY, CHILD_DEPLOYMENTS, CHECKPOINT_SIGNING_KEY).
An offline link, one round (ADR 0016):

    receiver$ ./dev sync ack --out ack.json                          # what it holds
    sender$   ./dev sync export --to <receiver> --since ack.json --out bundle.zip
    receiver$ ./dev sync import bundle.zip                           # verified whole, applied in one transaction
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from runtime import bundle as signed
from runtime import checkpoint, db, logs
from services.sync import bundles, ingest, status
from services.sync.app import SyncSettings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The links of this deployment, with the sync service's environment: signed bundles for offline links"
    " (ack at the receiver, export at the sender, import at the receiver) and their status.",
)
console = Console(stderr=True, soft_wrap=True)


def _settings() -> SyncSettings:
    settings = SyncSettings()
    logs.configure(level="WARNING", json=False)
    return settings


@app.command()
def ack(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write it here (default: standard output)")] = None,
) -> None:
    """What this deployment holds of every chain it received: the `--since` of the next bundle it is sent."""
    settings = _settings()

    async def read() -> bundles.Ack:
        pool = await db.create_pool(settings.database_url, max_size=2)
        try:
            await db.apply_schema(pool, ingest.SCHEMA)
            return await bundles.acknowledge(pool, settings.deployment_id)
        finally:
            await pool.close()

    text = asyncio.run(read()).model_dump_json(indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        console.print(f"{out}: what {settings.deployment_id} holds")


@app.command()
def export(
    to: Annotated[str, typer.Option(help="The linked deployment it is for (the parent, or a child)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle to write (.zip)")],
    since: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="The receiver's acknowledgement (sync ack)")
    ] = None,
    max_bytes: Annotated[int | None, typer.Option(help="Cut the bundle at this many bytes (unpacked)")] = None,
) -> None:
    """Export a signed bundle of what the receiver lacks, read from this deployment's topics."""
    settings = _settings()
    acknowledged = bundles.Ack.model_validate_json(since.read_bytes()) if since is not None else None
    key = checkpoint.private_key(settings.checkpoint_signing_key.get_secret_value())
    data = asyncio.run(
        bundles.export(settings, key, to=to, since=acknowledged, max_bytes=max_bytes or settings.bundle_max_bytes)
    )
    out.write_bytes(data)
    manifest = signed.unpack(data).manifest
    events = sum(int(chain["count"]) for chain in manifest["chains"])
    more = "" if manifest["complete"] else " (cut at the size limit: export again after the next ack)"
    console.print(f"{out}: {events:,} events in {len(manifest['chains'])} chains for {to}, {len(data):,} bytes{more}")


@app.command("import")
def import_bundle(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A signed bundle (.zip)")],
) -> None:
    """Import a signed bundle: verified whole, then applied in one transaction (idempotent; run again if cut)."""
    settings = _settings()
    data = bundle.read_bytes()

    async def run() -> bundles.Imported:
        pool = await db.create_pool(settings.database_url, max_size=2)
        try:
            await db.apply_schema(pool, ingest.SCHEMA)
            taker = ingest.Ingest(settings.topology, settings.parent_public_key)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
                task = bar.add_task("applying", total=None)

                async def advance(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                return await bundles.take(
                    pool, taker, settings.topology, data, max_bytes=settings.bundle_max_bytes, progress=advance
                )
        finally:
            await pool.close()

    try:
        imported = asyncio.run(run())
    except bundles.BundleRefusedError as refused:
        console.print(f"[red]refused whole, nothing applied:[/red] {refused.detail}")
        raise typer.Exit(1) from None
    console.print(
        f"{bundle}: from {imported.exporter}, {imported.events:,} events: {imported.arrived:,} new,"
        f" {imported.repeats:,} repeats, {imported.released:,} released"
    )
    for refusal in imported.refused[:20]:
        console.print(f"[yellow]refused by the ingest:[/yellow] {refusal}")


@app.command("status")
def show_status() -> None:
    """Per deployment and service: received, verified, signed, released, lag, refusals."""
    settings = _settings()
    topology = settings.topology

    async def read() -> status.Status:
        pool = await db.create_pool(settings.database_url, max_size=2)
        try:
            await db.apply_schema(pool, ingest.SCHEMA)
            return await status.status(pool, topology.deployment, topology.parent, sorted(topology.children))
        finally:
            await pool.close()

    found = asyncio.run(read())
    table = Table(
        title=f"{found.deployment}: parent {found.parent or '-'}, children {', '.join(found.children) or '-'}"
    )
    for column in ("deployment", "source", "link", "received", "verified", "released", "lag", "refused", "broken"):
        table.add_column(column)
    for chain in found.chains:
        table.add_row(
            chain.deployment,
            chain.source,
            chain.link or "",
            str(chain.received),
            str(chain.verified),
            str(chain.released),
            f"{chain.lag_events} ({chain.lag_seconds:.0f} s)",
            str(chain.refused),
            chain.broken or "",
        )
    Console().print(table)
    for refusal in found.refusals[:10]:
        console.print(f"[yellow]{refusal.refused_at:%Y-%m-%d %H:%M:%S}[/yellow] {refusal.via} {refusal.reason}")


if __name__ == "__main__":
    app()
