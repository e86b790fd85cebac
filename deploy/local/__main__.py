"""`python -m deploy.local`: the local stack and the operator's small tools (see `./dev --help`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from contracts.envelope import Actor, Role
from deploy.local import stack as local_stack
from deploy.local.ports import accepts
from runtime import clock
from runtime.auth import issue_token
from runtime.kafka import ensure_topics, platform_topics
from runtime.settings import DEV_AUTH_SECRET

if TYPE_CHECKING:
    from deploy.local.levels import Running as LevelsRunning

app = typer.Typer(help="Run the reserve cadre platform locally.", no_args_is_help=True, add_completion=False)
console = Console()


@app.command()
def up(
    *,
    workdir: Annotated[Path, typer.Option(help="Where Kafka, PostgreSQL and logs keep their files")] = Path(
        "var/stack"
    ),
    demo: Annotated[bool, typer.Option(help="Load the demo organization")] = True,
    cadres: Annotated[int, typer.Option(help="Cadres in the demo organization")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the demo organization")] = 7,
    port: Annotated[
        int, typer.Option(envvar="CONSOLE_PORT", help="Port of the platform's one address (the console)")
    ] = local_stack.CONSOLE_PORT,
    at: Annotated[
        datetime | None,
        typer.Option(
            help="Run the platform as if it were this instant (ISO 8601 with its zone); its clock runs on from there",
            formats=["%Y-%m-%dT%H:%M:%S%z"],
        ),
    ] = None,
    namespace: Annotated[
        str, typer.Option(help="Prefix of topic and database names (beside other stacks on the same servers)")
    ] = "",
    levels: Annotated[
        int,
        typer.Option(
            help="Run a province, a city and a county (3), each its own stack linked by MirrorMaker 2, with the"
            " demo split across them",
            min=1,
            max=3,
        ),
    ] = 1,
) -> None:
    """Start Kafka, PostgreSQL, the identity provider, the services and the console; load the demo; run till Ctrl-C."""
    if accepts(port):
        console.print(f"[red]port {port} is taken: stop what listens there, or choose another with --port[/red]")
        raise typer.Exit(2)
    if at is not None:
        clock.use(clock.current().at(at))
        console.print(
            f"The platform's clock reads {clock.now():%Y-%m-%d %H:%M:%S} UTC ({clock.today()} in the organization)"
        )
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    secret = os.environ.get("AUTH_SECRET", DEV_AUTH_SECRET)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if levels > 1:
        _up_levels(workdir, levels, stop=stop, demo=demo, cadres=cadres, seed=seed, secret=secret)
        return
    with console.status("starting Kafka, PostgreSQL, the identity provider, the services and the console..."):
        running = local_stack.run_stack(workdir, secret=secret, namespace=namespace, console_port=port)
        stack = running.__enter__()
    try:
        if demo:
            with console.status("loading the demo organization..."):
                loaded = asyncio.run(local_stack.load_demo(stack, seed=seed, cadres=cadres))
            for name, (sent, skipped) in loaded.items():
                console.print(f"demo: {name}: {sent} commands sent, {skipped} already there")
        _print_stack(stack, secret)
        stop.wait()
    finally:
        console.print("stopping...")
        running.__exit__(None, None, None)


def _up_levels(
    workdir: Path, count: int, *, stop: threading.Event, demo: bool, cadres: int, seed: int, secret: str
) -> None:
    """`up --levels N`: each level its own stack, linked; the demo split; until Ctrl-C."""
    from deploy.local import levels as local_levels  # noqa: PLC0415 - MirrorMaker only when asked for

    with console.status(f"starting {count} levels: Kafka, PostgreSQL and the services each, then MirrorMaker..."):
        context = local_levels.run_levels(workdir, count, consoles=True)
        running = context.__enter__()
    try:
        for level in running.levels:
            stack = running.stacks[level.name]
            if demo:
                with console.status(f"loading {level.name}'s part of the demo organization..."):
                    loaded = asyncio.run(
                        local_stack.load_demo(stack, seed=seed, cadres=cadres, part=running.demo_part(level))
                    )
                for name, (sent, skipped) in loaded.items():
                    console.print(f"demo: {level.name}: {name}: {sent} commands sent, {skipped} already there")
            _print_stack(stack, secret, title=f"Level {level.name} (root {level.root}): running", root=level.root)
        _print_level_consoles(running, seed=seed, cadres=cadres)
        if running.mirror is not None:
            console.print(f"MirrorMaker 2 links every level: {running.mirror.workdir / 'mm2.properties'}")
        console.print("Press Ctrl-C to stop.")
        stop.wait()
    finally:
        console.print("stopping...")
        context.__exit__(None, None, None)


def _print_level_consoles(running: LevelsRunning, *, seed: int, cadres: int) -> None:
    """Each level's console, and who signs in there (the demo people whose unit the level holds)."""
    from deploy.local.keycloak import DEMO_PASSWORD  # noqa: PLC0415
    from services.registry import demo as registry_demo  # noqa: PLC0415

    org = registry_demo.plan(seed, cadres=cadres)
    table = Table(title=f"Each level's console: sign in as (local development only; every password: {DEMO_PASSWORD})")
    for column in ("level", "console", "user", "role", "acts at"):
        table.add_column(column)
    for level in running.levels:
        front = running.stacks[level.name].console
        address = front.url if front is not None else "-"
        for person in registry_demo.people(running.demo_part(level)(org)):
            table.add_row(level.name, address, person.user_id, person.role.value,
                          f"{person.unit.name} ({person.unit.path})")  # fmt: skip
    console.print(table)
    console.print(f"Every console signs people in at {running.issuer} (a client of its own per level).")


def _print_front_door(stack: local_stack.Stack) -> None:
    from deploy.local.keycloak import DEMO_PASSWORD  # noqa: PLC0415
    from services.registry import demo as registry_demo  # noqa: PLC0415

    assert stack.console is not None
    address = stack.console.url
    console.print(f"\n[bold]The reserve cadre platform: {address}[/bold]\n")
    table = Table(title=f"Sign in as (local development only; every password: {DEMO_PASSWORD})")
    for column in ("user", "role", "acts at"):
        table.add_column(column)
    for person in registry_demo.people(registry_demo.plan()):
        table.add_row(person.login, person.role.value, f"{person.unit.name} ({person.unit.path})")
    console.print(table)
    console.print(f"APIs: {address}/api/<service>/ (docs: {address}/api/registry/docs, ...); provider: {stack.issuer}")
    console.print(f"Logs: {stack.console.log_path.parent}")


def _print_stack(stack: local_stack.Stack, secret: str, *, title: str = "", root: str = "qs") -> None:
    if stack.console is not None and not title:
        _print_front_door(stack)
    else:
        table = Table(title=title or "Reserve cadre platform: running")
        table.add_column("service")
        table.add_column("API docs (OpenAPI)")
        table.add_column("log")
        for name, service in stack.services.items():
            table.add_row(name, f"{service.url}/docs", str(service.log_path))
        console.print(table)
    console.print(f"Kafka: {stack.kafka_bootstrap}    PostgreSQL: {stack.postgres_dsn}")
    if "MAILDIR" in stack.mail:
        console.print(f"Email goes to a local SMTP server on port {stack.mail['SMTP_PORT']}: {stack.mail['MAILDIR']}")
    token = issue_token(secret, Actor(user="demo.organizer", org_path=root, role=Role.ORGANIZER))
    console.print(f"Token of the organizer at {root} (for scripts; `./dev token` makes others):")
    console.print(token, soft_wrap=True)
    if not title:
        console.print("Press Ctrl-C to stop.")


@app.command()
def token(
    user: Annotated[str, typer.Option(help="User id")],
    org: Annotated[str, typer.Option(help="Org path the actor acts at, e.g. qs.bh")],
    role: Annotated[Role, typer.Option(help="Role")] = Role.ORGANIZER,
    hours: Annotated[int, typer.Option(help="Validity in hours")] = 12,
) -> None:
    """Print an actor token signed with AUTH_SECRET (the development secret if unset)."""
    secret = os.environ.get("AUTH_SECRET", DEV_AUTH_SECRET)
    typer.echo(issue_token(secret, Actor(user=user, org_path=org, role=role), ttl=timedelta(hours=hours)))


@app.command()
def demo(
    service: Annotated[list[str], typer.Option(help="A running service as name=URL (repeat for each service)")],
    secret: Annotated[str, typer.Option(envvar="AUTH_SECRET", help="The services' token key")] = DEV_AUTH_SECRET,
    cadres: Annotated[int, typer.Option(help="Cadres in the demo organization")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the demo organization")] = 7,
) -> None:
    """Load the demo organization into services that are already running (the compose demo profile)."""
    urls: dict[str, str] = {}
    for item in service:
        name, sep, url = item.partition("=")
        if not sep or name not in local_stack.SERVICES:
            console.print(f"[red]--service wants name=URL with a name in {', '.join(local_stack.SERVICES)}[/red]")
            raise typer.Exit(2)
        urls[name] = url
    loaded = asyncio.run(local_stack.load_demo_at(urls, secret, seed=seed, cadres=cadres))
    for name, (sent, skipped) in loaded.items():
        console.print(f"demo: {name}: {sent} commands sent, {skipped} already there")


@app.command()
def verify(
    bootstrap: Annotated[str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers")],
    service: Annotated[list[str], typer.Option(help="A service's database as name=DSN (repeat for each service)")],
    namespace: Annotated[str, typer.Option(envvar="TOPIC_NAMESPACE", help="Topic name prefix")] = "",
    public_key: Annotated[
        list[str] | None, typer.Option(help="Trusted checkpoint public key, base64 (default: the development key)")
    ] = None,
) -> None:
    """Check each service's hash chain, stream versions, topic and signed checkpoints; exit 1 on any break."""
    from contracts import topics as topic_names  # noqa: PLC0415
    from runtime import checkpoint, verify  # noqa: PLC0415
    from runtime.settings import DEV_CHECKPOINT_SEED  # noqa: PLC0415

    keys = [checkpoint.load_public_key(k) for k in public_key or [checkpoint.public_key_b64(DEV_CHECKPOINT_SEED)]]
    failed = False
    for item in service:
        name, sep, dsn = item.partition("=")
        if not sep:
            console.print("[red]--service wants name=DSN[/red]")
            raise typer.Exit(2)
        topic = topic_names.namespaced(namespace, topic_names.service_topic(name))
        report = asyncio.run(verify.verify_dsn(dsn, service=name, public_keys=keys, bootstrap=bootstrap, topic=topic))
        status = "[green]intact[/green]" if report.ok else f"[red]broken at position {report.first_bad_position}[/red]"
        console.print(
            f"{name}: {status}: {report.events} events, {report.on_topic} on {topic}, "
            f"{report.checkpoints_verified} signed checkpoints verified"
        )
        for finding in report.findings:
            console.print(f"  position {finding.position} [{finding.check}] {finding.problem}")
        failed = failed or not report.ok
    if failed:
        raise typer.Exit(1)


@app.command()
def backup(
    dsn: Annotated[
        str, typer.Option(envvar="DATABASE_URL", help="The server's admin DSN (a superuser, or REPLICATION)")
    ],
    directory: Annotated[Path, typer.Option("--dir", envvar="BACKUP_DIR", help="Base backups and the WAL archive")],
) -> None:
    """A base backup of the PostgreSQL server now (pg_basebackup, checked by pg_verifybackup)."""
    from deploy.local import backup as backups  # noqa: PLC0415

    label = clock.now().astimezone(datetime.now().astimezone().tzinfo).strftime("%Y%m%dT%H%M%S")
    target = backups.base_backup(dsn, directory.resolve(), label=label)
    console.print(f"base backup {target} (the server must archive its WAL into {directory.resolve() / 'wal'})")


@app.command()
def restore(  # noqa: PLR0917 - typer passes its options positionally
    service: Annotated[str, typer.Option(help="The service whose database is put back (registry, training, ...)")],
    bootstrap: Annotated[
        str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka: the service's consumer groups are rewound")
    ],
    dsn: Annotated[str | None, typer.Option(help="The server's admin DSN (point-in-time restore)")] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", envvar="BACKUP_DIR", help="Base backups and the WAL archive")
    ] = None,
    to: Annotated[
        datetime | None, typer.Option(help="The moment, ISO 8601 with its offset (2026-12-06T17:30:00+08:00)")
    ] = None,
    namespace: Annotated[str, typer.Option(envvar="TOPIC_NAMESPACE", help="Topic name prefix")] = "",
    from_log: Annotated[
        bool,
        typer.Option(
            "--from-log",
            help="Fill the service's event table from its topic (and the archive), verify it, rebuild and rewind;"
            " reads the service's own environment (DATABASE_OWNER_URL, DEPLOYMENT_ID, ...)",
        ),
    ] = False,
    archive_dsn: Annotated[
        str | None, typer.Option(help="--from-log: the audit service's database, for what the topic lacks")
    ] = None,
    also_topic: Annotated[
        list[str] | None,
        typer.Option(help="--from-log: another copy of the log as TOPIC@BOOTSTRAP (a level's mirrored topic)"),
    ] = None,
    public_key: Annotated[
        list[str] | None, typer.Option(help="--from-log: another trusted checkpoint public key, base64")
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="--from-log: read this topic instead of the service's own (full name)")
    ] = None,
    from_parent: Annotated[
        str | None,
        typer.Option(
            help="--from-log: the parent level's Kafka (HOST:PORT); its mirrored copy of the service's topic"
            " (<deployment>.<topic>) is read too: a level whose own Kafka is lost"
        ),
    ] = None,
    bundle: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True, dir_okay=False, help="--from-log: a signed bundle this deployment made (verified first)"
        ),
    ] = None,
) -> None:
    """Put one service's database back: to a moment (base backup + archived WAL), or from the log; stop it first."""
    if from_log:
        sources = _LogSources(also_topic or [], public_key or [], topic, from_parent, bundle or [])
        _restore_from_log(service, archive_dsn, sources)
        return
    from deploy.local import backup as backups  # noqa: PLC0415

    if dsn is None or directory is None or to is None:
        console.print("[red]a restore to a moment needs --dsn, --dir and --to (or restore --from-log)[/red]")
        raise typer.Exit(2)
    if to.tzinfo is None:
        console.print("[red]--to needs its offset (+08:00, Z): a moment is not a wall-clock time[/red]")
        raise typer.Exit(2)
    database = local_stack.database_name(namespace, service)
    done = backups.restore_database(dsn, directory.resolve(), database, to)
    console.print(f"{database} restored to {to.isoformat()} from {done.base} and the archived WAL")
    from runtime.restore import rewind_consumers  # noqa: PLC0415

    for group, partitions in asyncio.run(rewind_consumers(bootstrap, service)).items():
        console.print(f"consumer group {group}: {partitions} partitions rewound (its watermarks skip the repeats)")


@dataclass(frozen=True)
class _LogSources:
    """Where `restore --from-log` reads besides the service's own topic, and whom it trusts."""

    also: list[str]
    keys: list[str]
    topic: str | None
    parent: str | None
    bundles: list[Path]


def _restore_from_log(service: str, archive_dsn: str | None, sources: _LogSources) -> None:
    """`restore --from-log`: the service's settings from its environment; exit 1 unless all is back and verified."""
    from importlib import import_module  # noqa: PLC0415

    from deploy.mirroring import remote_topic  # noqa: PLC0415
    from runtime import checkpoint  # noqa: PLC0415
    from runtime import restore as restoring  # noqa: PLC0415
    from runtime.settings import settings_class  # noqa: PLC0415

    if service not in local_stack.SERVICES:
        console.print(f"[red]--service: one of {', '.join(local_stack.SERVICES)}[/red]")
        raise typer.Exit(2)
    try:
        copies = [restoring.LogCopy.parse(text) for text in sources.also]
        public_keys = [checkpoint.load_public_key(key) for key in sources.keys]
    except ValueError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    module = import_module(f"services.{service}.app")
    settings = settings_class(module)()
    if sources.parent is not None:
        mirrored = remote_topic(settings.deployment_id, sources.topic or settings.own_topic)
        copies.insert(0, restoring.LogCopy(bootstrap=sources.parent, topic=mirrored))
    bundles = [restoring.BundleCopy(name=str(path), data=path.read_bytes()) for path in sources.bundles]
    result, done = asyncio.run(
        restoring.restore_service(
            module.SPEC,
            settings,
            public_keys=public_keys,
            archive_dsn=archive_dsn,
            copies=copies,
            topic=sources.topic,
            bundles=bundles,
        )
    )
    for line in result.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if done is None:
        console.print(f"{service} must not serve: nothing was rebuilt nor rewound")
        raise typer.Exit(1)
    for name, messages in done.rebuilt.items():
        console.print(f"projection {service}.{name} rebuilt from {messages} events")
    for group, partitions in done.rewound.items():
        console.print(f"consumer group {group}: {partitions} partitions rewound (its watermarks skip the repeats)")


@app.command()
def topics(
    bootstrap: Annotated[str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers")],
    namespace: Annotated[str, typer.Option(envvar="TOPIC_NAMESPACE", help="Topic name prefix")] = "",
    partitions: Annotated[int, typer.Option(help="Partitions per topic")] = 3,
    replication: Annotated[int, typer.Option(help="Replication factor")] = 1,
    min_insync: Annotated[int, typer.Option(help="min.insync.replicas")] = 1,
) -> None:
    """Create missing topics and check existing ones (partitions, retention); exit 1 on a mismatch."""
    specs = platform_topics(
        namespace, partitions=partitions, replication_factor=replication, min_insync_replicas=min_insync
    )
    problems = asyncio.run(ensure_topics(bootstrap, specs))
    for problem in problems:
        console.print(f"[red]mismatch[/red] {problem.topic}: {problem.problem}")
    if problems:
        raise typer.Exit(1)
    console.print(f"{len(specs)} topics as specified")


if __name__ == "__main__":
    app()
