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
