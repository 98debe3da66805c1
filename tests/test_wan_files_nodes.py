"""WanLeanLoadComfyFiles and WanLeanLoRA as ComfyUI calls them (in-process): every input reaches
`wanlean.video.loaders.comfy_files` with its value. The core is replaced by fakes that record their arguments; the real
loading and LoRA math are tested in test_comfy_files.py and test_lora.py, the nodes in a real ComfyUI in
test_wan_files_live.py."""

import importlib
from types import SimpleNamespace

import pytest


@pytest.fixture()
def wan_files(pack, monkeypatch):
    """The pack's two loader node modules as one namespace; a listed name becomes "/models/<kind>/<name>"."""
    monkeypatch.setattr(pack.nodes._comfy, "model_path", lambda kind, name, what: f"/models/{kind}/{name}")
    return SimpleNamespace(WanLeanLoRA=pack.nodes.video.lora.WanLeanLoRA, WanLeanLoadComfyFiles=pack.nodes.video.load_comfy_files.WanLeanLoadComfyFiles)


def record(pack, monkeypatch, module: str, function: str, answer):
    calls = []
    core = importlib.import_module(f"{pack.__name__}.wanlean.video.loaders.comfy_files.{module}")
    monkeypatch.setattr(core, function, lambda *args, **kwargs: calls.append((args, kwargs)) or answer)
    return calls


def test_every_lora_input_reaches_the_core_with_its_value(pack, wan_files, monkeypatch):
    calls = record(pack, monkeypatch, "lora", "apply_loras", "new pipe")
    pipe = SimpleNamespace(transformer=object())
    out = wan_files.WanLeanLoRA().run(pipe, "high.safetensors", 0.75, "low.safetensors", -0.4)
    assert out == ("new pipe",)
    (args, kwargs), = calls
    assert args == (pipe, ("/models/loras/high.safetensors", 0.75), ("/models/loras/low.safetensors", -0.4)) and kwargs == {}


@pytest.mark.parametrize("high, low", [("none", "low.safetensors"), ("high.safetensors", "none")])
def test_lora_none_reaches_the_core_as_none(pack, wan_files, monkeypatch, high, low):
    calls = record(pack, monkeypatch, "lora", "apply_loras", "new pipe")
    pipe = SimpleNamespace(transformer=object())
    wan_files.WanLeanLoRA().run(pipe, high, 1.5, low, 0.5)
    (args, _), = calls
    assert args[1] == (None if high == "none" else ("/models/loras/high.safetensors", 1.5))
    assert args[2] == (None if low == "none" else ("/models/loras/low.safetensors", 0.5))


def test_every_loader_input_reaches_the_core_with_its_value(pack, wan_files, monkeypatch):
    calls = record(pack, monkeypatch, "load", "load_comfy_files", "session")
    out = wan_files.WanLeanLoadComfyFiles().run(
        "high.safetensors", "low.safetensors", "umt5.safetensors", "vae.safetensors", "bf16", "sequential_offload",
        weight_storage="fp8", text_encoder_device="gpu", device="cuda",
    )
    assert out == ("session",)
    (args, kwargs), = calls
    assert args == ("/models/diffusion_models/high.safetensors", "/models/diffusion_models/low.safetensors",
                    "/models/text_encoders/umt5.safetensors", "/models/vae/vae.safetensors")
    progress = kwargs.pop("progress")
    assert kwargs == dict(dtype="bf16", memory_mode="sequential_offload", weight_storage="fp8", text_encoder_device="gpu", device="cuda",
                          low_noise_default=None)
    assert callable(progress)
    wan_files.WanLeanLoadComfyFiles().run("ti2v.safetensors", "none", "umt5.safetensors", "vae.safetensors", "fp32", "gpu")
    args, kwargs = calls[1]
    assert args[1] is None  # TI2V-5B: one model
    assert (kwargs["weight_storage"], kwargs["text_encoder_device"], kwargs["device"]) == ("as_file", "cpu", "auto")


def test_low_noise_none_passes_the_expert_named_like_the_high_noise_one(pack, wan_files, monkeypatch):
    """The combo's default 'none' stays (saved workflows keep their schema); at run time the node hands the
    core the listed file named like the high-noise one, which the core uses only for an A14B expert."""
    calls = record(pack, monkeypatch, "load", "load_comfy_files", "session")
    listed = ["wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_t2v_low_noise_14B_fp16.safetensors",
              "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", "wan2.2_ti2v_5B_fp16.safetensors"]
    monkeypatch.setattr(pack.nodes._comfy, "model_files", lambda kind: listed if kind == "diffusion_models" else [])
    node = wan_files.WanLeanLoadComfyFiles()
    node.run(listed[0], "none", "umt5.safetensors", "vae.safetensors", "fp32", "gpu")
    node.run(listed[0], listed[1], "umt5.safetensors", "vae.safetensors", "fp32", "gpu")  # a choice is kept
    node.run(listed[3], "none", "umt5.safetensors", "vae.safetensors", "fp32", "gpu")
    picked, chosen, single = calls
    assert picked[0][1] is None and picked[1]["low_noise_default"] == "/models/diffusion_models/" + listed[2]
    assert chosen[0][1] == "/models/diffusion_models/" + listed[1] and chosen[1]["low_noise_default"] is None
    assert single[0][1] is None and single[1]["low_noise_default"] is None
