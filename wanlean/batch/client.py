"""A ComfyUI server over its HTTP API, with the standard library only (no `requests`).

POST /prompt, GET /history/<id>, GET /queue, GET /system_stats, GET /object_info, GET /view. A server
that cannot be reached raises `ServerGone`; one that answers with an error status returns it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid


class ServerGone(OSError):
    """The server did not answer (refused, reset, timed out): it is down or unreachable."""

    def __init__(self, url: str, reason: str, refused: bool = False):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.refused = refused  # refused/reset: the process is gone, not merely slow


class ComfyClient:
    def __init__(self, url: str, timeout: float = 10.0):
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        self.url = url
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def request(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except urllib.error.URLError as exc:
            reason = exc.reason
            refused = isinstance(reason, (ConnectionRefusedError, ConnectionResetError))
            raise ServerGone(self.url, str(reason), refused) from None
        except (ConnectionError, http.client.HTTPException) as exc:
            raise ServerGone(self.url, f"{type(exc).__name__}: {exc}", True) from None
        except (socket.timeout, TimeoutError):
            raise ServerGone(self.url, f"no answer within {timeout or self.timeout:g} s") from None

    def get_json(self, path: str, timeout: float | None = None):
        status, payload = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ServerGone(self.url, f"GET {path} answered {status}")
        try:
            return json.loads(payload)
        except ValueError:
            raise ServerGone(self.url, f"GET {path} answered something that is not JSON (is this a ComfyUI server?)") from None

    def system_stats(self, timeout: float | None = None) -> dict:
        return self.get_json("/system_stats", timeout)

    def object_info(self) -> dict:
        return self.get_json("/object_info", timeout=max(self.timeout, 60.0))

    def queue_prompt(self, workflow: dict, prompt_id: str | None = None) -> tuple[str | None, str]:
        """(prompt_id, "") when queued; (None, ComfyUI's reason) when the server refused the workflow.
        A `prompt_id` chosen here (ComfyUI takes one) can be written down before the request is sent."""
        body = {"prompt": workflow, "client_id": self.client_id}
        if prompt_id:
            body["prompt_id"] = prompt_id
        status, payload = self.request("POST", "/prompt", body)
        try:
            answer = json.loads(payload)
        except ValueError:
            answer = {}
        if status == 200 and answer.get("prompt_id"):
            return answer["prompt_id"], ""
        return None, refusal_text(status, answer, payload)

    def history(self, prompt_id: str) -> dict | None:
        """The /history entry of a finished prompt, or None while it is queued or running (or unknown)."""
        entry = self.get_json(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)
        if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
            return entry
        if entry and entry.get("status", {}).get("completed"):
            return entry
        return None

    def queued_ids(self) -> set[str]:
        """prompt_ids running or waiting in the server's queue."""
        queue = self.get_json("/queue")
        return {item[1] for key in ("queue_running", "queue_pending") for item in queue.get(key, []) if len(item) > 1}

    def download(self, item: dict, target: str) -> None:
        """Save one output file (/view) to `target`, written beside it first and renamed when whole."""
        query = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")})
        partial = f"{target}.{os.getpid()}.part"
        try:
            with urllib.request.urlopen(f"{self.url}/view?{query}", timeout=max(self.timeout, 120.0)) as response, open(partial, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
            os.replace(partial, target)
        except (urllib.error.URLError, OSError) as exc:
            try:
                os.remove(partial)
            except OSError:
                pass
            raise ServerGone(self.url, f"download of {item['filename']} failed ({exc})") from None


def refusal_text(status: int, answer: dict, payload: bytes) -> str:
    """ComfyUI's reason for refusing a workflow (400 with error and node_errors), as one line."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if not error:
        return f"POST /prompt answered {status}: {payload[:300].decode('utf-8', 'replace')}"
    text = error.get("message", "") if isinstance(error, dict) else str(error)
    details = error.get("details", "") if isinstance(error, dict) else ""
    parts = [text + (f": {details}" if details else "")]
    for node_id, node_error in (answer.get("node_errors") or {}).items():
        for problem in node_error.get("errors", []):
            parts.append(f"node {node_id} ({node_error.get('class_type', '?')}): {problem.get('message', '')} {problem.get('details', '')}".strip())
    return "; ".join(parts)


def error_of(entry: dict) -> str:
    """The error a failed run reports in /history, as one line."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return f"node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_type')}: {data.get('exception_message', '').strip()}"
        if kind == "execution_interrupted":
            return "interrupted on the server"
    return "the run ended with an error (no message in /history)"


def output_files(entry: dict) -> list[dict]:
    """Every saved file a finished run lists in /history: {"node", "filename", "subfolder", "type"}."""
    files = []
    for node_id, ui in sorted(entry.get("outputs", {}).items()):
        for value in ui.values():
            if not isinstance(value, list):
                continue
            for item in value:
                if isinstance(item, dict) and "filename" in item and item.get("type", "output") == "output":
                    files.append({"node": node_id, "filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": "output"})
    return files
