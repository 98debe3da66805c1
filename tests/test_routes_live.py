"""WanLeanTokenCount, WanLeanGenerationCost and POST /wanlean/tokens inside a real, headless ComfyUI
(skipped without COMFYUI_PATH)."""

import json

import pytest

from wltest.tiny import write_text_encoder_file

pytestmark = pytest.mark.comfyui

ENCODER = "umt5_tiny_live.safetensors"


@pytest.fixture(scope="module")
def encoders(comfy, spiece_bytes):
    """models/text_encoders with a tiny umT5 file, a VAE picked by mistake, a truncated file and a pickle."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = comfy.model_dir("text_encoders")
    write_text_encoder_file(folder / ENCODER, spiece_bytes)
    save_file({"decoder.conv1.weight": np.zeros((2, 2), np.float16)}, str(folder / "wan_vae_by_mistake.safetensors"))
    truncated = write_text_encoder_file(folder / "truncated.safetensors", spiece_bytes)
    truncated.write_bytes(truncated.read_bytes()[:-500])
    (folder / "old_format.bin").write_bytes(b"\x80\x04not a safetensors file")
    return folder


def _count_workflow(text, tokenizer, budget=512, negative=""):
    return {
        "1": {"class_type": "WanLeanTokenCount", "inputs": {"text": text, "tokenizer": tokenizer, "budget": budget, "negative": negative}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }


def test_tokenizer_list_is_estimate_then_the_text_encoders(comfy, encoders):
    choices = comfy.object_info("WanLeanTokenCount")["WanLeanTokenCount"]["input"]["required"]["tokenizer"][0]
    assert choices[0] == "estimate" and ENCODER in choices


def test_token_count_runs_in_a_workflow(comfy, encoders, sp):
    text, negative = "a red fox runs through deep snow at dawn", "模糊，低质量"
    entry = comfy.run(_count_workflow(text, ENCODER, 512, negative), timeout=60)
    summary = comfy.ui_of(entry, "1")["text"][0]
    prompt_tokens = len(sp.encode(text)) + 1
    assert f"prompt: {prompt_tokens} / 512 tokens" in summary and "exact" in summary
    assert f"negative: {len(sp.encode(negative)) + 1} / 512 tokens" in summary
    assert comfy.ui_of(entry, "2")["text"] == [str(prompt_tokens)]


def test_estimate_runs_without_any_file(comfy):
    entry = comfy.run(_count_workflow("a red fox", "estimate", 2), timeout=60)
    assert "ESTIMATE" in comfy.ui_of(entry, "1")["text"][0]


def test_a_vae_picked_by_mistake_fails_the_node_with_a_message(comfy, encoders):
    entry = comfy.run(_count_workflow("fox", "wan_vae_by_mistake.safetensors"), timeout=60, expect="error")
    message = comfy.error_message(entry)
    assert "WanLeanError" in message and "looks like a VAE" in message
    assert comfy.get("/system_stats").ok


def test_generation_cost_runs_in_a_workflow(comfy):
    inputs = dict(model="A14B", width=832, height=480, frames=81, steps=40, cfg_high=4.0, cfg_low=3.0,
                  boundary=0.875, shift=12.0, sampler="unipc", price_per_second=0.0)
    workflow = {
        "1": {"class_type": "WanLeanGenerationCost", "inputs": inputs},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}},
    }
    entry = comfy.run(workflow, timeout=120)
    assert comfy.ui_of(entry, "2")["text"] == ["32760"]
    summary = comfy.ui_of(entry, "1")["text"][0]
    assert "26 high-noise + 14 low-noise" in summary and "Prompt length does not drive this cost" in summary
    bad = dict(inputs, frames=80)
    entry = comfy.run({"1": {"class_type": "WanLeanGenerationCost", "inputs": bad}, "2": workflow["2"]}, timeout=60, expect="error")
    assert "frames must be 4k+1, e.g. 81; got 80" in comfy.error_message(entry)


# --- the route ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_route_counts_exactly(comfy, encoders, sp, prefix):
    response = comfy.post(f"{prefix}/wanlean/tokens", json={"text": "a red fox", "tokenizer": ENCODER, "negative": "blurry", "budget": 4})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["tokens"] == len(sp.encode("a red fox")) + 1 and answer["exact"] is True
    assert answer["negative"]["tokens"] == len(sp.encode("blurry")) + 1
    assert answer["over_budget"] == (answer["tokens"] > 4)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"text": "x", "tokenizer": "not_there.safetensors"}, "is not in models/text_encoders"),
        ({"text": "x", "tokenizer": "../text_encoders/" + ENCODER}, "is not a file name from models/text_encoders"),
        ({"text": "x", "tokenizer": "/etc/hostname"}, "is not a file name from models/text_encoders"),
        ({"text": "x", "tokenizer": "wan_vae_by_mistake.safetensors"}, "looks like a VAE"),
        ({"text": "x", "tokenizer": "truncated.safetensors"}, "truncated"),
        ({"text": "x", "tokenizer": "old_format.bin"}, "not a .safetensors file"),
        ({"tokenizer": "estimate"}, "text is required"),
        ({"text": "x", "tokenizer": "estimate", "budget": -1}, "budget must be"),
    ],
)
def test_route_refuses_bad_requests_with_a_message(comfy, encoders, body, message):
    response = comfy.post("/wanlean/tokens", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_route_refuses_non_json_and_big_bodies(comfy):
    response = comfy.post("/wanlean/tokens", data=b"\x00\xffnot json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["error"]
    big = json.dumps({"text": "a" * (1024 * 1024 + 10), "tokenizer": "estimate"})
    response = comfy.post("/api/wanlean/tokens", data=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "over 1 MB" in response.json()["error"]
    assert comfy.get("/system_stats").ok


def _chunked(body: bytes, size: int = 64 * 1024):
    """A generator body: requests sends it with Transfer-Encoding: chunked and no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_route_caps_a_streamed_body_without_content_length(comfy):
    small = json.dumps({"text": "a red fox", "tokenizer": "estimate"}).encode()
    response = comfy.post("/wanlean/tokens", data=_chunked(small, 4), headers={"Content-Type": "application/json"})
    assert response.request.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in response.request.headers
    assert response.status_code == 200 and response.json()["tokens"] == 4
    big = json.dumps({"text": "a" * (1024 * 1024 + 10), "tokenizer": "estimate"}).encode()
    response = comfy.post("/api/wanlean/tokens", data=_chunked(big), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "over 1 MB" in response.json()["error"]
    assert comfy.get("/system_stats").ok


def test_route_takes_odd_and_long_text(comfy, encoders, sp):
    cases = {
        "": 1,
        "fox \ud83e": len(sp.encode("fox \ufffd")) + 1,  # half an emoji: a lone surrogate
        "🦊\u200d\u0301 שלום\x00": len(sp.encode("🦊\u200d\u0301 שלום\x00")) + 1,
    }
    for text, expected in cases.items():
        body = json.dumps({"text": text, "tokenizer": ENCODER})  # ensure_ascii: the surrogate travels as \ud83e
        response = comfy.post("/wanlean/tokens", data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 200 and response.json()["tokens"] == expected, (text, response.text)
    long_text = ("a red fox runs 一只狐狸 " * 6000)[:100_000]
    response = comfy.post("/wanlean/tokens", json={"text": long_text, "tokenizer": ENCODER})
    assert response.status_code == 200 and response.json()["tokens"] == len(sp.encode(long_text)) + 1
    assert response.json()["prompt"]["lost_from"]
    assert comfy.get("/system_stats").ok
