"""The shipped artefact, end to end: the wheel the Dockerfile builds, installed into a fresh
virtual environment outside the source tree, running the Dockerfile's own CMD.

There is no Docker engine on these machines, so this test stands in for `docker build` and
`docker run`: it copies the build context through `.dockerignore`, builds the wheel with the
build stage's `pip wheel` command, installs it the way the runtime stage does (`pip install
<wheel>`, no extras), and starts the image's CMD with the image's ENV (ports and database moved
into the test's temp dir). The wheel's and the sdist's metadata and LICENSE are read here too.
The cheap tests at the bottom parse the Dockerfile and `.dockerignore` so they cannot drift
from it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import Parser
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import TIMEOUT, ServerProcess, free_port, start_server

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

# The build stage's wheel command, word for word (checked against the Dockerfile below).
PIP_WHEEL = ["pip", "wheel", "--no-deps", "-w", "/dist", "."]
RUNTIME_ENV = {
    "DB_PATH": "/data/chat.db",
    "HOST": "0.0.0.0",
    "PORT": "8080",
    "WS_PORT": "8081",
    # A production database gets no sample posts unless asked for.
    "SEED_POSTS": "false",
}
# The distribution (`fastchat` on PyPI is someone else's); its file names use `_`.
DISTRIBUTION = "fastchat-server"
FILE_PREFIX = "fastchat_server-"


# ---------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions grouped by stage: comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending):
            continue  # Docker drops comment and empty lines, even inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if pending or line:
            logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends in a line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, f"unreadable FROM: {line}"
            stages.append(Stage(m[1], m[2]))
        else:
            assert stages, f"instruction before the first FROM: {line}"
            stages[-1].instructions.append((keyword, rest))
    return stages


def exec_form(arg: str) -> list[str]:
    value = json.loads(arg)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arg
    return value


def env_pairs(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for arg in stage.args("ENV"):
        for word in shlex.split(arg):
            key, sep, value = word.partition("=")
            assert sep, f"use the ENV key=value form: {arg}"
            env[key] = value
    return env


def healthcheck_cmd(stage: Stage) -> list[str]:
    (arg,) = stage.args("HEALTHCHECK")
    m = re.fullmatch(r"(?:--[a-z-]+=\S+\s+)*CMD\s+(\[.*\])", arg)
    assert m, f"HEALTHCHECK must be options then CMD in exec form: {arg}"
    return exec_form(m[1])


def image_cmd(stage: Stage) -> list[str]:
    cmds = stage.args("CMD")
    assert cmds, "the runtime stage has no CMD"
    return exec_form(cmds[-1])


def stages() -> tuple[Stage, Stage]:
    parsed = parse_dockerfile(DOCKERFILE.read_text())
    assert len(parsed) == 2, f"expected a build stage and a runtime stage, got {len(parsed)}"
    return parsed[0], parsed[1]


# ---------------------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex on a relative path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out, i = out + f"[{body}]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last matching pattern wins; a path under an excluded directory is
    excluded too (exceptions inside an excluded directory are not supported here)."""
    parts = rel.split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        verdict = False
        for negate, regex in rules:
            if regex.match(prefix):
                verdict = not negate
        if verdict:
            return True
    return False


def copy_build_context(dest: Path) -> Path:
    """What `docker build .` would send: the repository through `.dockerignore`."""
    rules = dockerignore_rules()
    for dirpath, dirnames, filenames in os.walk(REPO):
        rel_dir = Path(dirpath).relative_to(REPO)
        keep = []
        for d in sorted(dirnames):
            rel = (rel_dir / d).as_posix()
            if not ignored(rel, rules):
                keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            rel = (rel_dir / f).as_posix()
            if not ignored(rel, rules):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(dirpath) / f, target)
    return dest


# ---------------------------------------------------------------------------- the artefact


def clean_env(venv: Path) -> dict[str, str]:
    """The environment with nothing pointing back at the source tree or the dev venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE")
    }
    env["PATH"] = os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT * 30
    )
    assert proc.returncode == 0, (
        f"{shlex.join(argv)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


@dataclass
class Installed:
    venv: Path
    context: Path  # the build context the wheel was built from
    wheel: Path
    workdir: Path  # outside the repository: where commands run

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        return clean_env(self.venv)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    assert REPO not in root.parents, "the temp dir must lie outside the source tree"
    context = copy_build_context(root / "context")
    wheelhouse = root / "dist"
    # The build stage's command, with /dist moved into the temp dir; build isolation fetches
    # the pinned build requirements just as `docker build` does.
    argv = [sys.executable, "-m", *PIP_WHEEL[:3], "-w", str(wheelhouse), "."]
    run([*argv, "-q", "--disable-pip-version-check"], cwd=context)
    (wheel,) = wheelhouse.glob(f"{FILE_PREFIX}*.whl")

    venv = root / "venv"
    # `sys.executable` may itself be a venv's; `venv` bases the new one on the real interpreter.
    run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    workdir = root / "run"
    workdir.mkdir()
    inst = Installed(venv, context, wheel, workdir)
    run(
        [str(inst.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        cwd=workdir,
        env=inst.env(),
    )
    return inst


def start_installed(inst: Installed, argv: list[str], env: dict[str, str]) -> ServerProcess:
    """Start the installed server as the image would; wait for its ready line and health."""
    return start_server(
        Path(env["DB_PATH"]),
        port=int(env["PORT"]),
        ws_port=int(env["WS_PORT"]),
        command=argv,
        cwd=inst.workdir,
        base_env=env,
        env={"LOG_LEVEL": env.get("LOG_LEVEL", "info")},
    )


@pytest.fixture
def image_server(installed: Installed) -> Iterator[ServerProcess]:
    """The image's CMD with the image's ENV, bound to loopback on free ports."""
    _, runtime = stages()
    cmd = image_cmd(runtime)
    env = {
        **installed.env(),
        **env_pairs(runtime),
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "WS_PORT": str(free_port()),
        "DB_PATH": str(installed.workdir / "chat.db"),
    }
    server = start_installed(installed, [str(installed.venv / "bin" / cmd[0]), *cmd[1:]], env)
    yield server
    server.kill()


def test_installed_package_is_the_wheel(installed: Installed) -> None:
    """`import fastchat` in the new venv is the wheel's copy, with the compiled hub and the
    assets inside the package, and nothing from the source tree."""
    probe = (
        "import json, sys, fastchat, fastchat._hub\n"
        "from fastchat.app import asset_dir\n"
        "print(json.dumps({'file': fastchat.__file__, 'hub': fastchat._hub.__file__,"
        " 'templates': str(asset_dir('templates')), 'static': str(asset_dir('static')),"
        " 'path': sys.path, 'prefix': sys.prefix}))"
    )
    info = json.loads(
        run([str(installed.python), "-c", probe], cwd=installed.workdir, env=installed.env())
    )
    package = Path(info["file"]).parent
    assert Path(info["prefix"]) == installed.venv
    assert installed.venv in package.parents, info["file"]
    assert package.parent.name == "site-packages"
    for p in [info["file"], info["hub"], info["templates"], info["static"], *info["path"]]:
        assert not Path(p).is_relative_to(REPO), f"{p} points into the source tree"
    hubs = list(package.glob("_hub*.so"))
    assert hubs and Path(info["hub"]) == hubs[0], (hubs, info["hub"])
    assert Path(info["templates"]) == package / "templates"
    assert Path(info["static"]) == package / "static"
    for name in (
        "py.typed",
        "_hub.pyi",
        "_hub.pxd",
        "templates/index.html",
        "templates/chat.html",
        "static/css/app.css",
    ):
        assert (package / name).is_file(), f"{name} missing from the installed package"
    assert not list(package.glob("_hub.pyx")), "the wheel need not carry the Cython source"
    # Shipped without debug information (setup.py): DWARF sections are named .debug_*.
    assert b".debug_info" not in hubs[0].read_bytes(), "the hub .so carries debug information"
    version = run(
        [str(installed.venv / "bin" / "fastchat"), "--version"],
        cwd=installed.workdir,
        env=installed.env(),
    )
    assert "fastchat" in version


def _until(ws: ClientConnection, type_: str) -> dict[str, Any]:
    """The next event of `type_` (presence and other events in between are skipped)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        event: dict[str, Any] = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if event["type"] == type_:
            return event


def test_image_entry_point_serves_pages_rest_websocket_and_stops(
    installed: Installed, image_server: ServerProcess
) -> None:
    with httpx.Client(base_url=image_server.http, timeout=TIMEOUT) as http:
        for path in ("/", "/chat"):
            r = http.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:500])
            assert r.headers["content-type"].startswith("text/html")
            assert "<html" in r.text and "/static/css/app.css" in r.text
        r = http.get("/static/css/app.css")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
        assert r.content == (installed.context / "static/css/app.css").read_bytes()

        r = http.get("/api/v1/test/message", params={"room": "w", "message": "hi", "user": "u"})
        assert r.status_code == 200, r.text
        stored = r.json()["message"]
        assert (stored["room"], stored["user"], stored["message"]) == ("w", "u", "hi")
        assert type(stored["id"]) is int

    with connect(image_server.ws_fast, open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"type": "JOIN_ROOM", "room": "w", "user": "u"}))
        assert _until(ws, "ROOM_JOINED")["room"] == "w"
        ws.send(json.dumps({"type": "CHAT_MESSAGE", "room": "w", "user": "u", "message": "hello"}))
        echoed = _until(ws, "CHAT_MESSAGE")
        assert (echoed["room"], echoed["user"], echoed["message"]) == ("w", "u", "hello")
        assert type(echoed["id"]) is int and echoed["id"] > stored["id"]

    # The original's URL on PORT: the same room, the same store.
    with connect(image_server.ws_http, open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"type": "JOIN_ROOM", "room": "w", "user": "v"}))
        assert _until(ws, "ROOM_JOINED")["room"] == "w"
        ws.send(json.dumps({"type": "CHAT_MESSAGE", "room": "w", "user": "v", "message": "hey"}))
        again = _until(ws, "CHAT_MESSAGE")
        assert (again["user"], again["message"]) == ("v", "hey")
        assert again["id"] > echoed["id"]

    # SEED_POSTS=false in the image: a new database has no sample posts.
    r = httpx.get(f"{image_server.http}/api/v1/posts", timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json()["posts"] == [], r.text

    # The Dockerfile's HEALTHCHECK, run by the installed interpreter: 0 when healthy,
    # non-zero when nothing answers on PORT.
    cmd = healthcheck_cmd(stages()[1])
    argv = [str(installed.venv / "bin" / cmd[0]), *cmd[1:]]
    ok = subprocess.run(
        argv,
        env=image_server.env,
        cwd=installed.workdir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(
        argv,
        env={**image_server.env, "PORT": str(free_port())},
        cwd=installed.workdir,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert down.returncode != 0

    # `docker stop` sends SIGTERM: the server drains and exits 0.
    assert image_server.stop(signal.SIGTERM) == 0, image_server.log()


# ---------------------------------------------------------------------------- no extras


def test_the_wheel_alone_installs_no_extra(installed: Installed) -> None:
    """`pip install <wheel>` brings what serving needs and not the optional drivers."""
    names = json.loads(
        run(
            [str(installed.python), "-m", "pip", "list", "--format=json"],
            cwd=installed.workdir,
            env=installed.env(),
        )
    )
    have = {d["name"].lower().replace("_", "-") for d in names}
    assert DISTRIBUTION in have
    for absent in ("redis", "psycopg", "psycopg-binary", "psycopg-pool"):
        assert absent not in have, f"{absent} came with the wheel alone"
    for present in ("picows", "granian", "litestar", "apsw", "msgspec", "uvloop"):
        assert present in have, f"{present} is missing: the server cannot start"


@pytest.mark.parametrize(
    ("variable", "url", "extra"),
    [
        ("BROKER_URL", "redis://127.0.0.1:6379/0", "redis"),
        ("DATABASE_URL", "postgresql://fastchat@127.0.0.1:5432/fastchat", "postgres"),
    ],
)
def test_a_setting_that_needs_a_missing_extra_names_it(
    installed: Installed, variable: str, url: str, extra: str
) -> None:
    env = {
        **installed.env(),
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "WS_PORT": str(free_port()),
        "DB_PATH": str(installed.workdir / f"extra-{extra}.db"),
        variable: url,
    }
    proc = subprocess.run(
        [str(installed.venv / "bin" / "fastchat"), "serve"],
        cwd=installed.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 3,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr == (
        f"fastchat: {variable} needs the {extra} extra: pip install '{DISTRIBUTION}[{extra}]'\n"
    )
    assert not (installed.workdir / f"extra-{extra}.db").exists(), "it started before stopping"


# ---------------------------------------------------------------------------- metadata


def wheel_metadata(wheel: Path) -> tuple[Message, list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(zf.read(meta).decode()), names


def test_wheel_metadata(installed: Installed) -> None:
    meta, names = wheel_metadata(installed.wheel)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert meta["Name"] == DISTRIBUTION == project["name"]
    assert meta["Version"] == project["version"]
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Summary"] and meta["Description-Content-Type"] == "text/markdown"

    classifiers = set(meta.get_all("Classifier") or [])
    for minor in (11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert "Framework :: AsyncIO" in classifiers

    assert set(meta.get_all("Provides-Extra") or []) >= {"redis", "postgres", "all"}
    requires = meta.get_all("Requires-Dist") or []
    core = [r for r in requires if "extra ==" not in r]
    for driver in ("redis", "psycopg"):
        assert not [r for r in core if r.startswith(driver)], f"{driver} is a core dependency"
    flat = [r.replace(" ", "") for r in requires]
    assert any(r.startswith("redis") and r.endswith('extra=="redis"') for r in flat), requires
    assert any(r.startswith("psycopg[") and r.endswith('extra=="postgres"') for r in flat)
    assert any(
        r.startswith(f"{DISTRIBUTION}[postgres,redis]") and r.endswith('extra=="all"') for r in flat
    ), requires

    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "the fastchat authors" in license_text
    (licensed,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    with zipfile.ZipFile(installed.wheel) as zf:
        assert zf.read(licensed).decode() == license_text


def test_sdist_carries_the_license_and_rebuilds_the_hub(
    installed: Installed, tmp_path: Path
) -> None:
    run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), "."],
        cwd=installed.context,
    )
    (sdist,) = tmp_path.glob(f"{FILE_PREFIX}*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
        top = tf.getnames()[0].split("/")[0]
        pkg_info = tf.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        meta = Parser().parsestr(pkg_info.read().decode())
    assert meta["Name"] == DISTRIBUTION and meta["License-Expression"] == "MIT"
    assert "LICENSE" in names
    for needed in ("setup.py", "pyproject.toml", "src/fastchat/_hub.pyx", "src/fastchat/_hub.pxd"):
        assert needed in names, f"{needed} missing from the sdist"
    assert "src/fastchat/_hub.c" not in names


# ---------------------------------------------------------------------------- cheap checks


def test_dockerfile_stages_match_what_this_module_runs() -> None:
    build, runtime = stages()
    # Pinned: an exact Python release on a named Debian release (or a digest), the same in
    # both stages, so the wheel's interpreter is the runtime's.
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", build.image), (
        build.image
    )
    assert build.name and runtime.image == build.image

    build_runs = " ; ".join(build.args("RUN"))
    assert "build-essential" in build_runs
    assert [".", "."] in [a.split() for a in build.args("COPY")]
    wheel_cmds = [shlex.split(r) for r in build.args("RUN") if "pip wheel" in r]
    assert wheel_cmds == [PIP_WHEEL], "the build stage's `pip wheel` changed: update PIP_WHEEL"

    # The runtime stage gets the wheel and nothing else: no compiler, no source tree.
    copies = runtime.args("COPY")
    assert copies and all(c.split()[:2] == [f"--from={build.name}", "/dist"] for c in copies), (
        copies
    )
    runtime_runs = " ; ".join(runtime.args("RUN"))
    assert "build-essential" not in runtime_runs and "gcc" not in runtime_runs
    assert 'pip install "$(ls /tmp/dist/*.whl)' in runtime_runs, runtime_runs
    # The wheel alone by default, as `installed` installs it; extras only when asked for.
    assert runtime.args("ARG") == ['EXTRAS=""'], runtime.args("ARG")
    assert "${EXTRAS:+[$EXTRAS]}" in runtime_runs
    assert "useradd" in runtime_runs

    users = runtime.args("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    user = users[-1].split(":")[0]
    env = env_pairs(runtime)
    assert {k: env.get(k) for k in RUNTIME_ENV} == RUNTIME_ENV
    assert runtime.args("VOLUME") == ["/data"]
    # The volume's directory is made and handed to the user before VOLUME freezes it.
    kinds = [kw for kw, _ in runtime.instructions]
    chown_at = next(
        i
        for i, (kw, a) in enumerate(runtime.instructions)
        if kw == "RUN" and re.search(rf"chown \S*{user}\S* /data", a)
    )
    assert chown_at < kinds.index("VOLUME")
    assert sorted(" ".join(runtime.args("EXPOSE")).split()) == ["8080", "8081"]

    health = healthcheck_cmd(runtime)
    assert health[:2] == ["python", "-c"] and "urllib" in health[2]
    assert "127.0.0.1:" in health[2] and "/api/v1/health" in health[2]

    cmd = image_cmd(runtime)
    assert cmd == ["fastchat", "serve"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[cmd[0]] == "fastchat.cli:main", "the CMD must be the wheel's console script"


def test_dockerignore_keeps_what_the_wheel_needs_and_drops_the_rest() -> None:
    rules = dockerignore_rules()
    needed = [
        "pyproject.toml",
        "setup.py",
        "MANIFEST.in",
        "README.md",
        "LICENSE",
        "src/fastchat/__init__.py",
        "src/fastchat/_hub.pyx",
        "src/fastchat/_hub.pxd",
        "src/fastchat/app/pages.py",
        "templates/index.html",
        "static/css/app.css",
        "static/js/live.js",
    ]
    for rel in needed:
        assert not ignored(rel, rules), f".dockerignore drops {rel}, which the build needs"
    junk = [
        ".venv/bin/python",
        ".git/HEAD",
        "build/lib/fastchat/x.py",
        "dist/a.whl",
        "chat.db",
        "chat.db-wal",
        "data/chat.db-shm",
        "src/fastchat/_hub.c",
        "src/fastchat/_hub.cpython-311-x86_64-linux-gnu.so",
        "src/fastchat.egg-info/PKG-INFO",
        "src/fastchat/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v",
        ".mypy_cache/x",
        ".ruff_cache/x",
        "tests/e2e/screenshots/chat.png",
    ]
    for rel in junk:
        assert ignored(rel, rules), f".dockerignore lets {rel} into the build context"
