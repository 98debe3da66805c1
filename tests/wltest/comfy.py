"""Run this pack inside a real, headless ComfyUI (COMFYUI_PATH) and talk to it over HTTP.

The server gets its own temporary base folder: `custom_nodes/comfyui-wanlean` links to this working tree,
and the model folders (`text_encoders`, `diffusion_models`, `vae`, `loras`, `diffusers`) are empty test
folders that tests fill before they queue a workflow (ComfyUI rescans a folder when it changes).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
from wanlean.batch.workflow import ui_to_api  # noqa: F401  (shared with `wanlean batch`; tests import it from here)

PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_FOLDER_NAME = "comfyui-wanlean"
MODEL_KINDS = ("text_encoders", "diffusion_models", "vae", "loras", "diffusers")
SKIP_REASON = (
    "set COMFYUI_PATH to a ComfyUI checkout (0.8.0 or newer) and run pytest with a Python that has "
    "ComfyUI's requirements installed (or name one in COMFYUI_PYTHON) to run the real-ComfyUI tests"
)


def comfyui_path() -> Path | None:
    value = os.environ.get("COMFYUI_PATH")
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    return path if (path / "main.py").is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, comfy_path: Path, base: Path, python: str | None = None, extra_args: tuple[str, ...] = ()):
        self.comfy_path = comfy_path
        self.extra_args = list(extra_args)  # more command-line options for main.py (e.g. --preview-method)
        self.base = base
        self.python = python or os.environ.get("COMFYUI_PYTHON") or sys.executable
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.models = base / "models"
        self.output = base / "output"
        self.log_path = base / "comfyui.log"
        self.process: subprocess.Popen | None = None

    def model_dir(self, kind: str) -> Path:
        return self.models / kind

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> None:
        custom_nodes = self.base / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        link = custom_nodes / PACK_FOLDER_NAME
        if not link.exists():
            link.symlink_to(PACK_ROOT, target_is_directory=True)
        lines = ["wanlean_tests:", f"    base_path: {self.base}", "    custom_nodes: custom_nodes/"]
        for kind in MODEL_KINDS:
            self.model_dir(kind).mkdir(parents=True, exist_ok=True)
            lines.append(f"    {kind}: models/{kind}/")
        paths_file = self.base / "extra_model_paths.yaml"
        paths_file.write_text("\n".join(lines) + "\n")
        for folder in ("output", "input", "temp", "user"):
            (self.base / folder).mkdir(exist_ok=True)
        cmd = [
            self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--disable-auto-launch", "--extra-model-paths-config", str(paths_file),
            "--output-directory", str(self.base / "output"), "--input-directory", str(self.base / "input"),
            "--temp-directory", str(self.base / "temp"), "--user-directory", str(self.base / "user"),
            "--database-url", "sqlite:///:memory:",
            *self.extra_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        self._log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, cwd=self.comfy_path, stdout=self._log_file, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}; log:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.url}/system_stats", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer /system_stats within {timeout:.0f}s; log:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log_file", None):
            self._log_file.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pack_import_failed(self) -> bool:
        return any("IMPORT FAILED" in line and PACK_FOLDER_NAME in line for line in self.log().splitlines())

    # --- API -------------------------------------------------------------------------------------
    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=kw.pop("timeout", 30), **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(f"{self.url}{path}", timeout=kw.pop("timeout", 30), **kw)

    def object_info(self, node_id: str | None = None) -> dict:
        response = self.get(f"/object_info/{node_id}" if node_id else "/object_info")
        response.raise_for_status()
        return response.json()

    def queue(self, workflow: dict) -> str:
        """POST an API-format workflow; returns its prompt_id. A 400 raises with ComfyUI's node_errors."""
        response = self.post("/prompt", json={"prompt": workflow, "client_id": self.client_id})
        if response.status_code != 200:
            raise AssertionError(f"/prompt refused the workflow ({response.status_code}): {response.text}")
        return response.json()["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """The /history entry of a finished prompt (success or error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}").json()
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.2)
        raise AssertionError(f"prompt {prompt_id} did not finish within {timeout:.0f}s; log tail:\n{self.log()[-3000:]}")

    def run(self, workflow: dict, timeout: float = 300.0, expect: str = "success") -> dict:
        entry = self.wait(self.queue(workflow), timeout)
        status = entry["status"]["status_str"]
        if status != expect:
            raise AssertionError(
                f"workflow ended with '{status}', expected '{expect}': "
                f"{json.dumps(entry['status'].get('messages'), indent=1)[-4000:]}"
            )
        return entry

    @staticmethod
    def error_message(entry: dict) -> str:
        """The exception message of a failed run, from /history."""
        for kind, data in entry["status"].get("messages", []):
            if kind == "execution_error":
                return f"{data.get('exception_type')}: {data.get('exception_message')}"
        return ""

    @staticmethod
    def ui_of(entry: dict, node: str) -> dict:
        """What node `node` returned under "ui" (as shown in the frontend)."""
        return entry.get("outputs", {}).get(str(node), {})
