"""The HTML report in a real headless Chromium (Debian's), driven over the DevTools
protocol: it renders, loads nothing from outside, and its table sorts when a column
heading is clicked with the mouse. A screenshot is written next to the test log."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from click.testing import CliRunner
from conftest import require

from etrn_ext.cli.main import cli
from etrn_ext.config import IndexSettings
from etrn_ext.core.model import HeldRecipient
from etrn_ext.core.registry import DomainChanges, new_domain
from etrn_ext.index.store import IndexStore

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,700",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
# Messages held per domain: the table's default order is by name.
HELD = {"alpha.example": 3, "bravo.example": 1, "charlie.example": 5, "delta.example": 2}


def chromium_missing() -> str | None:
    return None if shutil.which("chromium") else "chromium is not installed (Debian: chromium)"


class DevTools:
    """One page target over the DevTools websocket; every wait is bounded."""

    def __init__(self, url: str, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self.socket = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self.last_id = 0

    def _receive(self, deadline: float) -> dict[str, Any]:
        if time.monotonic() > deadline:
            raise TimeoutError("no answer from Chromium")
        message: dict[str, Any] = json.loads(self.socket.recv())
        return message

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        self.socket.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == self.last_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result
            self.events.append(message)

    def wait_for(self, event: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(message.get("method") == event for message in self.events):
            self.events.append(self._receive(deadline))

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"][
            "value"
        ]

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) in the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    require(chromium_missing())
    profile = tmp_path / "chromium-profile"  # a fresh --user-data-dir
    process = subprocess.Popen(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        active_port = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not active_port.exists() or not active_port.read_text().strip():
            assert process.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port = int(active_port.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            pages = [t for t in json.load(answer) if t["type"] == "page"]
        devtools = DevTools(pages[0]["webSocketDebuggerUrl"])
        yield devtools
        devtools.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _report(tmp_path: Path) -> Path:
    """An HTML report of an index with HELD, written by etrnctl like a cron job would."""
    index = tmp_path / "index.sqlite"
    store = IndexStore.open(IndexSettings(url=f"sqlite:///{index}"))
    now = time.time()
    for name, count in HELD.items():
        store.add_domain(new_domain(name, DomainChanges(), now - 86400))
        store.record_held(
            HeldRecipient(
                "relay.test",
                f"4jc{name[:4]}{number:08d}",
                f"user{number}@{name}",
                name,
                "a@example.org",
                1000 * (number + 1),
                now - 600 * 4**number,
                now,
                now,
            )
            for number in range(count)
        )
    store.close()
    postconf = tmp_path / "postconf"
    postconf.write_text('#!/bin/sh\necho "maximal_queue_lifetime = 5d"\n')
    postconf.chmod(0o755)
    config = tmp_path / "etrn-ext.toml"
    config.write_text(
        f'[index]\nurl = "sqlite:///{index}"\n[mta]\nnode_name = "relay.test"\n'
        f'postconf = "{postconf}"\n'
    )
    output = tmp_path / "report.html"
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(config),
            "report",
            "--no-sync",
            "--format",
            "html",
            "--output",
            str(output),
        ],
    )
    assert result.exit_code == 0, result.output
    return output


def _screenshot_path(config: pytest.Config) -> Path:
    log_file = Path(config.getini("log_file") or "build/test-logs/pytest.log")
    if not log_file.is_absolute():
        log_file = config.invocation_params.dir / log_file
    log_file.parent.mkdir(parents=True, exist_ok=True)
    return log_file.parent / "report-html.png"


def test_html_report_renders_and_sorts_in_chromium(
    browser: DevTools, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    page = _report(tmp_path)
    source = page.read_text()
    assert "http://" not in source
    assert "https://" not in source
    assert " src=" not in source
    assert "<link" not in source
    browser.call("Page.enable")
    browser.call("Page.navigate", url=page.as_uri())
    browser.wait_for("Page.loadEventFired")

    assert browser.evaluate("document.title") == "etrn-ext report for relay.test"
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0
    rows = "Array.from(document.querySelectorAll('#domains tbody tr')).map(r => r.id)"
    assert browser.evaluate(rows) == sorted(HELD)
    bars = browser.evaluate(
        "Array.from(document.querySelectorAll('#domains tbody .bar')).map("
        "b => Array.from(b.children).reduce((w, s) => w + s.getBoundingClientRect().width, 0))"
    )
    assert len(bars) == len(HELD)
    assert all(width > 100 for width in bars)  # each row's age bar is drawn, full width

    by_messages = sorted(HELD, key=lambda name: HELD[name])
    browser.click("#domains thead th:nth-child(2)")
    assert browser.evaluate(rows) == by_messages
    assert (
        browser.evaluate(
            "document.querySelector('#domains thead th:nth-child(2)').getAttribute('aria-sort')"
        )
        == "ascending"
    )
    browser.click("#domains thead th:nth-child(2)")
    assert browser.evaluate(rows) == by_messages[::-1]
    browser.click("#domains thead th:nth-child(1)")
    assert browser.evaluate(rows) == sorted(HELD)
    browser.click("#domains thead th:nth-child(2)")

    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert shot.startswith(b"\x89PNG")
    path = _screenshot_path(request.config)
    path.write_bytes(shot)
    assert os.path.getsize(path) > 10_000
