"""The report page in headless Chromium (driven over the DevTools protocol with websocket-client): it loads
with no console errors, and "next step" changes the shown step. Skipped where no chromium binary exists,
except under CI=true, where that is a failure (.ci/run installs Debian's chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from agentsd.report.build import build_report

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome"))
                 if p), None)

IN_CI = os.environ.get("CI", "").lower() == "true"

pytestmark = pytest.mark.skipif(CHROMIUM is None and not IN_CI,
                                reason="no chromium binary on PATH (apt-get install chromium)")


class CDP:
    """A minimal Chrome DevTools Protocol client over one page target."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.time() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while time.time() < deadline:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(method)

    def eval(self, expr: str):
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def drain(self, seconds: float = 0.3) -> None:
        self.ws.settimeout(seconds)
        try:
            while True:
                self.events.append(json.loads(self.ws.recv()))
        except Exception:  # noqa: BLE001 - a timeout ends the drain
            pass
        finally:
            self.ws.settimeout(30)

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(str(p.get("args")))
            elif m == "Runtime.exceptionThrown":
                out.append(str(p.get("exceptionDetails")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(str(p["entry"]))
        return out


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:  # only reached under CI=true
        pytest.fail("CI=true but no chromium binary on PATH: .ci/run installs it (apt-get install chromium)")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.time() + 60
        while time.time() < deadline and port is None:
            line = proc.stderr.readline()
            if "DevTools listening on ws://" in line:
                port = int(line.split("ws://")[1].split("/")[0].rsplit(":", 1)[1])
            elif not line and proc.poll() is not None:
                break
        if port is None:
            pytest.fail("chromium did not start its DevTools endpoint")
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        cdp = CDP(page["webSocketDebuggerUrl"])
        yield cdp
        cdp.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_report_page_loads_without_errors_and_steps(fake_sweep, browser):
    res = build_report(fake_sweep, episodes_per_run=2)
    cdp = browser
    cdp.send("Runtime.enable")
    cdp.send("Log.enable")
    cdp.send("Page.enable")
    cdp.send("Page.navigate", url=res.html.resolve().as_uri())
    cdp.wait_event("Page.loadEventFired")
    cdp.drain()
    assert cdp.errors() == []
    assert cdp.eval("document.querySelectorAll('img').length") == 3
    assert cdp.eval("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert cdp.eval("document.getElementById('run-select').options.length") == 4
    assert cdp.eval("document.getElementById('step-label').textContent") == "step 1 / 3"
    before = cdp.eval("document.getElementById('step-obs').textContent")
    assert "######" in before
    assert cdp.eval("document.querySelectorAll('#step-obs span.c-box').length") == 1  # the grid is rendered
    cdp.eval("document.getElementById('next-step').click()")
    assert cdp.eval("document.getElementById('step-label').textContent") == "step 2 / 3"
    assert cdp.eval("document.getElementById('step-obs').textContent") != before
    assert "invalid_format" in cdp.eval("document.getElementById('step-diagnosis').textContent")
    # pick another run (with planner decisions in its info): the generic info table shows them
    cdp.eval("const s = document.getElementById('run-select'); s.value = '2'; s.dispatchEvent(new Event('change'))")
    assert cdp.eval("document.getElementById('step-label').textContent") == "step 1 / 3"
    info = cdp.eval("document.getElementById('step-info').textContent")
    assert "planner" in info and "abc123" in info
    cdp.eval("document.getElementById('prev-step').click()")  # disabled at the first step: no change
    assert cdp.eval("document.getElementById('step-label').textContent") == "step 1 / 3"
    cdp.drain()
    assert cdp.errors() == []
