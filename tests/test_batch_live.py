"""`wanlean batch` against two real, headless ComfyUI servers with the tiny A14B pipeline (skipped without
COMFYUI_PATH): six prompts over both, one server killed mid-run, every job finished exactly once, and a
second run that finds nothing to do."""

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest
from wltest.comfy import ComfyServer, comfyui_path, ui_to_api
from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, tiny_folder

from wanlean import cli

pytestmark = pytest.mark.comfyui

WORKFLOW = Path(__file__).resolve().parents[1] / "example_workflows" / "wan22_t2v_diffusers.json"
TINY_NAME = "wan22-tiny-a14b"


def with_tiny_model(server):
    target = server.model_dir("diffusers") / TINY_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.symlink(tiny_folder("A14B"), target)


@pytest.fixture
def second_comfy():
    base = Path(tempfile.mkdtemp(prefix="wanlean-comfy-b-"))
    server = ComfyServer(comfyui_path(), base)
    with_tiny_model(server)
    server.start()
    yield server
    server.stop()


def events(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_batch_over_two_servers_survives_one_being_killed(comfy, second_comfy, tmp_path):
    with_tiny_model(comfy)
    time.sleep(1.1)  # ComfyUI caches folder listings by mtime
    api = ui_to_api(json.loads(WORKFLOW.read_text(encoding="utf-8")), comfy.object_info())
    by_type = {node["class_type"]: node for node in api.values()}
    by_type["WanLeanLoadDiffusers"]["inputs"].update(folder=TINY_NAME, device="cpu")
    by_type["WanLeanSampler"]["inputs"].update(width=TINY_WIDTH, height=TINY_HEIGHT, frames=TINY_FRAMES, steps=1)
    workflow = tmp_path / "tiny_api.json"
    workflow.write_text(json.dumps(api))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"a red fox, take {i}", "seed": i}) + "\n" for i in range(6)))
    ledger = tmp_path / "prompts.batch.jsonl"
    argv = ["batch", str(prompts), "--workflow", str(workflow), "--server", comfy.url, "--server", second_comfy.url,
            "--no-progress-bar", "--download", str(tmp_path / "videos")]

    codes = []
    runner = threading.Thread(target=lambda: codes.append(cli.main(argv)))
    runner.start()
    deadline = time.monotonic() + 300
    killed = False
    while runner.is_alive() and time.monotonic() < deadline:
        if ledger.exists():
            seen = events(ledger)
            on_b = [e for e in seen if e["event"] == "queued" and e["server"] == second_comfy.url]
            if on_b and any(e["event"] == "done" for e in seen) and not killed:
                second_comfy.process.kill()  # gone at once, mid-run, with jobs queued there
                killed = True
        time.sleep(0.05)
    runner.join(timeout=300)
    assert killed and codes == [0], f"exit {codes}; ledger:\n{ledger.read_text()}"

    seen = events(ledger)
    done = [e for e in seen if e["event"] == "done"]
    assert len(done) == 6 and len({e["job"] for e in done}) == 6 and sorted(e["line"] for e in done) == list(range(1, 7))
    assert any(e["event"] == "moved" and e["server"] == second_comfy.url for e in seen)
    for event in done:
        assert [item["filename"].endswith(".mp4") for item in event["outputs"]] == [True]
    # Downloads come from the server that made each video; the killed one's are named as missing.
    on_a = sorted(e["line"] for e in done if e["server"] == comfy.url)
    assert sorted(int(name[4:8]) for name in os.listdir(tmp_path / "videos")) == on_a

    before = len(seen)
    assert cli.main(argv[:-2]) == 0  # resume: everything is done, nothing is queued
    assert len(events(ledger)) == before
