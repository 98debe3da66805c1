"""Drive a headless Chromium over the Chrome DevTools Protocol with nothing but the standard library.

Chromium is started with `--remote-debugging-pipe`: it reads CDP messages (JSON, NUL-terminated) on fd 3
and writes them on fd 4, so no websocket library and no driver download is needed.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1500,1000",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "/usr/bin/chromium"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@contextmanager
def chromium_or_skip():
    """A started Chromium, closed on exit; the calling test is skipped, saying why, when none is installed."""
    import pytest

    executable = find_chromium()
    if executable is None:
        pytest.skip("the browser test needs Chromium: apt-get install chromium (or set CHROMIUM to its path)")
    browser = Chromium(executable)
    try:
        yield browser
    finally:
        browser.close()


class CDPError(RuntimeError):
    pass


class Chromium:
    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="wanlean-chromium-")
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()

        import fcntl  # POSIX only; imported here so the module imports (and tests skip) elsewhere

        def child_fds():  # move the pipe ends to fds 3 (commands in) and 4 (answers out)
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_fds,
            pass_fds=(3, 4),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._lock = threading.Lock()
        self._answers: dict[int, queue.Queue] = {}
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_child_r, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\0" in buffer:
                    raw, buffer = buffer.split(b"\0", 1)
                    message = json.loads(raw)
                    if "id" in message and message["id"] in self._answers:
                        self._answers[message["id"]].put(message)
                    else:
                        self.events.append(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        with self._lock:
            self._next_id += 1
            message_id = self._next_id
            self._answers[message_id] = queue.Queue()
        message = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child_w, json.dumps(message).encode() + b"\0")
        try:
            answer = self._answers[message_id].get(timeout=timeout)
        except queue.Empty:
            raise CDPError(f"{method}: no answer within {timeout:.0f}s") from None
        finally:
            self._answers.pop(message_id, None)
        if "error" in answer:
            raise CDPError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def open_page(self, url: str) -> "Page":
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send("Emulation.setFocusEmulationEnabled", {"enabled": True})
        page.send("Page.bringToFront")
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        try:
            os.close(self._to_child_w)
        except OSError:
            pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def js(self, expression: str, timeout: float = 30.0):
        """Evaluate `expression` (awaiting a promise) and return its JSON value; page errors raise."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(details.get("exception", {}).get("description") or details.get("text"))
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.1):
        """Poll `expression` until it is truthy; returns its value. Raises with the last value on timeout."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.js(expression)
            except CDPError as exc:
                value = f"error: {exc}"
            else:
                if value:
                    return value
            time.sleep(interval)
        raise AssertionError(f"waited {timeout:.0f}s for `{expression}`; last value: {value!r}")

    def type_text(self, text: str) -> None:
        """Type into the focused element, as a keyboard would (the browser fires `input` events)."""
        self.send("Input.insertText", {"text": text})

    def press(self, key: str, code: str, key_code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code})
