"""The example workflow inside a real, headless ComfyUI, on the tiny pipeline (skipped without COMFYUI_PATH).

The workflow file is the UI format ComfyUI saves (it feeds the Template Browser); it is converted to the
API format here with the server's own /object_info, so the very file users get is what runs.
"""

import json
import os
import time
from pathlib import Path

import pytest
from wltest.comfy import ui_to_api
from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, save_tiny_folder, tiny_folder

pytestmark = pytest.mark.comfyui

WORKFLOW = Path(__file__).resolve().parents[1] / "example_workflows" / "wan22_t2v_diffusers.json"


@pytest.fixture(scope="module")
def tiny_in_comfy(comfy):
    """The tiny A14B pipeline inside the test ComfyUI's models/diffusers."""
    target = comfy.model_dir("diffusers") / "wan22-tiny-a14b"
    if not target.exists():
        os.symlink(tiny_folder("A14B"), target)
    return target.name


def example_api(comfy, folder_name, **sampler_inputs):
    api = ui_to_api(json.loads(WORKFLOW.read_text(encoding="utf-8")), comfy.object_info())
    by_type = {node["class_type"]: node for node in api.values()}
    by_type["WanLeanLoadDiffusers"]["inputs"].update(folder=folder_name, device="cpu")
    sampler = by_type["WanLeanSampler"]["inputs"]
    sampler.update(width=TINY_WIDTH, height=TINY_HEIGHT, frames=TINY_FRAMES, steps=2)
    sampler.update(sampler_inputs)
    return api


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_example_workflow_is_the_documented_graph():
    workflow = json.loads(WORKFLOW.read_text(encoding="utf-8"))
    types = [node["type"] for node in workflow["nodes"]]
    for node_type in ("WanLeanPromptTemplate", "WanLeanTokenCount", "WanLeanLoadDiffusers", "WanLeanSampler", "CreateVideo", "SaveVideo"):
        assert node_type in types
    sampler = next(node for node in workflow["nodes"] if node["type"] == "WanLeanSampler")
    assert sampler["widgets_values"][2:9] == [1280, 720, 81, 40, 4.0, 3.0, 12.0]  # official A14B


def test_example_workflow_runs_to_a_saved_video(comfy, tiny_in_comfy):
    api = example_api(comfy, tiny_in_comfy)
    entry = comfy.run(api, timeout=300)
    save_id = next(node_id for node_id, node in api.items() if node["class_type"] == "SaveVideo")
    saved = comfy.ui_of(entry, save_id)["images"][0]
    path = comfy.output / saved["subfolder"] / saved["filename"]
    assert path.suffix == ".mp4" and path.stat().st_size > 0
    assert count_frames(path) == TINY_FRAMES
    report_id = next(node_id for node_id, node in api.items() if node["class_type"] == "PreviewAny" and node["inputs"]["source"][0] == next(
        i for i, n in api.items() if n["class_type"] == "WanLeanSampler"))
    report = comfy.ui_of(entry, report_id)["text"][0]
    assert "high-noise expert" in report and "low-noise expert" in report and "forwards" in report


def test_bad_frames_fail_the_node_with_a_message_and_comfyui_keeps_running(comfy, tiny_in_comfy):
    entry = comfy.run(example_api(comfy, tiny_in_comfy, frames=80), timeout=120, expect="error")
    assert "frames must be 4k+1, e.g. 81; got 80" in comfy.error_message(entry)
    assert comfy.get("/system_stats").ok


def test_a_wan21_folder_is_refused_with_a_message(comfy):
    target = comfy.model_dir("diffusers") / "wan21-tiny"
    if not target.exists():
        save_tiny_folder(target, "Wan2.1")
    time.sleep(1.1)  # ComfyUI caches folder listings by mtime
    entry = comfy.run(example_api(comfy, "wan21-tiny"), timeout=120, expect="error")
    assert "Wan2.1 pipeline" in comfy.error_message(entry)


def test_cancel_mid_run_stops_within_a_step_and_the_next_run_works(comfy, tiny_in_comfy):
    import re

    size = dict(width=64, height=64, frames=17)
    # A short run first: the loader's output is then cached by ComfyUI, so the long run samples at once.
    warm = comfy.run(example_api(comfy, tiny_in_comfy, steps=4, seed=1, **size), timeout=300)
    report = next(ui["text"][0] for ui in warm["outputs"].values() if "forwards" in str(ui.get("text", "")))
    stage_seconds = [float(x) for x in re.findall(r"forwards?, cfg [\d.]+ \(\w+\), ([\d.]+) s", report)]
    seconds_per_step = sum(stage_seconds) / 4

    prompt_id = comfy.queue(example_api(comfy, tiny_in_comfy, steps=1000, seed=2, **size))
    started = time.monotonic()
    deadline = started + 60
    while time.monotonic() < deadline and not comfy.get("/queue").json().get("queue_running"):
        time.sleep(0.05)
    time.sleep(1.0)
    comfy.post("/interrupt")
    entry = comfy.wait(prompt_id, timeout=300)
    elapsed = time.monotonic() - started
    kinds = [kind for kind, _ in entry["status"].get("messages", [])]
    assert "execution_interrupted" in kinds
    assert elapsed < 1.0 + 0.5 * 1000 * seconds_per_step + 5  # far less than the 1000 steps would take
    assert comfy.get("/system_stats").ok
    comfy.run(example_api(comfy, tiny_in_comfy, seed=99), timeout=300)


@pytest.mark.parametrize("memory_mode", ["auto", "sequential_offload"])
def test_example_workflow_runs_in_auto_and_sequential_offload(comfy, tiny_in_comfy, memory_mode):
    """With the pack's requirements installed in ComfyUI's Python (accelerate among them), the example runs
    in the new default and in the streaming mode; without accelerate the latter names the package."""
    import subprocess

    api = example_api(comfy, tiny_in_comfy, steps=2)
    next(n for n in api.values() if n["class_type"] == "WanLeanLoadDiffusers")["inputs"]["memory_mode"] = memory_mode
    has_accelerate = subprocess.run([comfy.python, "-c", "import accelerate"], capture_output=True).returncode == 0
    if memory_mode == "sequential_offload" and not has_accelerate:
        entry = comfy.run(api, timeout=300, expect="error")
        assert "accelerate" in comfy.error_message(entry)
        return
    entry = comfy.run(api, timeout=300)
    report = next(ui["text"][0] for ui in entry["outputs"].values() if "forwards" in str(ui.get("text", "")))
    expected = "memory auto → gpu" if memory_mode == "auto" else "memory sequential_offload"
    assert expected in report
