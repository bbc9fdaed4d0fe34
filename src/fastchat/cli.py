"""The `fastchat` command (also `python -m fastchat`).

Every setting is a flag and an environment variable (click's `envvar`), validated before the
server starts: a bad value is a clear message and exit status 2, and so is a setting whose
optional extra is not installed (a configuration the command cannot run, like a bad value).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
import msgspec

from fastchat import DISTRIBUTION, __version__
from fastchat.config import Settings

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=_CTX)
@click.version_option(__version__, "-V", "--version", prog_name="fastchat")
def main() -> None:
    """fastchat: real-time chat and live comments."""


def _option(field: msgspec.inspect.Field) -> Callable[[Any], Any]:
    """The click option of one setting, from its declaration in config.py."""
    meta = field.type
    assert isinstance(meta, msgspec.inspect.Metadata) and meta.extra, field.name
    kind = meta.type
    flag = "--" + field.name.replace("_", "-")
    extra: dict[str, Any] = {}
    if isinstance(kind, msgspec.inspect.BoolType):
        flag = f"{flag}/--no-{flag[2:]}"
    elif isinstance(kind, msgspec.inspect.LiteralType):
        extra["type"] = click.Choice([str(v) for v in kind.values], case_sensitive=False)
    elif isinstance(kind, msgspec.inspect.IntType):
        extra["type"] = click.IntRange(kind.ge, kind.le)
    elif isinstance(kind, msgspec.inspect.FloatType):
        extra["type"] = click.FloatRange(kind.ge, kind.le)
    return click.option(
        flag,
        field.name,
        envvar=meta.extra["env"],
        default=field.default,
        show_default=field.default != "" and field.default is not False,
        show_envvar=True,
        help=meta.extra["help"],
        **extra,
    )


def _setting_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Every setting of config.Settings as an option of `command`, in declaration order."""
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in reversed(info.fields):
        command = _option(field)(command)
    return command


@main.command(context_settings=_CTX)
@_setting_options
@click.option(
    "--reload",
    envvar="RELOAD",
    is_flag=True,
    default=False,
    show_envvar=True,
    help="Development: restart when sources, templates or static files change.",
)
def serve(**options: Any) -> None:
    """Run the server: pages and REST on PORT, WebSockets on WS_PORT and PORT."""
    if options.pop("reload"):
        from fastchat import devreload

        args = sys.argv[sys.argv.index("serve") + 1 :] if "serve" in sys.argv else []
        argv = [a for a in args if a != "--reload"]
        sys.exit(devreload.run(argv))
    settings = Settings(**options)
    problem = settings.problem()
    if problem is not None:
        name, message = problem
        raise click.BadParameter(message, param_hint="--" + name.replace("_", "-"))
    missing = settings.missing_extra()
    if missing is not None:
        variable, extra = missing
        click.echo(
            f"fastchat: {variable} needs the {extra} extra: pip install '{DISTRIBUTION}[{extra}]'",
            err=True,
        )
        sys.exit(2)

    from fastchat.server import run  # imported late: `--help` stays fast

    sys.exit(run(settings))


@main.command(context_settings=_CTX)
@click.option(
    "--db-path",
    envvar="DB_PATH",
    default="./chat.db",
    show_default=True,
    show_envvar=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The live database to copy.",
)
@click.argument("dest", type=click.Path(dir_okay=False))
def backup(db_path: str, dest: str) -> None:
    """Copy the database to DEST while the server keeps running (SQLite online backup)."""
    from fastchat.backup import backup as run_backup

    pages = run_backup(db_path, dest)
    click.echo(f"backed up {db_path} to {dest} ({pages} pages)")


# -- clients: `send` and `tail`, on fastchat.client ----------------------------------------------

_URL_OPTION = click.option(
    "--url",
    envvar="FASTCHAT_URL",
    default="ws://localhost:8080/ws",
    show_default=True,
    show_envvar=True,
    help="The server's WebSocket URL (either port).",
)
_USER_OPTION = click.option(
    "--user", default="anonymous", show_default=True, help="The name to send or join as."
)


def _run_client(work: Any, url: str) -> Any:
    """Run a client command; a refusal or an unreachable server is a message and exit 1."""
    import asyncio

    from fastchat.client import FastchatError

    try:
        return asyncio.run(work)
    except FastchatError as exc:
        click.echo(f"fastchat: {exc.code}: {exc.message}", err=True)
    except (OSError, TimeoutError) as exc:
        click.echo(f"fastchat: cannot reach {url}: {exc or type(exc).__name__}", err=True)
    sys.exit(1)


@main.command(context_settings=_CTX)
@click.argument("room")
@click.argument("message")
@_USER_OPTION
@_URL_OPTION
def send(room: str, message: str, user: str, url: str) -> None:
    """Send MESSAGE to ROOM; print the stored message's id and timestamp. A refusal exits 1
    with the server's error code and message."""
    from fastchat.client import connect

    async def go() -> tuple[int, str]:
        async with connect(url, user=user) as chat:
            await chat.join(room)
            stored = await chat.send(room, message)
            return stored.id, stored.timestamp

    msg_id, timestamp = _run_client(go(), url)
    click.echo(f"{msg_id} {timestamp}")


@main.command(context_settings=_CTX)
@click.argument("room")
@_USER_OPTION
@_URL_OPTION
@click.option(
    "--last-id",
    type=click.IntRange(0),
    default=None,
    help="First print the stored messages after this id.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each event as its JSON line.")
def tail(room: str, user: str, url: str, last_id: int | None, as_json: bool) -> None:
    """Print ROOM's messages as they come (`HH:MM:SS user: text`), reconnecting and resuming
    from the last one seen; Ctrl-C ends it."""
    import asyncio
    import contextlib
    import signal

    from fastchat.client import connect
    from fastchat.events import MessageEvent, encode

    async def go() -> None:
        async with connect(url, user=user) as chat:
            await chat.join(room, last_id=last_id)
            async for event in chat:
                if not isinstance(event, MessageEvent) or event.room != room:
                    continue
                if as_json:
                    line = encode(event).decode()
                else:
                    line = f"{event.timestamp[11:19]} {event.user}: {event.message}"
                click.echo(line)

    async def main_task() -> None:
        task = asyncio.ensure_future(go())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    _run_client(main_task(), url)
