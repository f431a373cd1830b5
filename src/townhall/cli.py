"""The `townhall` command: serve, migrate, config, users.

Every failure a user can cause (a bad setting, an unreachable service, an unknown module) is
one line on stderr naming what to fix, and a non-zero exit; never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import typer

from townhall.config import ConfigError, Settings, load_settings
from townhall.platform.errors import DomainError
from townhall.platform.eventstore import Projections
from townhall.platform.eventstore.cli import projections_cli
from townhall.platform.heap import settle_heap
from townhall.platform.messaging import MessageBus
from townhall.platform.messaging.cli import dlq_app, run_relay
from townhall.platform.observability import configure_logging

app = typer.Typer(
    name="townhall",
    help="Townhall: the community platform backend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
app.add_typer(users_app, name="users")

T = TypeVar("T")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    settings = load_settings()
    if overrides:
        values = {k: v for k, v in overrides.items() if v is not None}
        settings = settings.model_copy(update=values)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _shared_bus(settings: Settings, what: str) -> None:
    """Refuse a process that only makes sense beside others on a broker: on the in-process bus
    its messages would reach no consumer, or it would wait for messages that never come."""
    if settings.bus_url.split(":", 1)[0] == "memory":
        fail(
            f"TOWNHALL_BUS_URL: {what} needs a bus shared between processes (redis://, "
            "amqp://, nats://); the in-process bus (memory://) lives in one process, where "
            "`townhall serve` runs the relay and every consumer group"
        )


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (it comes with uvicorn[standard]), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return None
    return uvloop.new_event_loop


def _run(coro: Coroutine[Any, Any, T], *, server: bool = False) -> T:
    """Run a command's coroutine; long-running processes (serve, workers, the relay) get the
    faster event loop."""
    try:
        with asyncio.Runner(loop_factory=_event_loop_factory() if server else None) as runner:
            return runner.run(coro)
    except ConfigError as exc:
        fail(str(exc))
    except DomainError as exc:
        fail(exc.detail)
    raise AssertionError("unreachable")


def _module_names(modules: str | None) -> list[str] | None:
    if not modules:
        return None
    return [name.strip() for name in modules.split(",") if name.strip()]


@app.command()
def serve(
    modules: Annotated[
        str | None, typer.Option(help="Comma-separated modules to run (default: all).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Overrides TOWNHALL_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides TOWNHALL_PORT.")] = None,
    migrate: Annotated[
        bool | None, typer.Option("--migrate/--no-migrate", help="Apply migrations on start.")
    ] = None,
    consumers: Annotated[
        bool,
        typer.Option(
            "--consumers/--no-consumers",
            help="Run the modules' consumer groups here (off when `townhall worker`s run them).",
        ),
    ] = True,
    relay: Annotated[
        bool,
        typer.Option(
            "--relay/--no-relay",
            help="Run the outbox relay here (off when `townhall relay` processes run it).",
        ),
    ] = True,
) -> None:
    """Run the HTTP edge and the selected modules in this process."""
    import uvicorn

    from townhall.bootstrap import assemble
    from townhall.listening import listen
    from townhall.platform.server import http_protocol

    settings = _settings(host=host, port=port)
    if not consumers:
        _shared_bus(settings, "`serve --no-consumers`")
    run_migrations = settings.migrate_on_start if migrate is None else migrate

    async def main() -> None:
        # Bound before anything starts: a port in use is one error, and "up" is true.
        sockets = listen(settings.host, settings.port)
        bound_port = int(sockets[0].getsockname()[1])  # the real one when TOWNHALL_PORT=0
        try:
            runtime = await assemble(
                settings, _module_names(modules), run_migrations=run_migrations
            )
            app = runtime.create_app(
                on_ready=lambda: _ready(settings, bound_port), consumers=consumers, relay=relay
            )
            config = uvicorn.Config(
                app,
                host=settings.host,
                port=bound_port,
                log_config=None,
                access_log=False,
                lifespan="on",
                server_header=False,
                http=http_protocol(),  # its own 400s are problem+json too
                # WebSocket heartbeats (chat): a socket that leaves pings unanswered closes.
                ws_ping_interval=settings.chat_ping_interval,
                ws_ping_timeout=settings.chat_ping_timeout,
            )
            server = uvicorn.Server(config)
            try:
                await server.serve(sockets=sockets)
            finally:
                if not server.started:
                    await runtime.stop()
        finally:
            for sock in sockets:
                sock.close()
        if not server.started:
            raise ConfigError("TOWNHALL_PORT", f"cannot listen on {settings.host}:{bound_port}")

    _run(main(), server=True)


async def _ready(settings: Settings, port: int) -> None:
    settle_heap()
    await _announce(settings, port)


async def _announce(settings: Settings, port: int) -> None:
    base = f"http://{_url_host(settings.host)}:{port}"
    typer.echo(f"Townhall is up at {base}", err=True)
    typer.echo(f"  API docs: {base}/docs", err=True)
    typer.echo(f"  health:   {base}/healthz  (ready: {base}/readyz)", err=True)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@app.command()
def migrate() -> None:
    """Apply every pending schema migration."""
    from townhall.bootstrap import migrate_database

    settings = _settings()
    _run(migrate_database(settings))
    typer.echo("migrations applied")


@app.command()
def config() -> None:
    """Print the effective settings (secrets masked) as JSON."""
    typer.echo(json.dumps(_settings().masked(), indent=2, default=str))


_CREATE_ADMIN_HELP = (
    "Make NAME an administrator, creating the user if needed.\n\n"
    "Administrator rights travel in the access token: a token NAME already holds keeps its old"
    " rights until it expires (TOWNHALL_ACCESS_TOKEN_TTL seconds). Sign in again, or refresh,"
    " for a token with the new rights."
)


@users_app.command("create-admin", help=_CREATE_ADMIN_HELP)
def create_admin(
    name: Annotated[str, typer.Argument(help="Username; created if it does not exist.")],
    password: Annotated[
        str | None,
        typer.Option(help="Password for a new user (prompted, or generated without a TTY)."),
    ] = None,
) -> None:
    """Make NAME an administrator (the help text is `_CREATE_ADMIN_HELP`)."""
    from townhall.bootstrap import assemble

    settings = _settings()
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("Password (new user only): ")
        else:
            password, generated = secrets.token_urlsafe(18), True

    from townhall.identity import IdentityFacade

    async def main() -> str:
        runtime = await assemble(settings, ["identity"])
        try:
            facade = runtime.platform.facade(IdentityFacade)
            existed = await facade.by_username(name) is not None
            user = await facade.create_admin(name, password)
            made = f"{user.username} ({user.id}) is an administrator"
            if not existed:
                return made + (f"; generated password: {password}" if generated else "")
            return (
                f"{made}. Access tokens issued to {user.username} before now keep their old"
                f" rights until they expire (at most {settings.access_token_ttl} s,"
                " TOWNHALL_ACCESS_TOKEN_TTL): sign in again or refresh to act as administrator"
                " now."
            )
        finally:
            await runtime.stop()

    typer.echo(_run(main()))


@app.command()
def worker(
    groups: Annotated[
        list[str],
        typer.Argument(
            help="Consumer groups or projections to run, e.g. notifications.email, "
            "orders.summaries."
        ),
    ],
) -> None:
    """Run the named consumer groups and projections in this process until SIGTERM (which
    drains)."""
    import signal

    from townhall.bootstrap import assemble

    settings = _settings()
    _shared_bus(settings, "`townhall worker`")

    async def main() -> None:
        runtime = await assemble(settings, custom_plans=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await runtime.start(relay=False, groups=groups)
            settle_heap()
            typer.echo(f"worker running {', '.join(groups)}", err=True)
            await stop.wait()
        finally:
            await runtime.stop()

    _run(main(), server=True)


@app.command()
def relay() -> None:
    """Relay the transactional outbox to the bus until SIGTERM (`serve` runs one too)."""
    from townhall.platform.db import Database

    settings = _settings()
    _shared_bus(settings, "`townhall relay`")
    database = Database(settings.database_url, custom_plans=True)
    _run(
        run_relay(database, lambda: _open_bus(settings), linger=settings.relay_linger),
        server=True,
    )


async def _open_bus(settings: Settings) -> MessageBus:
    from townhall.bootstrap import open_bus

    return await open_bus(settings)


app.add_typer(dlq_app(lambda: _open_bus(_settings())), name="dlq")


@asynccontextmanager
async def _projection_registry() -> AsyncIterator[Projections]:
    """Every module's projections, registered but not running (the CLI drives them)."""
    from townhall.bootstrap import assemble

    runtime = await assemble(_settings())
    try:
        yield runtime.platform.projections
    finally:
        await runtime.stop()


app.add_typer(projections_cli(_projection_registry), name="projections")


chat_app = typer.Typer(help="Chat's message-store shards.", no_args_is_help=True)
app.add_typer(chat_app, name="chat")


@chat_app.command("rebalance")
def chat_rebalance(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would move; move nothing.")
    ] = False,
    retire: Annotated[
        list[str] | None,
        typer.Option(
            "--retire",
            metavar="URL",
            help="A shard taken out of TOWNHALL_CHAT_SHARDS whose rooms move off it (repeatable).",
        ),
    ] = None,
) -> None:
    """Move the history of every room whose shard changed (TOWNHALL_CHAT_SHARDS) to the shard
    that owns it now, while chat keeps serving. Safe to run again after a stop."""
    from sqlalchemy.exc import SQLAlchemyError

    from townhall.chat.adapters.moves import ShardDirectory, SqlShardMover, check_database_url
    from townhall.chat.adapters.shards import DatabaseShards
    from townhall.chat.adapters.sql import SqlRooms
    from townhall.chat.rebalance import Rebalancer, UnknownShards
    from townhall.platform.db import Database

    settings = _settings()
    urls = [url.strip() for url in settings.chat_shards.split(",") if url.strip()]
    try:
        for url in urls:
            check_database_url(url, "TOWNHALL_CHAT_SHARDS")
        for url in retire or []:
            check_database_url(url, "--retire")
    except ValueError as exc:
        fail(str(exc))

    async def reachable(variable: str, name: str, database: Database) -> None:
        try:
            await database.ping()
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(variable, f"cannot reach {name}: {reason}") from None

    async def main() -> str:
        database = Database(settings.database_url)
        listed = DatabaseShards(database, urls)
        try:
            shards = ShardDirectory(listed, retire or [])
        except ValueError as exc:
            await listed.close()
            await database.dispose()
            raise ConfigError("--retire", str(exc).removeprefix("--retire: ")) from None
        try:
            await reachable("TOWNHALL_DATABASE_URL", listed.main_name, database)
            for name in shards.names:
                variable = "--retire" if name in shards.retired else "TOWNHALL_CHAT_SHARDS"
                await reachable(variable, name, shards.database(name))
            await shards.check_retired()
            await shards.create_tables()  # a new shard has none until chat starts on it
            rebalancer = Rebalancer(database, SqlRooms(), shards, SqlShardMover(), shards.names)
            report = await rebalancer.run(dry_run=dry_run)
        except (UnknownShards, LookupError) as exc:
            raise ConfigError("TOWNHALL_CHAT_SHARDS", str(exc)) from None
        except ValueError as exc:  # a retired shard without chat's tables
            raise ConfigError("--retire", str(exc)) from None
        except (SQLAlchemyError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            fail(f"chat rebalance stopped: {reason}; run it again to finish (it resumes)")
            raise AssertionError("unreachable") from None
        finally:
            await shards.close()
            await database.dispose()
        if dry_run:
            return (
                f"{report.examined} rooms examined; {report.moved} would move, "
                f"{report.copied} messages would be copied (dry run: nothing moved)"
            )
        return (
            f"{report.examined} rooms examined; {report.moved} moved, {report.copied} "
            f"messages copied, {report.removed} deleted from the shards their rooms left"
        )

    typer.echo(_run(main()))


def main() -> None:
    try:
        app()
    except ConfigError as exc:  # raised while parsing options, before a command runs
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
