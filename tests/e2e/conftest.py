"""Browser fixtures: Playwright (sync API) driving Debian's Chromium, no browser download.

One Chromium for the package; each test opens its own contexts (separate localStorage, like
separate people) through `browsers`, which also fails the test on any uncaught page error
or any JavaScript dialog (an `alert` means injected script ran).
"""

from __future__ import annotations

import importlib.resources
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TIMEOUT

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the `test` extra is not installed: the `browser` fixture skips
    expect = sync_playwright = None  # type: ignore[assignment]

CHROMIUM = os.environ.get("FASTCHAT_CHROMIUM", "/usr/bin/chromium")
# As root Chromium needs --no-sandbox; the rest keep it off the network this machine lacks.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
# Under build/ (ignored by git): a test run leaves the tree as it found it. `make screenshots`
# copies them over the README's tracked ones in docs/screenshots/.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
TIMEOUT_MS = TIMEOUT * 1000

if expect is not None:
    expect.set_options(timeout=TIMEOUT_MS)


# REST calls from the tests: one client with kept-alive connections (a fresh connection per
# call costs about 20 ms; seeding a few hundred messages would take seconds).
api = httpx.Client(timeout=TIMEOUT)


@pytest.fixture(scope="package", autouse=True)
def _close_api() -> Iterator[None]:
    yield
    api.close()


# One Chromium for all of tests/e2e. Package scope rather than session scope: Playwright's
# sync API marks its event loop as running on this thread for as long as it is started,
# which would break every asyncio test (pytest-asyncio) that runs after this package.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    # Fail, never skip: a browser test that does not run is a test that does not exist.
    if sync_playwright is None:
        pytest.fail("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium, or FASTCHAT_CHROMIUM)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Browsers:
    """Opens pages in fresh contexts and records what must never happen in them."""

    browser: Any
    contexts: list[Any] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(
        self,
        url: str,
        *,
        name: str | None = None,
        room: str | None = None,
        viewport: dict[str, int] | None = None,
        color_scheme: str = "light",
    ) -> Any:
        """A page in a new context; `name`/`room` preset what /chat remembers."""
        context = self.browser.new_context(
            viewport=viewport or DESKTOP, color_scheme=color_scheme, reduced_motion="reduce"
        )
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        prefs = {k: v for k, v in (("fastchat.name", name), ("fastchat.room", room)) if v}
        if prefs:
            context.add_init_script(
                # about:blank has no storage: a page opened there gets it on its goto.
                script="(p => { if (location.protocol.startsWith('http')) "
                "for (const [k, v] of Object.entries(p)) "
                f"localStorage.setItem(k, v); }})({json.dumps(prefs)})"
            )
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(url)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()


@pytest.fixture
def browsers(browser: Any) -> Iterator[Browsers]:
    opened = Browsers(browser)
    try:
        yield opened
    finally:
        opened.close()
    assert not opened.dialogs, f"a page opened a dialog (script ran): {opened.dialogs}"
    assert not opened.errors, f"uncaught errors in the page: {opened.errors}"


# ------------------------------------------------------------------------------- page helpers


def join_chat(page: Any, name: str, room: str) -> None:
    """Choose a name and a room on /chat and wait until the server confirmed the join."""
    page.fill("#name", name)
    page.fill("#room", room)
    page.click("#join")
    expect_joined(page, room)


def expect_joined(page: Any, room: str) -> None:
    app = page.locator("#chat-app")
    expect(app).to_have_attribute("data-room", room)
    expect(app).to_have_attribute("data-joined", "true")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "connected")


def send_chat(page: Any, text: str) -> None:
    """Type a message and press Enter, as a person would."""
    page.fill("#composer", text)
    page.press("#composer", "Enter")


def chat_texts(page: Any) -> Any:
    """The confirmed messages' texts, in page order (for `expect(...).to_have_text`)."""
    return page.locator("#messages .message[data-id] .message__text")


def shown_messages(page: Any) -> list[tuple[int, str]]:
    """(id, text) of every confirmed message, in page order."""
    rows = page.eval_on_selector_all(
        "#messages .message[data-id]",
        "els => els.map(e => [Number(e.dataset.id), "
        "e.querySelector('.message__text').textContent])",
    )
    return [(int(i), str(t)) for i, t in rows]


# Keeps every WebSocket the page opens in `window.sockets`, so a test can drop one.
KEEP_SOCKETS = """window.sockets = [];
window.WebSocket = class extends WebSocket {
  constructor(...args) { super(...args); window.sockets.push(this); }
};"""


def drop_socket(page: Any) -> None:
    """Close the page's current WebSocket (opened after KEEP_SOCKETS): it reconnects."""
    page.evaluate("() => window.sockets.at(-1).close()")


# ------------------------------------------------------------------------------- axe-core

AXE_RUN = """() => axe.run(document, {
  runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
  resultTypes: ['violations'],
}).then(r => r.violations.flatMap(v => v.nodes.map(n =>
  `${v.id} (${v.impact}) at ${n.target.join(' ')}: ${n.failureSummary.replace(/\\s+/g, ' ')}`)))"""


def expect_accessible(page: Any) -> None:
    """No axe-core finding (WCAG 2.1 A and AA rules) on the page as it is now, in the light
    and in the dark color scheme; the page's own scheme is restored after."""
    try:
        source = importlib.resources.files("axe_playwright_python").joinpath("axe.min.js")
    except ModuleNotFoundError:
        pytest.fail("axe-playwright-python is not installed (pip install -e '.[test]')")
    if not page.evaluate("() => typeof axe === 'object'"):
        page.add_script_tag(content=source.read_text())
    dark = page.evaluate("() => matchMedia('(prefers-color-scheme: dark)').matches")
    found = []
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        found += [f"{scheme}: {finding}" for finding in page.evaluate(AXE_RUN)]
    page.emulate_media(color_scheme="dark" if dark else "light")
    assert not found, f"axe-core on {page.url}:\n" + "\n".join(found)


def no_horizontal_scroll(page: Any) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
