"""The prompt nodes log one row per prompt (in-process, the pack imported as ComfyUI imports it, the log
pointed at a test folder): TokenCount with its flags in the report, Compress and Truncate with tokens
before/after, the Sampler with the model's own count; the settings switch logging and text storage."""

import json
import os

import pytest
from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, tiny_folder

from wanlean import tokens

JUNK = "cat cat cat cat cat cat\u200b sitting on a mat"


@pytest.fixture()
def prompt_log(pack, tmp_path):
    """The pack's prompt log, writing to tmp_path; returns a function giving the stored rows."""
    module = pack.nodes.prompt_log
    settings = tmp_path / "default" / "comfy.settings.json"
    module.use(str(tmp_path / "wanlean" / "prompt_log.sqlite3"), str(settings))

    def rows():
        module.current().writer.flush(10)
        return module.current().store.rows()

    rows.settings = settings
    yield rows
    module.use(None)


def test_outside_comfyui_nothing_is_logged(pack):
    assert pack.nodes._comfy.user_directory() is None
    assert pack.nodes.prompt_log.current() is None


def test_token_count_logs_its_prompt_and_reports_the_flags(pack, prompt_log):
    node = pack.NODE_CLASS_MAPPINGS["WanLeanTokenCount"]()
    out = node.run(JUNK, "estimate", 512, negative="blurry")
    report = out["result"][2]
    assert "⚠ repeated phrase" in report and "⚠ invisible characters" in report
    (row,) = prompt_log()
    assert row["source"] == "WanLeanTokenCount" and row["text"] == JUNK and row["tokenizer"] == "estimate"
    assert row["tokens"] == out["result"][0] and row["flags"] == "repetition,invisible"
    assert row["tokens_before"] is None


def test_empty_prompts_are_not_logged(pack, prompt_log):
    pack.NODE_CLASS_MAPPINGS["WanLeanTokenCount"]().run("   ", "estimate", 512)
    assert prompt_log() == []


def test_compress_and_truncate_log_tokens_before_and_after(pack, prompt_log):
    text = ("A very old lighthouse keeper with a really long grey beard slowly climbs the spiral stairs, "
            "please, in the background the stormy sea crashes against the rocks, cinematic, oil painting. ") * 3
    compressed = pack.NODE_CLASS_MAPPINGS["WanLeanCompress"]().run(text, "extractive", 0.6, "", "estimate")["result"][0]
    cut = pack.NODE_CLASS_MAPPINGS["WanLeanTruncate"]().run(text, 40, -1, "estimate")["result"][0]
    rows = prompt_log()
    assert [r["source"] for r in rows] == ["WanLeanCompress", "WanLeanTruncate"]
    estimate = tokens.load_tokenizer(None)
    for stored, result in zip(rows, (compressed, cut), strict=True):
        assert stored["text"] == text and stored["tokens_after"] == stored["tokens"] < stored["tokens_before"]
        assert stored["tokens"] == estimate.count(result) and stored["tokens_before"] == estimate.count(text)
    assert rows[1]["tokens"] <= 40 and rows[1]["budget"] == 40
    assert compressed != text and cut != text


def test_settings_turn_logging_and_text_off(pack, prompt_log):
    node = pack.NODE_CLASS_MAPPINGS["WanLeanTokenCount"]()
    prompt_log.settings.parent.mkdir(parents=True)
    prompt_log.settings.write_text(json.dumps({"WanLean.PromptLog.StoreText": False}))
    node.run("a secret prompt about a heron", "estimate", 512)
    prompt_log.settings.write_text(json.dumps({"WanLean.PromptLog.Enabled": False, "WanLean.PromptLog.StoreText": True}))
    os.utime(prompt_log.settings, ns=(0, prompt_log.settings.stat().st_mtime_ns + 10_000_000))
    node.run("not logged at all", "estimate", 512)
    (row,) = prompt_log()
    assert row["text"] is None and row["sha256"] and row["characters"] == len("a secret prompt about a heron")


def test_a_broken_log_never_fails_a_node(pack, tmp_path):
    (tmp_path / "blocker").write_text("a file where the log folder should be")
    pack.nodes.prompt_log.use(str(tmp_path / "blocker" / "prompt_log.sqlite3"))
    try:
        out = pack.NODE_CLASS_MAPPINGS["WanLeanTokenCount"]().run("a red fox", "estimate", 512)
        assert out["result"][0] > 1
        pack.nodes.prompt_log.current().writer.flush(10)
    finally:
        pack.nodes.prompt_log.use(None)


def test_the_sampler_logs_the_prompt_not_the_negative(pack, prompt_log, monkeypatch, tmp_path):
    nodes = pack.nodes.video
    root = tmp_path / "diffusers"
    root.mkdir()
    os.symlink(tiny_folder("A14B"), root / "tiny-a14b")
    monkeypatch.setattr(pack.nodes._comfy, "model_folders", lambda kind: [str(root)] if kind == "diffusers" else [])
    (pipe,) = nodes.load_diffusers.WanLeanLoadDiffusers().run("tiny-a14b", "auto", "gpu", "cpu")
    prompt = "a red fox runs through deep snow"
    nodes.sampler.WanLeanSampler().run(
        pipe, prompt=prompt, negative="blurry, static", width=TINY_WIDTH, height=TINY_HEIGHT, frames=TINY_FRAMES,
        steps=1, cfg_high=4.0, cfg_low=3.0, shift=12.0, seed=1, sampler="unipc", text_cache="memory")
    (row,) = prompt_log()
    assert row["source"] == "WanLeanSampler" and row["text"] == prompt and row["tokenizer"] == "exact"
    assert row["tokens"] == len(pipe.text_encoder.token_ids(prompt)) > 1
