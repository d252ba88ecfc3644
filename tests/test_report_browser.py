"""The reports in a real browser: headless Chromium opens the box page and the results page,
every image has loaded, no console errors, and a screenshot is kept under test-artifacts/.

Chromium is driven through the Chrome DevTools protocol over `--remote-debugging-pipe` (file
descriptors 3 and 4, NUL-separated JSON), so no Python package beyond the standard library is
needed. `scripts/ensure_chromium.sh` installs Debian's chromium where it can; otherwise the test
skips and says why.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_report import make_report_inputs, method_files
from test_results_report import build_page, expected_image_count, make_results_inputs

from cirflow.report.boxes import build_boxes_report, build_method_report, load_source

pytestmark = pytest.mark.browser

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,1000",
)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium binary, installed by scripts/ensure_chromium.sh if needed (else skip)."""
    if os.environ.get("CHROMIUM") and shutil.which(os.environ["CHROMIUM"]):
        return shutil.which(os.environ["CHROMIUM"])
    script = REPO / "scripts" / "ensure_chromium.sh"
    try:
        proc = subprocess.run(
            ["bash", str(script), "600"], capture_output=True, text=True, timeout=700
        )
    except subprocess.TimeoutExpired:
        pytest.skip("headless Chromium not available: installing it timed out")
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.skip(f"headless Chromium not available: {proc.stderr.strip() or 'not installed'}")
    return proc.stdout.strip().splitlines()[-1]


class DevTools:
    """A minimal Chrome DevTools protocol client over --remote-debugging-pipe."""

    def __init__(self, binary: str, user_data_dir: Path):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()

        def child_fds() -> None:
            # Chromium reads commands on fd 3 and writes replies on fd 4. dup first: dup2 onto
            # the same number would keep the close-on-exec flag.
            r, w = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={user_data_dir}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=child_fds,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._w, self._r = to_child_w, from_child_r
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout=30):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from chromium")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"chromium exited: {err}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


def open_in_chromium(binary: str, page: Path, screenshot: Path, tmp_path: Path) -> dict:
    """Load `page`; return its images' load state, the console errors and the ids of its
    sections, and save a screenshot."""
    browser = DevTools(binary, tmp_path / "chromium-profile")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            browser.call(domain, session=session)
        browser.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired", timeout=60)
        state = browser.call(
            "Runtime.evaluate",
            {
                "expression": "JSON.stringify(Array.from(document.images).map(i => ({"
                "alt: i.alt, complete: i.complete, width: i.naturalWidth})))",
                "returnByValue": True,
            },
            session=session,
        )
        images = json.loads(state["result"]["value"])
        sections = browser.call(
            "Runtime.evaluate",
            {
                "expression": "JSON.stringify(Array.from(document.querySelectorAll('section'))"
                ".map(s => s.id))",
                "returnByValue": True,
            },
            session=session,
        )
        shot = browser.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True},
            session=session,
            timeout=60,
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = []
        for event in browser.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(json.dumps(params.get("args"))[:300])
            elif method == "Runtime.exceptionThrown":
                errors.append(json.dumps(params.get("exceptionDetails"))[:300])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(params["entry"].get("text", "")[:300])
        return {
            "images": images,
            "errors": errors,
            "sections": json.loads(sections["result"]["value"]),
        }
    finally:
        browser.close()


def test_report_renders_in_chromium(chromium, tmp_path):
    report_inputs = make_report_inputs(tmp_path / "inputs")
    result = build_method_report(
        method_files(report_inputs),
        tmp_path / "boxes_yolo.html",
        settings={"samples_per_split": 50, "extra_per_group": 3},
        method="yolo",
    )
    screenshot = ARTIFACTS / "report_browser.png"
    seen = open_in_chromium(chromium, Path(result["html"]), screenshot, tmp_path)
    assert seen["errors"] == []
    images = seen["images"]
    assert len(images) >= result["images_drawn"] + 4 > 4
    not_loaded = [i for i in images if not (i["complete"] and i["width"] > 0)]
    assert not_loaded == []
    assert screenshot.stat().st_size > 10_000
    shutil.copy(result["html"], ARTIFACTS / "report_browser.html")


def test_report_without_images_renders_in_chromium(chromium, test_data, tmp_path):
    box_file = test_data / "report" / "seed_boxes_yolo_train_slice300.json"
    out = tmp_path / "seed.html"
    build_boxes_report([load_source(box_file)], out)
    seen = open_in_chromium(chromium, out, ARTIFACTS / "report_browser_no_images.png", tmp_path)
    assert seen["errors"] == []
    assert len(seen["images"]) == 3
    assert all(i["complete"] and i["width"] > 0 for i in seen["images"])


def test_results_page_renders_in_chromium(chromium, tmp_path):
    inputs = make_results_inputs(tmp_path / "results")
    out = tmp_path / "results.html"
    build_page(out, inputs)
    seen = open_in_chromium(chromium, out, ARTIFACTS / "results_browser.png", tmp_path)
    assert seen["errors"] == []
    assert seen["sections"] == [
        "curves",
        "comparison",
        "edit-types",
        "retrievals",
        "facts",
        "inputs",
    ]
    images = seen["images"]
    # Curves per stage, the ablation's plot, every retrieval thumbnail: all decoded.
    assert len(images) == expected_image_count(inputs) > 10
    assert [i for i in images if not (i["complete"] and i["width"] > 0)] == []
    shutil.copy(out, ARTIFACTS / "results_browser.html")


def test_the_browser_check_sees_broken_images_and_console_errors(chromium, tmp_path):
    """The checks above can fail: a missing image and a console error are both caught."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img src="missing.png" alt="missing"><script>console.error("boom")</script></body></html>'
    )
    seen = open_in_chromium(chromium, page, tmp_path / "broken.png", tmp_path)
    assert seen["images"] == [{"alt": "missing", "complete": True, "width": 0}]
    assert any("boom" in e for e in seen["errors"])
