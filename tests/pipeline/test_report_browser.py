"""The report of a real run opened in headless Chromium: no console errors, charts drawn, hostile text inert.

Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it). The test drives it through the Chrome
DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4): no port, no network, no extra client
library. A full-page screenshot lands in the test's tmp dir and in /tmp/report-screenshot.png.
"""

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.pipeline.planted import planted_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
SCREENSHOT_COPY = Path("/tmp/report-screenshot.png")


class DevTools:
    """A minimal CDP client over Chromium's debugging pipe: requests in order, events kept for inspection."""

    def __init__(self, user_data_dir: Path):
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire():
            os.dup2(to_browser, 3)
            os.dup2(from_browser_w, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=wire,
        )
        os.close(to_browser)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, limit: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(limit)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, limit: float = 60) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(limit)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, limit: float) -> dict:
        deadline = time.monotonic() + limit
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"Chromium said nothing for {limit}s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the debugging pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close", limit=10)
        except Exception:  # noqa: BLE001 - the browser may already be gone; it is killed below anyway
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run must `apt-get install -y chromium`")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    tools = DevTools(tmp_path_factory.mktemp("chromium-profile"))
    yield tools
    tools.close()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    """The planted run's report, loaded in a fresh tab; returns ``(session id, evaluate)``."""
    out = planted_run(tmp_path_factory)
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        browser.send(f"{domain}.enable", session=session)
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    browser.send("Page.navigate", {"url": (out.path / "report" / "index.html").as_uri()}, session=session)
    browser.wait_for("Page.loadEventFired")

    def evaluate(expression: str):
        result = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    return session, evaluate


def test_the_report_loads_without_console_errors(browser, page):
    errors = [
        event
        for event in browser.events
        if (event.get("method") == "Runtime.consoleAPICalled" and event["params"]["type"] in ("error", "assert"))
        or event.get("method") == "Runtime.exceptionThrown"
        or (event.get("method") == "Log.entryAdded" and event["params"]["entry"]["level"] == "error")
    ]
    assert errors == []


def test_the_funnel_and_the_charts_render(page):
    _, evaluate = page
    funnel = evaluate(
        "[...document.querySelectorAll('#funnel-chart .frow')].map(r => "
        "[r.querySelector('.fname').textContent, r.querySelector('.bar').getBoundingClientRect().width,"
        " [...r.querySelectorAll('.seg')].reduce((w, s) => w + s.getBoundingClientRect().width, 0)])"
    )
    names = [name for name, _, _ in funnel]
    assert names[0] == "input items" and names[-1] == "kept" and "exact_dedup" in names
    assert all(bar > 200 and drawn > 0 for _, bar, drawn in funnel)
    charts = evaluate(
        "[...document.querySelectorAll('figure.chart')].map(f => [f.dataset.name,"
        " f.querySelector('svg').getBoundingClientRect().height,"
        " [...f.querySelectorAll('svg rect')].filter(r => r.getBoundingClientRect().height > 0).length])"
    )
    assert {"caption_length", "resolution", "aspect_ratio", "file_size"} <= {name for name, _, _ in charts}
    assert all(height > 100 and bars > 0 for _, height, bars in charts)
    images = evaluate("[...document.images].map(i => [i.complete, i.naturalWidth])")
    assert len(images) >= 12 and all(done and width > 0 for done, width in images)


def test_the_hostile_caption_shows_as_text_and_never_ran(page):
    _, evaluate = page
    assert evaluate("typeof window.__pwned") == "undefined"
    assert evaluate("document.scripts.length") == 0
    shown = evaluate("[...document.querySelectorAll('#kept .caption')].map(p => p.textContent)")
    assert any("<script>window.__pwned" in text for text in shown)
    names = evaluate("[...document.querySelectorAll('#kept .src')].map(p => p.textContent)")
    assert "<svg onload=window.__pwned=3>.jpg" in names
    assert evaluate("document.querySelectorAll('#kept svg, #kept script, #kept img[onerror]').length") == 0


def test_screenshot(browser, page, tmp_path):
    session, evaluate = page
    height = evaluate("document.documentElement.scrollHeight")
    shot = browser.send(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1400, "height": height, "scale": 1},
        },
        session=session,
    )
    path = tmp_path / "report.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 50_000
    try:
        shutil.copy(path, SCREENSHOT_COPY)
    except OSError:
        pass  # a read-only /tmp only loses the convenience copy


def test_every_block_of_the_page_stays_inside_its_section(browser, page):
    # A wide table (the audit's representation tables have eight columns) scrolls inside its block; it never spills
    # into the gap or over the next column, nor does a block run past its section, whatever the window's width.
    session, evaluate = page
    spilling = (
        "[...document.querySelectorAll('section .auditblock, section figure.chart')].filter(b => {"
        " const box = b.getBoundingClientRect(), page = b.closest('section').getBoundingClientRect();"
        " const spills = b.scrollWidth > b.clientWidth + 1 && getComputedStyle(b).overflowX === 'visible';"
        " return spills || box.right > page.right + 1; }).map(b => b.textContent.slice(0, 40))"
    )
    for width in (1100, 1300, 1400):
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        assert evaluate(spilling) == [], width
