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
    if settings.auth_public_key:
        from fastchat.auth import public_key

        try:
            public_key(settings.auth_public_key)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--auth-public-key") from None

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
    "--user",
    default=None,
    help="The name to send or join as (default: the token's name with --token, else anonymous).",
)
_TOKEN_OPTION = click.option(
    "--token",
    envvar="FASTCHAT_TOKEN",
    default=None,
    show_envvar=True,
    help="A token for a server with AUTH_SECRET (`fastchat token`); the name is then its.",
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
@_TOKEN_OPTION
def send(room: str, message: str, user: str | None, url: str, token: str | None) -> None:
    """Send MESSAGE to ROOM; print the stored message's id and timestamp. A refusal exits 1
    with the server's error code and message."""
    from fastchat.client import connect

    async def go() -> tuple[int, str]:
        async with connect(url, user=user, token=token) as chat:
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
@_TOKEN_OPTION
def tail(
    room: str,
    user: str | None,
    url: str,
    last_id: int | None,
    as_json: bool,
    token: str | None,
) -> None:
    """Print ROOM's messages as they come (`HH:MM:SS user: text`), reconnecting and resuming
    from the last one seen; Ctrl-C ends it."""
    import asyncio
    import contextlib
    import signal

    from fastchat.client import connect
    from fastchat.events import MessageEvent, encode

    async def go() -> None:
        async with connect(url, user=user, token=token) as chat:
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


# -- tokens --------------------------------------------------------------------------------------

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _ttl(value: str) -> float:
    """`90`, `90s`, `15m`, `1h`, `7d`: seconds."""
    unit = _TTL_UNITS.get(value[-1:].lower())
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a duration like 90s, 15m, 1h or 7d") from None
    if seconds <= 0:
        raise click.BadParameter("the time to live must be positive")
    return seconds


@main.command(context_settings=_CTX)
@click.option("--sub", required=True, help="The user's id (the token's `sub`).")
@click.option("--name", default=None, help="The name shown (default: the sub).")
@click.option("--ttl", default="1h", show_default=True, help="Time to live: 90s, 15m, 1h, 7d.")
@click.option("--role", "roles", multiple=True, help="moderator or admin (repeatable).")
@click.option("--rooms", default=None, help="Comma-separated patterns the user may join.")
@click.option("--publish", default=None, help="Comma-separated patterns the user may post in.")
@click.option("--audience", envvar="AUTH_AUDIENCE", default="", show_envvar=True)
@click.option("--issuer", envvar="AUTH_ISSUER", default="", show_envvar=True)
@click.option(
    "--secret",
    envvar="AUTH_SECRET",
    default="",
    show_envvar=True,
    help="Sign HS256 with this secret (the server's AUTH_SECRET).",
)
@click.option(
    "--private-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Sign RS256 / ES256 with this PEM private key instead (its public key is the "
    "server's AUTH_PUBLIC_KEY).",
)
def token(
    sub: str,
    name: str | None,
    ttl: str,
    roles: tuple[str, ...],
    rooms: str | None,
    publish: str | None,
    audience: str,
    issuer: str,
    secret: str,
    private_key: str | None,
) -> None:
    """Print a token for SUB signed with the server's secret: for tests, scripts and small
    setups (a site's backend mints its own: README, "Authentication")."""
    from fastchat.auth import mint, patterns

    for role in roles:
        if role not in ("moderator", "admin"):
            raise click.BadParameter(f"{role!r}: moderator or admin", param_hint="--role")
    key: Any = secret
    algorithm = "HS256"
    if private_key is not None:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        with open(private_key, "rb") as f:
            key = load_pem_private_key(f.read(), password=None)
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise click.BadParameter("an RSA or EC P-256 key is needed", param_hint="--private-key")
    elif not secret:
        raise click.BadParameter("set AUTH_SECRET (or --secret), or --private-key")
    click.echo(
        mint(
            key,
            sub=sub,
            name=name,
            ttl=_ttl(ttl),
            roles=roles,
            rooms=None if rooms is None else patterns(rooms),
            publish=None if publish is None else patterns(publish),
            audience=audience or None,
            issuer=issuer or None,
            algorithm=algorithm,
        )
    )
