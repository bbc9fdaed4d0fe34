"""fastchat.config and fastchat.cli: every setting a flag and an env var, checked before start.

The server is never started here: `fastchat.server.run` is replaced by a recorder, so a test
sees exactly the Settings the command would have run with.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import fastchat
from fastchat import config
from fastchat.cli import main
from fastchat.config import Settings
from tests.unit.limits import limits_with

# The variables shipped first (the original's HOST, PORT, DB_PATH among them): never renamed.
SHIPPED_ENV_VARS = {
    "HOST",
    "PORT",
    "WS_PORT",
    "DB_PATH",
    "SQLITE_SYNCHRONOUS",
    "PUBLIC_WS_URL",
    "MAX_FRAME_BYTES",
    "MAX_MESSAGE_CHARS",
    "OUTBOUND_HIGH_WATER",
    "LOG_LEVEL",
    "SEED_POSTS",
}
ROOT = Path(__file__).resolve().parents[2]
SERVE_OPTIONS = [p for p in main.commands["serve"].params if isinstance(p, click.Option)]
ENV_VARS = {o.envvar for o in SERVE_OPTIONS if o.envvar}
# None unsets the variable for the run, so the caller's environment cannot leak in.
CLEAN_ENV: dict[str, str | None] = dict.fromkeys(ENV_VARS)


class Recorder:
    def __init__(self, status: int = 0) -> None:
        self.status = status
        self.settings: list[Settings] = []

    def __call__(self, settings: Settings) -> int:
        self.settings.append(settings)
        return self.status


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    import fastchat.server

    monkeypatch.setattr(fastchat.server, "run", recorder)
    return recorder


def invoke(*args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env={**CLEAN_ENV, **env}, prog_name="fastchat")


def one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- Settings


def test_settings_defaults_match_the_documented_ones() -> None:
    s = Settings()
    assert (s.host, s.port, s.ws_port, s.db_path) == ("0.0.0.0", 8080, 8081, "./chat.db")
    assert s.synchronous == "NORMAL" and s.log_level == "info" and s.seed_posts is True
    assert s.limits == limits_with(max_frame_bytes=64 * 1024, max_message_chars=4000)


def test_settings_limits_follow_the_settings() -> None:
    s = Settings(max_frame_bytes=1000, max_message_chars=10)
    assert s.limits == limits_with(max_frame_bytes=1000, max_message_chars=10)


def test_settings_carry_the_rate_limit_into_the_protocol_limits() -> None:
    limits = Settings(rate_limit=5.0, rate_burst=20.0, max_rooms_per_connection=3).limits
    assert (limits.rate, limits.burst, limits.max_rooms) == (5.0, 20.0, 3)


def test_allowed_origins_are_normalised() -> None:
    s = Settings(allowed_origins=" https://Chat.Example.com/ ,http://localhost:3000,, ")
    assert s.origins == frozenset({"https://chat.example.com", "http://localhost:3000"})
    assert Settings().origins == frozenset()
    assert Settings(allowed_origins="*").origins == frozenset({"*"})


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().port = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- version, help


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = invoke(flag)
    assert result.exit_code == 0
    assert result.output == f"fastchat, version {fastchat.__version__}\n"


def test_version_matches_the_installed_package() -> None:
    from importlib.metadata import version

    assert fastchat.__version__ == version("fastchat-server")


def test_python_dash_m_fastchat_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fastchat", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert fastchat.__version__ in out.stdout


def test_help_lists_the_serve_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "serve" in result.output
    assert invoke("-h").output == result.output


def test_serve_help_lists_every_option_with_its_env_var_and_default() -> None:
    result = invoke("serve", "--help")
    assert result.exit_code == 0
    text = one_line(result.output)
    assert SHIPPED_ENV_VARS <= ENV_VARS
    for option in SERVE_OPTIONS:
        if option.name == "help":
            continue
        assert option.envvar, f"{option.opts[0]} has no environment variable"
        assert option.opts[0] in text
        assert f"env var: {option.envvar}" in text, f"{option.envvar} is not in --help"
    for default in ("default: 8080", "default: 8081", "default: ./chat.db", "default: 65536"):
        assert default in text


def test_cli_defaults_are_the_settings_defaults() -> None:
    defaults = Settings()
    for option in SERVE_OPTIONS:
        if option.name == "help" or not hasattr(defaults, option.name or ""):
            continue
        value = getattr(defaults, option.name)
        default = option.default
        if isinstance(value, str) and isinstance(default, str):
            value, default = value.lower(), default.lower()
        assert default == value, f"{option.opts[0]}: CLI default {default!r}, Settings {value!r}"


def test_an_unknown_command_or_option_is_a_usage_error() -> None:
    result = invoke("serv")
    assert result.exit_code == 2
    assert "No such command 'serv'" in result.output
    result = invoke("serve", "--prot", "80")
    assert result.exit_code == 2
    assert "No such option" in result.output and "--prot" in result.output
    assert "--port" in result.output  # the likely typo is suggested


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["--port", "70000"],
            {},
            r"Invalid value for '--port'.*70000 is not in the range 0<=x<=65535",
        ),
        (["--port", "-1"], {}, r"'--port'.*-1 is not in the range"),
        (["--port", "http"], {}, r"'--port'.*'http' is not a valid integer"),
        ([], {"PORT": "abc"}, r"'--port' \(env var: 'PORT'\): 'abc' is not a valid integer"),
        ([], {"WS_PORT": "65536"}, r"'--ws-port' \(env var: 'WS_PORT'\).*not in the range"),
        (["--synchronous", "nope"], {}, r"'--synchronous'.*'nope' is not one of"),
        (
            [],
            {"SQLITE_SYNCHRONOUS": "fast"},
            r"env var: 'SQLITE_SYNCHRONOUS'.*'fast' is not one of",
        ),
        (["--log-level", "verbose"], {}, r"'--log-level'.*'verbose' is not one of"),
        ([], {"SEED_POSTS": "maybe"}, r"env var: 'SEED_POSTS'.*'maybe' is not a valid boolean"),
        (["--max-frame-bytes", "10"], {}, r"'--max-frame-bytes'.*10 is not in the range 256<=x"),
        (["--max-message-chars", "0"], {}, r"'--max-message-chars'.*0 is not in the range"),
        (["--outbound-high-water", "1"], {}, r"'--outbound-high-water'.*not in the range"),
        ([], {"RATE_LIMIT": "fast"}, r"env var: 'RATE_LIMIT'.*'fast' is not a valid float"),
        (["--rate-limit", "-1"], {}, r"'--rate-limit'.*-1.* is not in the range"),
        (["--ping-interval", "0"], {}, r"'--ping-interval'.*not in the range"),
        (["--max-connections", "0"], {}, r"'--max-connections'.*0 is not in the range"),
        (["--port", "9000", "--ws-port", "9000"], {}, r"--ws-port.*PORT and WS_PORT must differ"),
        ([], {"PORT": "9000", "WS_PORT": "9000"}, r"PORT and WS_PORT must differ"),
    ],
)
def test_bad_values_exit_2_with_a_clear_message(
    run: Recorder, args: list[str], env: dict[str, str], expected: str
) -> None:
    result = invoke("serve", *args, **env)
    assert result.exit_code == 2, result.output
    assert re.search(expected, one_line(result.output)), result.output
    assert "Error:" in result.output
    assert "Traceback" not in result.output
    assert run.settings == []  # refused before anything started


# --------------------------------------------------------------------------- extras


@pytest.mark.parametrize(
    ("name", "env", "url", "extra"),
    [
        ("broker_url", "BROKER_URL", "redis://127.0.0.1:6379/0", "redis"),
        ("database_url", "DATABASE_URL", "postgresql://u@127.0.0.1/db", "postgres"),
    ],
)
def test_a_setting_whose_extra_is_missing_names_it_and_exits_2(
    run: Recorder, monkeypatch: pytest.MonkeyPatch, name: str, env: str, url: str, extra: str
) -> None:
    """Without the extra's modules (a name no installed module has stands in for them here;
    tests/integration/test_wheel.py runs a real install without extras)."""
    monkeypatch.setitem(config.EXTRAS, name, (extra, ("fastchat_no_such_module",)))
    result = CliRunner().invoke(main, ["serve"], env={**CLEAN_ENV, env: url}, prog_name="fastchat")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"fastchat: {env} needs the {extra} extra: pip install 'fastchat-server[{extra}]'\n"
    )
    assert run.settings == []  # refused before anything started


def test_the_extras_are_the_ones_pyproject_declares() -> None:
    """Each setting's extra exists, names the modules' distributions, and is in `all`."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = pyproject["optional-dependencies"]
    (everything,) = extras["all"]
    assert everything.startswith("fastchat-server[")
    in_all = set(everything.partition("[")[2].rstrip("]").split(","))
    for name, (extra, modules) in config.EXTRAS.items():
        assert name in Settings.__struct_fields__
        assert extra in extras and extra in in_all, extra
        requirements = " ".join(extras[extra])
        assert all(m.split("_")[0] in requirements for m in modules), (extra, modules)
        # The suite's venv has every extra: the check passes there.
        assert Settings(**{name: "x"}).missing_extra() is None
    assert config.env_var("broker_url") == "BROKER_URL"
    assert Settings().missing_extra() is None


# --------------------------------------------------------------------------- good values


def test_defaults_reach_the_server(run: Recorder) -> None:
    result = invoke("serve")
    assert result.exit_code == 0, result.output
    assert run.settings == [Settings()]


def test_flags_reach_the_server(run: Recorder) -> None:
    result = invoke(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
        "--ws-port",
        "9001",
        "--db-path",
        "/tmp/x.db",
        "--synchronous",
        "full",
        "--public-ws-url",
        "wss://chat.example.com/ws",
        "--max-frame-bytes",
        "4096",
        "--max-message-chars",
        "500",
        "--outbound-high-water",
        "65536",
        "--log-level",
        "DEBUG",
        "--no-seed-posts",
    )
    assert result.exit_code == 0, result.output
    assert run.settings == [
        Settings(
            host="127.0.0.1",
            port=9000,
            ws_port=9001,
            db_path="/tmp/x.db",
            synchronous="FULL",
            public_ws_url="wss://chat.example.com/ws",
            max_frame_bytes=4096,
            max_message_chars=500,
            outbound_high_water=65536,
            log_level="debug",
            seed_posts=False,
        )
    ]


def test_env_vars_reach_the_server(run: Recorder) -> None:
    result = invoke(
        "serve",
        HOST="::1",
        PORT="7000",
        WS_PORT="7001",
        DB_PATH="data/chat.db",
        SQLITE_SYNCHRONOUS="extra",
        MAX_MESSAGE_CHARS="100",
        LOG_LEVEL="Warning",
        SEED_POSTS="false",
    )
    assert result.exit_code == 0, result.output
    (s,) = run.settings
    assert (s.host, s.port, s.ws_port, s.db_path) == ("::1", 7000, 7001, "data/chat.db")
    assert (s.synchronous, s.log_level, s.seed_posts) == ("EXTRA", "warning", False)
    assert s.limits.max_message_chars == 100


def test_a_flag_beats_its_env_var(run: Recorder) -> None:
    result = invoke("serve", "--port", "9100", PORT="9200")
    assert result.exit_code == 0, result.output
    assert run.settings[0].port == 9100


def test_port_zero_on_both_picks_free_ports(run: Recorder) -> None:
    # Port 0 asks the OS for a free port, so "both 0" is not a clash.
    result = invoke("serve", "--port", "0", "--ws-port", "0")
    assert result.exit_code == 0, result.output
    assert (run.settings[0].port, run.settings[0].ws_port) == (0, 0)


def test_the_servers_exit_status_is_the_commands(run: Recorder) -> None:
    run.status = 3
    result = invoke("serve")
    assert result.exit_code == 3


def test_the_readme_table_lists_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for option in SERVE_OPTIONS:
        if option.envvar and option.envvar != "RELOAD":
            assert f"`{option.envvar}`" in readme, f"{option.envvar} is not in README.md"


def test_every_setting_has_a_flag_and_a_variable(run: Recorder) -> None:
    assert set(Settings.__struct_fields__) <= {o.name for o in SERVE_OPTIONS}
    result = invoke("serve", "--history-limit-max", "5", SHUTDOWN_TIMEOUT="2.5")
    assert result.exit_code == 0, result.output
    assert run.settings == [Settings(history_limit_max=5, shutdown_timeout=2.5)]
