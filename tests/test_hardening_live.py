"""Hardening checks inside a real, headless ComfyUI (skipped without COMFYUI_PATH): bodies the route cannot
parse are a 400, a broken character in the prompt does not fail the sampler, a tampered disk-cache entry is
never used, and the server keeps answering."""

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import save_file
from wltest.comfy import ui_to_api
from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, tiny_folder

pytestmark = pytest.mark.comfyui

WORKFLOW = Path(__file__).resolve().parents[1] / "example_workflows" / "wan22_t2v_diffusers.json"


@pytest.mark.parametrize("body", [b"[" * 50_000 + b"]" * 50_000, b'{"text": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"])
def test_route_answers_400_for_deeply_nested_json(comfy, body):
    response = comfy.post("/wanlean/tokens", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json()["error"]
    assert comfy.get("/system_stats").ok


@pytest.fixture(scope="module")
def tiny_a14b(comfy):
    target = comfy.model_dir("diffusers") / "wan22-tiny-a14b-hardening"
    if not target.exists():
        os.symlink(tiny_folder("A14B"), target)
    return target.name


def sampler_workflow(comfy, folder, prompt, **sampler_inputs):
    """The example workflow with the prompt typed straight into the sampler, and its report previewed."""
    api = ui_to_api(json.loads(WORKFLOW.read_text(encoding="utf-8")), comfy.object_info())
    by_type = {node["class_type"]: (node_id, node) for node_id, node in api.items()}
    by_type["WanLeanLoadDiffusers"][1]["inputs"].update(folder=folder, device="cpu")
    sampler_id, sampler = by_type["WanLeanSampler"]
    sampler["inputs"].update(prompt=prompt, width=TINY_WIDTH, height=TINY_HEIGHT, frames=TINY_FRAMES, steps=1, **sampler_inputs)
    api["900"] = {"class_type": "PreviewAny", "inputs": {"source": [sampler_id, 3]}}
    return api, sampler_id


def test_a_broken_character_in_the_prompt_is_replaced_with_a_note(comfy, tiny_a14b):
    api, sampler_id = sampler_workflow(comfy, tiny_a14b, "a red fox \ud83d runs through snow")
    entry = comfy.run(api, timeout=300)
    report = comfy.ui_of(entry, sampler_id)["text"][0]
    assert "note: prompt: 1 broken character" in report
    assert comfy.get("/system_stats").ok


@pytest.mark.parametrize("damage", ["edited bytes", "wrong width"])
def test_a_damaged_disk_cache_entry_is_never_used(comfy, tiny_a14b, damage):
    """An entry is planted for a prompt never run (the memory cache cannot hold it), by copying a real
    entry under that prompt's name and damaging it; the run must encode the prompt again."""
    import torch
    from safetensors import safe_open

    from wanlean.video.embedding_cache import cache_key, rows_checksum
    from wanlean.video.text_encoding import clean_prompt

    seen = "a grey heron stands in a shallow river"
    api, sampler_id = sampler_workflow(comfy, tiny_a14b, seen, text_cache="memory + disk", seed=11)
    comfy.run(api, timeout=300)
    cache_root = comfy.base / "output" / "wanlean" / "text_embedding_cache"
    real = max(cache_root.rglob("*.safetensors"), key=lambda p: p.stat().st_mtime)
    with safe_open(str(real), framework="pt") as f:
        metadata, rows = f.metadata(), f.get_tensor("embeds")

    planted_prompt = f"a heron, never run before ({damage})"
    planted = real.parent / (cache_key(metadata["encoder"], clean_prompt(planted_prompt)) + ".safetensors")
    if damage == "edited bytes":
        metadata = {**metadata, "sha256": rows_checksum(rows)}
        rows = rows.clone()
        rows[-1, -1] += 1.0  # the checksum no longer matches
    else:
        rows = torch.ones(rows.shape[0], rows.shape[1] * 2, dtype=rows.dtype)
        metadata = {**metadata, "sha256": rows_checksum(rows)}
    save_file({"embeds": rows}, str(planted), metadata=metadata)

    api, sampler_id = sampler_workflow(comfy, tiny_a14b, planted_prompt, text_cache="memory + disk", seed=12)
    report = comfy.ui_of(comfy.run(api, timeout=300), sampler_id)["text"][0]
    prompt_line = next(line for line in report.splitlines() if line.lstrip().startswith("prompt"))
    assert "cache miss" in prompt_line and "hit (disk)" not in prompt_line, report
    assert comfy.get("/system_stats").ok


def test_a_small_request_during_a_burst_of_long_ones_is_answered(comfy):
    """24 long texts at once: each is counted or turned away with 503 'busy', never a 500; a short request
    sent in the middle of the burst gets its count, and ComfyUI keeps answering."""
    from concurrent.futures import ThreadPoolExecutor

    long_body = {"text": ("a red fox runs through deep snow 一只狐狸 " * 5000)[:150_000], "tokenizer": "estimate"}

    def send_long(_):
        return comfy.post("/wanlean/tokens", json=long_body, timeout=120)

    with ThreadPoolExecutor(max_workers=24) as pool:
        burst = [pool.submit(send_long, i) for i in range(24)]
        small = comfy.post("/wanlean/tokens", json={"text": "a red fox", "tokenizer": "estimate"}, timeout=60)
        stats = comfy.get("/system_stats", timeout=60)
        answers = [future.result() for future in burst]
    assert small.status_code == 200 and small.json()["tokens"] > 1
    assert stats.ok
    assert {a.status_code for a in answers} <= {200, 503}
    assert all(a.json()["error"].startswith("busy:") for a in answers if a.status_code == 503)
    assert any(a.status_code == 200 for a in answers)


def test_a_huge_size_is_refused_at_once_with_what_fits(comfy, tiny_a14b):
    """8192×8192×10001 is within the inputs' limits; the sampler refuses it before allocating (it used to
    end in torch's raw allocator message), and the server keeps answering."""
    import time

    api, sampler_id = sampler_workflow(comfy, tiny_a14b, "a red fox runs through snow", seed=13)
    api[sampler_id]["inputs"].update(width=8192, height=8192, frames=10001)
    started = time.perf_counter()
    entry = comfy.run(api, timeout=120, expect="error")
    message = comfy.error_message(entry)
    assert message.startswith("wanlean.WanLeanError: width/height/frames: 8192×8192×10001 needs at least "), message
    assert "The largest that fits: " in message
    assert time.perf_counter() - started < 60
    assert comfy.get("/system_stats").ok
