"""Template -> compress -> truncate -> token count as a workflow in a real, headless ComfyUI (skipped
without COMFYUI_PATH), and the prompt tools' bad-input messages there."""

import pytest
import sentencepiece as spm

from wanlean.prompt import template
from wanlean.prompt.words import is_subsequence, words
from wltest.tiny import write_text_encoder_file

pytestmark = pytest.mark.comfyui

ENCODER = "umt5_tiny_prompt_tools.safetensors"


@pytest.fixture(scope="module")
def encoder(comfy, spiece_bytes):
    write_text_encoder_file(comfy.model_dir("text_encoders") / ENCODER, spiece_bytes)
    return spm.SentencePieceProcessor(model_proto=spiece_bytes)


def _template_inputs():
    inputs = {slot: template.NONE for slot in template.PRESET_SLOTS}
    inputs.update(
        subject="a very old lighthouse keeper with a really long grey beard",
        scene="on a small rocky island in the middle of a stormy sea, please",
        motion="he slowly climbs the spiral stairs and does not look back",
        lighting="backlight / 背光", camera_angle="low angle / 低角度", camera_movement="tracking shot / 跟随镜头",
        style_text="oil painting", language="english", joiner="sentence",
    )
    return inputs


def test_nodes_are_listed_with_tooltips_and_the_tokenizer_files(comfy, encoder):
    info = comfy.object_info()
    for node_id in ("WanLeanCompress", "WanLeanTruncate"):
        assert info[node_id]["category"] == "WanLean/prompt"
        required = info[node_id]["input"]["required"]
        assert required["tokenizer"][0][0] == "estimate" and ENCODER in required["tokenizer"][0]
        assert all(spec[1].get("tooltip") for spec in required.values())
    assert info["WanLeanCompress"]["input"]["optional"]["model"][0][0] == "none"


def test_template_compress_truncate_count_workflow(comfy, encoder):
    max_tokens = 40
    workflow = {
        "1": {"class_type": "WanLeanPromptTemplate", "inputs": _template_inputs()},
        "2": {"class_type": "WanLeanCompress", "inputs": {
            "text": ["1", 0], "method": "extractive", "target_ratio": 0.7, "keep": ["1", 1], "tokenizer": ENCODER}},
        "3": {"class_type": "WanLeanTruncate", "inputs": {
            "text": ["2", 0], "max_tokens": max_tokens, "tail_tokens": -1, "tokenizer": ENCODER}},
        "4": {"class_type": "WanLeanTokenCount", "inputs": {"text": ["3", 0], "tokenizer": ENCODER, "budget": max_tokens}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        "11": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
        "12": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
        "13": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
        "14": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},
    }
    entry = comfy.run(workflow, timeout=120)
    prompt = comfy.ui_of(entry, "10")["text"][0]
    compressed = comfy.ui_of(entry, "11")["text"][0]
    cut = comfy.ui_of(entry, "12")["text"][0]
    counted = int(comfy.ui_of(entry, "13")["text"][0])
    dropped = comfy.ui_of(entry, "14")["text"][0]

    assert prompt.startswith("a very old lighthouse keeper")
    assert is_subsequence(words(compressed), words(prompt)) and len(compressed) <= len(prompt)
    # keywords -> keep: the subject, scene and motion as typed are never dropped (issue 11), filler and all
    for typed in ("a very old lighthouse keeper with a really long grey beard", "he slowly climbs the spiral stairs"):
        assert typed in compressed, typed
    for kept in ("backlight", "low angle", "tracking shot", "oil painting", "not look back", "grey beard"):
        assert kept in compressed, kept
    compress_report = comfy.ui_of(entry, "2")["text"][0]
    assert "words added: 0" in compress_report and "exact (umT5 sentencepiece" in compress_report

    assert counted == len(encoder.encode(cut)) + 1 <= max_tokens
    assert dropped and cut.endswith("painting.")  # the tail (style) survives the cut
    assert "kept tail" in comfy.ui_of(entry, "3")["text"][0]


def test_target_ratio_out_of_range_is_refused_before_running(comfy):
    workflow = {
        "1": {"class_type": "WanLeanCompress", "inputs": {"text": "a cat", "method": "extractive", "target_ratio": 1.5, "keep": "", "tokenizer": "estimate"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    response = comfy.post("/prompt", json={"prompt": workflow})
    assert response.status_code == 400 and "target_ratio" in response.text


def test_empty_text_passes_through_with_a_note(comfy):
    workflow = {
        "1": {"class_type": "WanLeanCompress", "inputs": {"text": "", "method": "extractive", "target_ratio": 0.7, "keep": "", "tokenizer": "estimate"}},
        "2": {"class_type": "WanLeanTruncate", "inputs": {"text": ["1", 0], "max_tokens": 512, "tail_tokens": -1, "tokenizer": "estimate"}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }
    entry = comfy.run(workflow, timeout=60)
    assert "empty text" in comfy.ui_of(entry, "1")["text"][0]
    assert "passed through" in comfy.ui_of(entry, "3")["text"][0]


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"method": "token-classifier"}, "need a model"),
        ({"method": "summarize", "model_id": "nobody/no-such-model"}, "not in the local Hugging Face cache"),
        ({"method": "token-classifier", "model_id": "not a valid id!"}, "is not a Hugging Face id (owner/name"),
        ({"method": "token-classifier", "model_id": "/root"}, "is not a Hugging Face id (owner/name"),
        ({"method": "token-classifier", "model_id": "../../../../etc"}, "is not a Hugging Face id (owner/name"),
    ],
)
def test_model_problems_fail_the_node_with_a_message(comfy, inputs, message):
    node_inputs = {"text": "a red fox runs at dawn", "target_ratio": 0.7, "keep": "", "tokenizer": "estimate", **inputs}
    workflow = {
        "1": {"class_type": "WanLeanCompress", "inputs": node_inputs},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    entry = comfy.run(workflow, timeout=60, expect="error")
    assert message in comfy.error_message(entry)
    assert "it holds" not in comfy.error_message(entry)  # no folder outside the model folders is listed
    assert comfy.get("/system_stats").ok
