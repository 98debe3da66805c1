"""WanLeanSpeed inside a real, headless ComfyUI (skipped without COMFYUI_PATH): the example workflow with the
node between the loader and the sampler reaches success and the report names the levers; an option the
device cannot run fails the node with the requirement named, and ComfyUI keeps running."""

import pytest
from test_wan_live import example_api, tiny_in_comfy  # noqa: F401 (fixture)

pytestmark = pytest.mark.comfyui


def with_speed_node(api, **options):
    loader_id = next(node_id for node_id, node in api.items() if node["class_type"] == "WanLeanLoadDiffusers")
    sampler = next(node for node in api.values() if node["class_type"] == "WanLeanSampler")
    inputs = {"pipe": [loader_id, 0], "attention": "auto", "compile": "off", "fp8_matmul": "off",
              "step_cache": "off", "cache_threshold": 0.05, **options}
    api["speed"] = {"class_type": "WanLeanSpeed", "inputs": inputs}
    sampler["inputs"]["pipe"] = ["speed", 0]
    return api


def test_loader_speed_sampler_reaches_success_and_reports_the_levers(comfy, tiny_in_comfy):  # noqa: F811
    api = with_speed_node(example_api(comfy, tiny_in_comfy, steps=4), step_cache="first_block", cache_threshold=0.5)
    entry = comfy.run(api, timeout=300)
    report = next(ui["text"][0] for ui in entry["outputs"].values() if "forwards" in str(ui.get("text", "")))
    assert "attention: auto → sdpa (cpu: PyTorch sdpa is the only kernel)" in report
    assert "step cache first_block (threshold 0.5): skipped " in report


def test_an_option_the_device_cannot_run_fails_the_node_with_the_requirement(comfy, tiny_in_comfy):  # noqa: F811
    api = with_speed_node(example_api(comfy, tiny_in_comfy, steps=2), attention="sage")
    entry = comfy.run(api, timeout=120, expect="error")
    assert "pip install sageattention" in comfy.error_message(entry)
    assert comfy.get("/system_stats").ok
