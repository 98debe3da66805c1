"""WanLeanTokenCount, WanLeanGenerationCost and the /wanlean/tokens route handler, in-process (the pack is
imported the way ComfyUI imports it; ComfyUI's model folders are replaced by a test folder)."""

import json

import pytest

from wltest.tiny import write_text_encoder_file


@pytest.fixture()
def paths_asked():
    """Names the pack asked ComfyUI's folder_paths to turn into a path."""
    return []


@pytest.fixture()
def text_encoders(pack, tmp_path, monkeypatch, spiece_bytes, paths_asked):
    """A models/text_encoders folder holding a tiny umT5 file and a VAE picked by mistake."""
    import numpy as np
    from safetensors.numpy import save_file

    write_text_encoder_file(tmp_path / "umt5_tiny.safetensors", spiece_bytes)
    save_file({"decoder.conv1.weight": np.zeros((2, 2), np.float16)}, str(tmp_path / "vae_by_mistake.safetensors"))
    listed = ["umt5_tiny.safetensors", "vae_by_mistake.safetensors", "gone.safetensors"]
    class FolderPaths:
        """ComfyUI's folder_paths as the pack sees it; the pack's own name checks run unchanged."""

        @staticmethod
        def get_filename_list(kind):
            return list(listed) if kind == "text_encoders" else []

        @staticmethod
        def get_full_path(kind, name):
            paths_asked.append(name)
            return str(tmp_path / name)  # like ComfyUI: a join, no check of its own

    monkeypatch.setattr(pack.nodes._comfy, "folder_paths", lambda: FolderPaths)
    return tmp_path


def _token_node(pack):
    return pack.NODE_CLASS_MAPPINGS["WanLeanTokenCount"]()


# --- WanLeanTokenCount ------------------------------------------------------------------------------


def test_estimate_comes_first_so_a_fresh_graph_works(pack, text_encoders):
    schema = pack.NODE_CLASS_MAPPINGS["WanLeanTokenCount"].INPUT_TYPES()
    choices, options = schema["required"]["tokenizer"]
    assert choices[0] == "estimate" and options["default"] == "estimate"
    assert "umt5_tiny.safetensors" in choices
    assert schema["required"]["budget"][1]["default"] == 512
    assert schema["required"]["text"][1]["multiline"] and "negative" in schema["optional"]


def test_exact_count_and_report_shown_on_the_node(pack, text_encoders, sp):
    text, negative = "a red fox runs through deep snow", "一只红色的狐狸"
    out = _token_node(pack).run(text=text, tokenizer="umt5_tiny.safetensors", budget=512, negative=negative)
    tokens_, over_budget, report = out["result"]
    assert tokens_ == len(sp.encode(text)) + 1 and over_budget is False
    assert out["ui"]["text"] == [report]
    assert "exact" in report and f"negative: {len(sp.encode(negative)) + 1} / 512" in report


def test_estimate_is_labelled_on_the_node(pack):
    out = _token_node(pack).run(text="a red fox", tokenizer="estimate", budget=2)
    tokens_, over_budget, report = out["result"]
    assert tokens_ == 4 and over_budget is True
    assert "ESTIMATE" in report and "≈4 / 2" in report


def test_empty_negative_is_not_reported(pack):
    report = _token_node(pack).run(text="fox", tokenizer="estimate", budget=512, negative="")["result"][2]
    assert "negative" not in report.split("\n\n")[0]


def test_a_bad_file_gives_a_message_naming_it(pack, text_encoders):
    error = pack.wanlean.errors.WanLeanError
    with pytest.raises(error, match="vae_by_mistake.safetensors.*looks like a VAE"):
        _token_node(pack).run(text="fox", tokenizer="vae_by_mistake.safetensors", budget=512)
    with pytest.raises(error, match="does not exist"):
        _token_node(pack).run(text="fox", tokenizer="gone.safetensors", budget=512)


def test_is_changed_follows_the_file(pack, text_encoders, spiece_bytes):
    cls = pack.NODE_CLASS_MAPPINGS["WanLeanTokenCount"]
    before = cls.IS_CHANGED(tokenizer="umt5_tiny.safetensors")
    assert cls.IS_CHANGED(tokenizer="umt5_tiny.safetensors") == before
    import os

    os.utime(text_encoders / "umt5_tiny.safetensors", ns=(1, 1))
    assert cls.IS_CHANGED(tokenizer="umt5_tiny.safetensors") != before
    assert cls.IS_CHANGED(tokenizer="estimate") == "estimate"


# --- WanLeanGenerationCost ----------------------------------------------------------------------------


def test_cost_node_outputs_and_summary(pack):
    node = pack.NODE_CLASS_MAPPINGS["WanLeanGenerationCost"]()
    out = node.run(model="A14B", width=832, height=480, frames=81, steps=40, cfg_high=3.5, cfg_low=1.0,
                   boundary=0.875, shift=12.0, sampler="unipc", price_per_second=0.2)
    latent_frames, video_tokens, high, low, forwards, relative, seconds, price, report = out["result"]
    assert (latent_frames, video_tokens, high, low, forwards) == (21, 32_760, 26, 14, 26 * 2 + 14)
    assert 0 < relative < 1 and seconds == pytest.approx(81 / 16) and price == pytest.approx(81 / 16 * 0.2)
    assert out["ui"]["text"] == [report] and "Prompt length does not drive this cost" in report


def test_cost_node_refuses_bad_frames_with_the_fix(pack):
    node = pack.NODE_CLASS_MAPPINGS["WanLeanGenerationCost"]()
    with pytest.raises(pack.wanlean.errors.WanLeanError, match=r"frames must be 4k\+1, e.g. 81; got 80"):
        node.run(model="A14B", width=832, height=480, frames=80, steps=40, cfg_high=4.0, cfg_low=3.0,
                 boundary=0.875, shift=12.0, sampler="unipc")


def test_cost_node_defaults_are_the_official_a14b_run(pack):
    schema = pack.NODE_CLASS_MAPPINGS["WanLeanGenerationCost"].INPUT_TYPES()["required"]
    defaults = {name: spec[1]["default"] for name, spec in schema.items()}
    assert defaults == dict(model="A14B", width=1280, height=720, frames=81, steps=40, cfg_high=4.0, cfg_low=3.0,
                            boundary=0.875, shift=12.0, sampler="unipc")


# --- the route's handler (the live server test calls it over HTTP) -----------------------------------


def _ask(pack, body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return pack.nodes.routes.answer_tokens(raw)


def test_route_counts_exactly(pack, text_encoders, sp):
    status, answer = _ask(pack, {"text": "a red fox", "tokenizer": "umt5_tiny.safetensors", "negative": "blurry", "budget": 3})
    assert status == 200
    assert answer["tokens"] == len(sp.encode("a red fox")) + 1 and answer["exact"] is True
    assert answer["negative"]["tokens"] == len(sp.encode("blurry")) + 1
    assert answer["budget"] == 3 and answer["over_budget"] == (answer["tokens"] > 3)
    assert answer["prompt"]["characters"] == 9 and answer["tokenizer"] == "umt5_tiny.safetensors"


def test_route_estimate_and_odd_text(pack, text_encoders, sp):
    status, answer = _ask(pack, {"text": "", "tokenizer": "estimate"})
    assert (status, answer["tokens"], answer["exact"]) == (200, 1, False)
    # A lone surrogate, as a browser can send it after half an emoji is deleted.
    status, answer = _ask(pack, b'{"text": "fox \\ud83e", "tokenizer": "umt5_tiny.safetensors"}')
    assert status == 200 and answer["tokens"] == len(sp.encode("fox \ufffd")) + 1
    long_text = "a red fox runs " * 6700  # 100,500 characters
    status, answer = _ask(pack, {"text": long_text, "tokenizer": "umt5_tiny.safetensors"})
    assert status == 200 and answer["tokens"] == len(sp.encode(long_text)) + 1
    assert answer["prompt"]["truncated_tokens"] == answer["tokens"] - 512 and answer["prompt"]["lost_from"]


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "must be JSON"),
        (b"\xff\xfe", "must be JSON"),
        (b"[1, 2]", "must be a JSON object"),
        ({"tokenizer": "estimate"}, "text is required"),
        ({"text": 5, "tokenizer": "estimate"}, "text is required"),
        ({"text": "x", "tokenizer": 7}, "tokenizer must be"),
        ({"text": "x", "tokenizer": "not_listed.safetensors"}, "is not in models/text_encoders"),
        ({"text": "x", "tokenizer": "../../etc/passwd"}, "is not a file name from models/text_encoders"),
        ({"text": "x", "tokenizer": "/etc/passwd"}, "is not a file name from models/text_encoders"),
        ({"text": "x", "tokenizer": "..\\umt5_tiny.safetensors"}, "is not a file name from models/text_encoders"),
        ({"text": "x", "tokenizer": "vae_by_mistake.safetensors"}, "looks like a VAE"),
        ({"text": "x", "tokenizer": "gone.safetensors"}, "does not exist"),
        ({"text": "x", "tokenizer": "estimate", "budget": 0}, "budget must be"),
        ({"text": "x", "tokenizer": "estimate", "budget": "512"}, "budget must be"),
        ({"text": "x", "tokenizer": "estimate", "negative": ["no"]}, "negative must be a string"),
    ],
)
def test_route_bad_requests_are_400_with_a_message(pack, text_encoders, paths_asked, body, message):
    status, answer = _ask(pack, body)
    assert status == 400, answer
    assert message in answer["error"]
    assert paths_asked in ([], ["vae_by_mistake.safetensors"], ["gone.safetensors"])  # no other path was built


def test_paths_outside_the_model_folder_are_refused_even_when_listed(pack, text_encoders, paths_asked, monkeypatch):
    """The name check does not lean on the listing: a listed '..' or absolute name is still refused."""
    comfy = pack.nodes._comfy
    for name in ("../umt5_tiny.safetensors", "/etc/passwd", "sub\\..\\..\\umt5_tiny.safetensors"):
        monkeypatch.setattr(comfy, "model_files", lambda kind, name=name: [name])
        with pytest.raises(pack.wanlean.errors.WanLeanError, match="is not a file name from models/text_encoders"):
            comfy.model_path("text_encoders", name, "tokenizer")
    assert paths_asked == []


def test_route_is_not_registered_outside_comfyui(pack, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "server", raising=False)
    assert pack.nodes._comfy.add_route("POST", "/wanlean/x", lambda request: None) is False
