"""A tiny stand-in for ComfyUI's HTTP API (POST /prompt, GET /history/<id>, /queue, /system_stats,
/object_info, /view), served from a thread in the test process on 127.0.0.1: fast tests of `wanlean batch`.

Each queued prompt "runs" for `job_seconds` after the one before it (one worker, as ComfyUI) and saves
one file named after its prompt. `fail(prompt_text)` decides whether a run ends in an error.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def prompt_text(workflow: dict) -> str:
    """The text a test workflow carries: the first string input named prompt or text."""
    for node in workflow.values():
        for name in ("prompt", "text"):
            if isinstance(node.get("inputs", {}).get(name), str):
                return node["inputs"][name]
    return ""


class FakeComfy:
    def __init__(self, job_seconds: float = 0.05, fail=None, object_info: dict | None = None):
        self.job_seconds = job_seconds
        self.fail = fail or (lambda text: False)
        self.object_info = object_info or {}
        self.posted: list[tuple[str, dict]] = []  # (prompt_id, workflow) in order
        self.finish_at: dict[str, float] = {}
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.alive = True

    def stop(self) -> None:
        """The server goes away: later connections are refused."""
        if self.alive:
            self.alive = False
            self.httpd.shutdown()
            self.httpd.server_close()

    def in_flight(self, now: float) -> int:
        return sum(1 for t in self.finish_at.values() if t > now)

    def texts(self) -> list[str]:
        return [prompt_text(workflow) for _, workflow in self.posted]

    def _history(self, prompt_id: str) -> dict:
        with self.lock:
            finish = self.finish_at.get(prompt_id)
            workflow = dict(self.posted).get(prompt_id)
        if finish is None or finish > time.monotonic():
            return {}
        text = prompt_text(workflow)
        if self.fail(text):
            status = {"status_str": "error", "completed": False, "messages": [
                ["execution_error", {"node_id": "5", "node_type": "WanLeanSampler", "exception_type": "wanlean.WanLeanError",
                                     "exception_message": f"planted failure for {text}"}]]}
            return {prompt_id: {"outputs": {}, "status": status}}
        outputs = {"7": {"images": [{"filename": f"{text}.mp4", "subfolder": "video", "type": "output"}], "animated": [True]},
                   "8": {"text": ["report"]}}
        return {prompt_id: {"outputs": outputs, "status": {"status_str": "success", "completed": True, "messages": []}}}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/system_stats":
                    return self._send(200, {"system": {"comfyui_version": "fake"}, "devices": []})
                if url.path == "/object_info":
                    return self._send(200, fake.object_info)
                if url.path.startswith("/history/"):
                    return self._send(200, fake._history(url.path[len("/history/"):]))
                if url.path == "/queue":
                    now = time.monotonic()
                    with fake.lock:
                        items = [[i, pid, {}, {}, []] for i, (pid, t) in enumerate(fake.finish_at.items()) if t > now]
                    return self._send(200, {"queue_running": items[:1], "queue_pending": items[1:]})
                if url.path == "/view":
                    name = parse_qs(url.query)["filename"][0]
                    return self._send(200, f"video bytes of {name}".encode())
                return self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                workflow, prompt_id = body["prompt"], body.get("prompt_id") or f"auto{len(fake.posted)}"
                if prompt_text(workflow) == "REFUSE":
                    return self._send(400, {"error": {"message": "Prompt outputs failed validation", "details": ""},
                                            "node_errors": {"5": {"class_type": "WanLeanSampler", "errors": [{"message": "planted refusal", "details": ""}]}}})
                now = time.monotonic()
                with fake.lock:
                    start = max([now] + list(fake.finish_at.values()))
                    fake.finish_at[prompt_id] = start + fake.job_seconds
                    fake.posted.append((prompt_id, workflow))
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight(now))
                return self._send(200, {"prompt_id": prompt_id, "number": len(fake.posted), "node_errors": {}})

        return Handler
