"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol: open a page, collect
console errors, exceptions and failed loads, list the images, and take a full-page screenshot.

The tests use it to check the report in a real browser; it is also the screenshot command of the
README's "What you will see":

    .venv/bin/python tests/browser/headless_chromium.py URL_OR_FILE OUT.png [--width 1200] [--wait JS] [--max-height PX]

It speaks the protocol over the `websockets` client and reaches nothing but the browser it starts
on 127.0.0.1; with offline=True the page gets no network at all (file:// and data: still load).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "chromium"
TIMEOUT_S = 60.0  # each wait: the browser starting, a command's answer, a page loading


def available() -> str | None:
    """The chromium executable, or None where it is not installed."""
    return shutil.which(CHROMIUM)


@dataclass
class PageReport:
    url: str
    console_errors: list[str] = field(default_factory=list)  # console.error, uncaught exceptions, error logs
    failed_loads: list[str] = field(default_factory=list)  # requests that failed (URL: reason)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    images: list[dict[str, Any]] = field(default_factory=list)  # {src, complete, width, height}


class Chromium:
    """One headless browser with one page. Use as a context manager."""

    def __init__(self, width: int = 1200, height: int = 900) -> None:
        self.width, self.height = width, height
        self._ids = itertools.count(1)
        self._events: list[dict] = []

    def __enter__(self) -> Chromium:
        from websockets.sync.client import connect

        exe = available()
        if exe is None:
            raise RuntimeError(
                "chromium is not installed (Debian: apt-get install chromium; `make install` does)"
            )
        self._profile = tempfile.mkdtemp(prefix="zs-chromium-")
        self.proc = subprocess.Popen(
            [
                exe,
                "--headless=new",
                "--no-sandbox",  # root in a container has no user namespace to sandbox in
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={self._profile}",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        port = self._devtools_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT_S) as r:
            pages = [t for t in json.loads(r.read()) if t.get("type") == "page"]
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=TIMEOUT_S)
        )
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stderr.close()
            shutil.rmtree(self._profile, ignore_errors=True)

    def _devtools_port(self) -> int:
        # Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..." once it listens.
        seen = []
        for line in self.proc.stderr:
            seen.append(line)
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                return int(m.group(1))
        raise RuntimeError("chromium exited before it listened:\n" + "".join(seen[-20:]))

    # -- protocol ---------------------------------------------------------------------------
    def send(self, method: str, **params: Any) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._events.append(msg)

    def _wait_event(self, method: str) -> dict:
        for i, ev in enumerate(self._events):
            if ev.get("method") == method:
                return self._events.pop(i)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("method") == method:
                return msg
            self._events.append(msg)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    # -- what the tests and the screenshots need -----------------------------------------------
    def open(self, url: str, offline: bool = False, wait: str | None = None) -> PageReport:
        """Load `url` (a path becomes file://) and report what went wrong on the way.

        Args:
            url: http(s)://, file:// or a local path.
            offline: no network for the page (as on a machine without one).
            wait: a JavaScript expression to poll (every 0.2 s, up to TIMEOUT_S) until it is truthy
                (a single-page app rendering after the load event).
        """
        if "://" not in url:
            url = Path(url).resolve().as_uri()
        if offline:
            self.send(
                "Network.emulateNetworkConditions",
                offline=True,
                latency=0,
                downloadThroughput=-1,
                uploadThroughput=-1,
            )
        self._events.clear()
        self.send("Page.navigate", url=url)
        self._wait_event("Page.loadEventFired")
        if wait:
            deadline = time.monotonic() + TIMEOUT_S
            while not self.evaluate(wait):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url}: {wait} never became true")
                time.sleep(0.2)
        report = PageReport(url)
        report.images = self.evaluate(
            "Array.from(document.images).map(i => ({src: i.currentSrc || i.src, complete: i.complete, "
            "width: i.naturalWidth, height: i.naturalHeight}))"
        )
        self.send("Runtime.evaluate", expression="1")  # flush events queued behind the page's last load
        urls = {}
        for ev in self._events:
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                report.console_errors.append(
                    " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                )
            elif method == "Runtime.exceptionThrown":
                details = p.get("exceptionDetails", {})
                report.console_errors.append(
                    details.get("exception", {}).get("description") or details.get("text", "exception")
                )
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                entry = p["entry"]
                report.console_errors.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
            elif method == "Network.requestWillBeSent":
                urls[p["requestId"]] = p["request"]["url"]
                report.requests.append(p["request"]["url"])
            elif method == "Network.loadingFailed":
                report.failed_loads.append(f"{urls.get(p.get('requestId'), '?')}: {p.get('errorText')}")
        return report

    def screenshot(self, out: str | Path, max_height: int | None = None) -> Path:
        """A PNG of the whole page (up to `max_height` CSS pixels tall)."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        height = int(size["height"]) if max_height is None else min(int(size["height"]), max_height)
        shot = self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1},
        )
        out = Path(out)
        out.write_bytes(base64.b64decode(shot["data"]))
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Screenshot of a page in headless Chromium.")
    p.add_argument("url", help="http(s):// URL, file:// URL or a local HTML file")
    p.add_argument("out", help="PNG to write")
    p.add_argument("--width", type=int, default=1200)
    p.add_argument("--height", type=int, default=900, help="viewport height")
    p.add_argument("--max-height", type=int, default=None, help="cut the full-page shot at this height")
    p.add_argument("--wait", default=None, help="JavaScript expression to wait for before the shot")
    p.add_argument("--colors", type=int, default=None, help="palette size, for a small PNG (Pillow)")
    ns = p.parse_args(argv)
    try:
        with Chromium(ns.width, ns.height) as browser:
            report = browser.open(ns.url, wait=ns.wait)
            for line in report.console_errors + report.failed_loads:
                print(f"page: {line}")
            out = browser.screenshot(ns.out, ns.max_height)
    except (RuntimeError, OSError, TimeoutError) as e:
        print(f"headless_chromium: error: {e}", file=sys.stderr)
        return 2
    if ns.colors:
        from PIL import Image

        Image.open(out).convert("RGB").quantize(ns.colors).save(out, optimize=True)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
