"""ComfyUI's own files, in a real headless ComfyUI (skipped without COMFYUI_PATH).

Tiny files in the real formats and layouts (tests/test_fixture_layouts.py) are put in the test ComfyUI's model
folders under the real file names (wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors, ...), and the example
workflows users get run on them:
WanLeanLoadComfyFiles (→ WanLeanLoRA) → WanLeanSampler → CreateVideo → SaveVideo.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from wltest.comfy import ui_to_api
from wltest.comfy_formats import tiny_set
from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH

pytestmark = pytest.mark.comfyui

EXAMPLES = Path(__file__).resolve().parents[1] / "example_workflows"


@pytest.fixture(scope="module")
def files_in_comfy(comfy):
    """The tiny files under the names ComfyUI users have."""
    tiny = tiny_set()
    placed = {
        ("diffusion_models", "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"): tiny.transformer("high", "fp8_scaled"),
        ("diffusion_models", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"): tiny.transformer("low", "fp8_scaled"),
        ("diffusion_models", "wan2.2_ti2v_5B_fp16.safetensors"): tiny.transformer("ti2v", "fp16"),
        ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"): tiny.umt5("fp8_scaled"),
        ("vae", "wan_2.1_vae.safetensors"): tiny.vae("2.1"),
        ("vae", "wan2.2_vae.safetensors"): tiny.vae("2.2"),
        ("loras", "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors"): tiny.lora("high", "lightx2v", alpha_dtype="F64"),
        ("loras", "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors"): tiny.lora("low", "lightx2v", seed=1, alpha_dtype="I64"),
    }
    for (kind, name), source in placed.items():
        target = comfy.model_dir(kind) / name
        if not target.exists():
            os.symlink(source, target)
    return placed


def example_api(comfy, name: str, **sampler_inputs) -> dict:
    api = ui_to_api(json.loads((EXAMPLES / name).read_text(encoding="utf-8")), comfy.object_info())
    for node in api.values():
        if node["class_type"] == "WanLeanLoadComfyFiles":
            node["inputs"].update(device="cpu", dtype="fp32")
        if node["class_type"] == "WanLeanSampler":
            node["inputs"].update(width=TINY_WIDTH, height=TINY_HEIGHT, frames=TINY_FRAMES)
            node["inputs"]["steps"] = min(node["inputs"]["steps"], 2)
            node["inputs"].update(sampler_inputs)
    return api


def node_of(api: dict, class_type: str) -> tuple[str, dict]:
    return next((node_id, node) for node_id, node in api.items() if node["class_type"] == class_type)


def saved_frames(comfy, api, entry) -> int:
    import av

    save_id, _ = node_of(api, "SaveVideo")
    saved = comfy.ui_of(entry, save_id)["images"][0]
    path = comfy.output / saved["subfolder"] / saved["filename"]
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def report_of(comfy, api, entry) -> str:
    preview_id, _ = node_of(api, "PreviewAny")
    return comfy.ui_of(entry, preview_id)["text"][0]


def test_nodes_are_listed_with_tooltips_on_every_input(comfy, files_in_comfy):
    for node_type in ("WanLeanLoadComfyFiles", "WanLeanLoRA"):
        info = comfy.object_info(node_type)[node_type]
        assert info["category"] == "WanLean/loaders" and info["output"] == ["WANLEAN_PIPE"]
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node_type}.{name} has no tooltip"
    loader = comfy.object_info("WanLeanLoadComfyFiles")["WanLeanLoadComfyFiles"]["input"]
    assert "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors" in loader["required"]["high_noise_model"][0]
    assert loader["required"]["low_noise_model"][0][0] == "none"


def test_fp8_scaled_example_runs_to_a_saved_video(comfy, files_in_comfy):
    api = example_api(comfy, "wan22_a14b_fp8_scaled.json")
    assert node_of(api, "WanLeanLoadComfyFiles")[1]["inputs"]["weight_storage"] == "fp8"
    entry = comfy.run(api, timeout=300)
    assert saved_frames(comfy, api, entry) == TINY_FRAMES
    report = report_of(comfy, api, entry)
    assert "ComfyUI files wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors" in report and "high-noise expert" in report


def test_lightx2v_example_runs_and_the_lora_does_not_leak(comfy, files_in_comfy):
    # result_cache off: a stored run decodes fp16-rounded latents, and the reference below is sampled uncached
    api = example_api(comfy, "wan22_a14b_lightx2v_4step.json", result_cache="off")
    _, sampler = node_of(api, "WanLeanSampler")
    assert (sampler["inputs"]["cfg_high"], sampler["inputs"]["cfg_low"], sampler["inputs"]["shift"]) == (1.0, 1.0, 5.0)
    # a second sampler on the loader's own output, in the same graph: it must not see the LoRA
    loader_id, loader = node_of(api, "WanLeanLoadComfyFiles")
    sampler_id, _ = node_of(api, "WanLeanSampler")
    api["90"] = {"class_type": "WanLeanSampler", "inputs": {**sampler["inputs"], "pipe": [loader_id, 0]}}
    api["91"] = {"class_type": "PreviewAny", "inputs": {"source": ["90", 3]}}
    api["92"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler_id, 2], "filename_prefix": "latents/with_lora"}}
    api["93"] = {"class_type": "SaveLatent", "inputs": {"samples": ["90", 2], "filename_prefix": "latents/without_lora"}}
    entry = comfy.run(api, timeout=300)
    assert saved_frames(comfy, api, entry) == TINY_FRAMES
    with_lora = report_of(comfy, api, entry)
    without = comfy.ui_of(entry, "91")["text"][0]
    assert "LoRA (high: wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors @ 1" in with_lora
    assert "LoRA" not in without
    # The numbers, not the labels: each branch's latents equal the same files sampled here, with and without
    # the LoRA pair, and the LoRA moves them far more than the two processes' rounding.
    expected_plain, expected_lora = reference_latents(files_in_comfy, loader["inputs"], sampler["inputs"])
    got_lora, got_plain = saved_latent(comfy, entry, "92"), saved_latent(comfy, entry, "93")
    assert (expected_lora - expected_plain).abs().max() > 1e-2
    torch.testing.assert_close(got_plain, expected_plain, rtol=0, atol=1e-4)
    torch.testing.assert_close(got_lora, expected_lora, rtol=0, atol=1e-4)
    # ComfyUI keeps the loader's output for the next prompt: after the LoRA ran, it must still be LoRA-free
    # (a new seed, so the sampler runs again instead of answering from ComfyUI's cache).
    later_inputs = {**sampler["inputs"], "pipe": [loader_id, 0], "seed": sampler["inputs"]["seed"] + 1}
    later = {loader_id: loader, "70": {"class_type": "WanLeanSampler", "inputs": later_inputs},
             "71": {"class_type": "SaveLatent", "inputs": {"samples": ["70", 2], "filename_prefix": "latents/later_without_lora"}}}
    later_entry = comfy.run(later, timeout=300)
    (expected_later,) = reference_latents(files_in_comfy, loader["inputs"], later_inputs, with_lora=False)
    torch.testing.assert_close(saved_latent(comfy, later_entry, "71"), expected_later, rtol=0, atol=1e-4)


def saved_latent(comfy, entry, node_id):
    from safetensors.torch import load_file

    saved = comfy.ui_of(entry, node_id)["latents"][0]
    return load_file(str(comfy.output / saved["subfolder"] / saved["filename"]))["latent_tensor"]


def reference_latents(files, loader_inputs, sampler_inputs, with_lora=True):
    """(latents without LoRA, [with the lightx2v pair at 1.0]) from the same tiny files, sampled in this process."""
    import dataclasses

    from wanlean.video.loaders.comfy_files.load import load_comfy_files
    from wanlean.video.loaders.comfy_files.lora import apply_loras
    from wanlean.video.sampler import VideoRequest, generate

    def source(kind, input_name):
        return files[(kind, loader_inputs[input_name])]

    session = load_comfy_files(
        source("diffusion_models", "high_noise_model"), source("diffusion_models", "low_noise_model"),
        source("text_encoders", "text_encoder"), source("vae", "vae"), dtype="fp32", device="cpu",
        memory_mode=loader_inputs["memory_mode"], weight_storage=loader_inputs["weight_storage"],
    )
    request = VideoRequest(**{f.name: sampler_inputs[f.name] for f in dataclasses.fields(VideoRequest) if f.name in sampler_inputs})
    request.boundary = request.boundary or None
    plain = generate(session, request).latents  # before any LoRA exists
    if not with_lora:
        return (plain,)
    lora = apply_loras(
        session,
        (files[("loras", "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors")], 1.0),
        (files[("loras", "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors")], 1.0),
    )
    return plain, generate(lora, request).latents


def test_ti2v_example_runs(comfy, files_in_comfy):
    api = example_api(comfy, "wan22_ti2v_5b.json")
    assert node_of(api, "WanLeanLoadComfyFiles")[1]["inputs"]["low_noise_model"] == "none"
    entry = comfy.run(api, timeout=300)
    assert saved_frames(comfy, api, entry) == TINY_FRAMES
    assert "TI2V-5B" in report_of(comfy, api, entry)


def test_latent_output_decodes_with_comfyuis_native_vae_nodes(comfy, files_in_comfy):
    # The sampler's LATENT holds raw VAE latents: core VAELoader + VAEDecode on the same Wan2.1 VAE file
    # must give the sampler's own frames (both saved as 8-bit PNGs by core SaveImage).
    import numpy as np

    api = example_api(comfy, "wan22_a14b_fp8_scaled.json")
    sampler_id, _ = node_of(api, "WanLeanSampler")
    native, ours = native_and_sampler_frames(comfy, api, sampler_id, "wan_2.1_vae.safetensors", "vae21", timeout=300)
    # ComfyUI decodes in its own Wan VAE module (possibly another dtype): allow a couple of 8-bit levels
    assert np.abs(native - ours).max() <= 3, np.abs(native - ours).max()


@pytest.mark.parametrize("change, message", [
    ({"high_noise_model": "wan2.2_ti2v_5B_fp16.safetensors"}, "TI2V-5B, a single model; set low_noise_model to 'none'"),
    ({"text_encoder": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "vae": "wan2.2_vae.safetensors"}, "needs the Wan2.1 VAE"),
    ({"low_noise_model": "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"}, "holds the same weights as high_noise_model"),
])
def test_wrong_files_fail_the_node_with_a_message(comfy, files_in_comfy, change, message):
    api = example_api(comfy, "wan22_a14b_fp8_scaled.json")
    node_of(api, "WanLeanLoadComfyFiles")[1]["inputs"].update(change)
    entry = comfy.run(api, timeout=120, expect="error")
    assert message in comfy.error_message(entry)
    # ComfyUI shows the type as module.qualname: a plain name, not the pack folder's path
    assert comfy.error_message(entry).startswith("wanlean.WanLeanError: ")
    assert comfy.get("/system_stats").ok


def test_low_noise_none_picks_the_expert_named_like_the_high_noise_one(comfy, files_in_comfy):
    """A new loader node keeps low_noise_model 'none': with the official A14B names the run finds the
    low-noise file and the report says so."""
    api = example_api(comfy, "wan22_a14b_fp8_scaled.json", steps=1)
    node_of(api, "WanLeanLoadComfyFiles")[1]["inputs"]["low_noise_model"] = "none"
    entry = comfy.run(api, timeout=300)
    assert "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors (picked by name for low_noise_model 'none')" in report_of(comfy, api, entry)


def test_a_vae_chosen_as_diffusion_model_is_named(comfy, files_in_comfy):
    link = comfy.model_dir("diffusion_models") / "wan_2.1_vae_in_wrong_folder.safetensors"
    if not link.exists():
        os.symlink(files_in_comfy[("vae", "wan_2.1_vae.safetensors")], link)
    import time

    time.sleep(1.1)  # ComfyUI caches folder listings by mtime
    api = example_api(comfy, "wan22_a14b_fp8_scaled.json")
    node_of(api, "WanLeanLoadComfyFiles")[1]["inputs"]["high_noise_model"] = link.name
    entry = comfy.run(api, timeout=120, expect="error")
    assert "is a Wan VAE, not a Wan2.2 diffusion model. Choose it in vae." in comfy.error_message(entry)


@pytest.mark.slow
def test_full_width_wan22_vae_decodes_like_comfyuis_native_vae_nodes(comfy, files_in_comfy):
    """ComfyUI builds the Wan2.2 VAE only at its real width, so the tiny one cannot reach core VAEDecode. A
    full-width one (random weights, the real file's 196 F16 tensors) decodes the TI2V sampler's LATENT through
    core VAELoader + VAEDecode and inside the sampler; both frame sets are saved as 8-bit PNGs by core
    SaveImage. Kept small in time: 5 frames at 32×32 (2 latent frames, 2×2 latent pixels)."""
    import numpy as np

    target = comfy.model_dir("vae") / "wan2.2_vae_full_width.safetensors"
    if not target.exists():
        os.symlink(tiny_set().vae22_full_width(), target)
    import time

    time.sleep(1.1)  # ComfyUI caches folder listings by mtime
    api = example_api(comfy, "wan22_ti2v_5b.json", steps=1)
    node_of(api, "WanLeanLoadComfyFiles")[1]["inputs"]["vae"] = target.name
    sampler_id, _ = node_of(api, "WanLeanSampler")
    native, ours = native_and_sampler_frames(comfy, api, sampler_id, target.name, "vae22", timeout=600)
    # both decode in fp32 on the CPU (about 4e-6 apart before rounding): one 8-bit level at a rounding edge at most.
    # Decoding ours in bf16 instead gives 4 levels here.
    assert np.abs(native - ours).max() <= 1, np.abs(native - ours).max()


def native_and_sampler_frames(comfy, api, sampler_id, vae_name, prefix, timeout):
    """Run `api` with the sampler's LATENT also decoded by core VAELoader(`vae_name`) + VAEDecode; both
    frame sets saved as 8-bit PNGs and read back: (native, ours), each [frames, h, w, 3] int16."""
    import numpy as np
    from PIL import Image

    api["80"] = {"class_type": "VAELoader", "inputs": {"vae_name": vae_name}}
    api["81"] = {"class_type": "VAEDecode", "inputs": {"samples": [sampler_id, 2], "vae": ["80", 0]}}
    api["82"] = {"class_type": "SaveImage", "inputs": {"images": ["81", 0], "filename_prefix": f"native_{prefix}_decode"}}
    api["83"] = {"class_type": "SaveImage", "inputs": {"images": [sampler_id, 0], "filename_prefix": f"wanlean_{prefix}_frames"}}
    entry = comfy.run(api, timeout=timeout)

    def frames(node_id):
        saved = comfy.ui_of(entry, node_id)["images"]
        return np.stack([np.asarray(Image.open(comfy.output / s["subfolder"] / s["filename"]), dtype=np.int16) for s in saved])

    native, ours = frames("82"), frames("83")
    assert native.shape == ours.shape == (TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, 3)
    assert ours.std() > 1.0, "the frames are flat: the comparison would prove nothing"
    return native, ours
