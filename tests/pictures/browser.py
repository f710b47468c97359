"""Headless Chromium driven over the DevTools protocol, for tests of the pages the experiments write.

Chromium (Debian's ``chromium``; ``make test`` installs it) runs with ``--remote-debugging-pipe``: protocol
messages are NUL-terminated JSON on file descriptors 3 and 4, so no websocket library is needed. A `Page` opens a
URL, evaluates scripts in it, presses keys, clicks, and takes screenshots; it records every failed request and
every uncaught script error, so a test can assert there were none.

    python tests/browser.py runs/demo/explore/index.html#conv2/3 docs/explorer.png   # a screenshot
"""
from __future__ import annotations

import base64
import json
import os
import pathlib
import select
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

KEYS = {"ArrowRight": 39, "ArrowLeft": 37, "Escape": 27, "Enter": 13, "[": 219, "]": 221}


def executable() -> str | None:
    """The Chromium binary on PATH, if any."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One headless Chromium with one tab (use as a context manager)."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 30.0):
        binary = executable()
        if binary is None:
            raise RuntimeError("Chromium is missing: install it with 'apt-get install chromium' (make test does)")
        self.timeout, self.events, self._buffer, self._id = timeout, [], b"", 0
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()
        self._log = tempfile.TemporaryFile()
        # bash puts the pipes on the child's fds 3 (our commands) and 4 (its replies): no Python runs after the fork
        self._process = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{to_child} 4>&{from_child}', binary, "--headless",
             "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        os.close(to_child)
        os.close(from_child)
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False})

    def __enter__(self) -> "Page":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self._process.wait(10)
        except Exception:  # noqa: BLE001  (a browser that died or hangs is killed below)
            pass
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        for fd in (self._in, self._out):
            os.close(fd)
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    # the protocol
    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """One protocol command; its result (RuntimeError on a protocol error)."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == message["id"])
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def call(self, method: str, params: dict | None = None) -> dict:
        """A command to the tab."""
        return self.send(method, params, self._session)

    def _wait(self, match: Callable[[dict], bool], timeout: float | None = None) -> dict:
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if match(message):
                    return message
            ready, _, _ = select.select([self._in], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer in time:\n" + self.browser_log()[-2000:])
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited:\n" + self.browser_log()[-2000:])
            self._buffer += chunk

    def browser_log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    # what tests do
    def open(self, url: str) -> None:
        """Load `url` afresh (also when only its fragment differs from the current page's) and wait for the load
        event: the scripts the page names have run."""
        for target in ("about:blank", url):
            seen = len(self.events)
            self.call("Page.navigate", {"url": target})
            if not any(e["method"] == "Page.loadEventFired" for e in self.events[seen:]):
                self._wait(lambda m: m.get("method") == "Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a script expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        """Poll `expression` until it is truthy; its value (TimeoutError otherwise)."""
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > end:
                raise TimeoutError(f"{expression!r} still false after {timeout or self.timeout} s")
            time.sleep(0.05)

    def press(self, key: str) -> None:
        """A key press (keydown, the character for printable keys, keyup) as a user would type it."""
        code = KEYS.get(key, ord(key.upper()) if len(key) == 1 else 0)
        down = {"type": "keyDown", "key": key, "windowsVirtualKeyCode": code}
        if len(key) == 1 or key == "Enter":
            down["text"] = "\r" if key == "Enter" else key
        self.call("Input.dispatchKeyEvent", down)
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "windowsVirtualKeyCode": code})

    def click(self, selector: str) -> None:
        """A real mouse click at the center of the first element matching `selector` (scrolled into view)."""
        box = self.evaluate(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e) return null; e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        if box is None:
            raise LookupError(f"no element matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    def screenshot(self, path: str | os.PathLike) -> pathlib.Path:
        """A PNG of the viewport."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def failed_requests(self) -> list[str]:
        """'url: error' of every request that failed since the browser started."""
        urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent"}
        return [f"{urls.get(e['params']['requestId'], '?')}: {e['params']['errorText']}" for e in self.events
                if e["method"] == "Network.loadingFailed"]

    def errors(self) -> list[str]:
        """Uncaught script errors and console errors since the browser started."""
        out = [json.dumps(e["params"]["exceptionDetails"])[:500] for e in self.events
               if e["method"] == "Runtime.exceptionThrown"]
        out += [e["params"]["entry"]["text"] for e in self.events
                if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
        return out


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        sys.exit("usage: python tests/browser.py <page.html[#fragment]> <screenshot.png>")
    page_path, _, fragment = argv[1].partition("#")
    with Page(width=1280, height=800) as page:
        page.open(pathlib.Path(page_path).resolve().as_uri() + (f"#{fragment}" if fragment else ""))
        time.sleep(1.0)  # sprite sheets decode
        page.screenshot(argv[2])


if __name__ == "__main__":
    main(sys.argv)
