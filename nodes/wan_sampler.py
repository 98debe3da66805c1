"""WanLeanLoadDiffusers and WanLeanSampler: Wan2.2 text-to-video on diffusers.

Thin: inputs are translated to `wanlean.diffusers_folder` / `wanlean.sampler` calls, results to ComfyUI
outputs. torch and diffusers are imported only when a node runs: without diffusers the nodes still
load and say, when run, which package to install.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from ..wanlean.video.embedding_cache import CACHE_MODES, make_cache
from ..wanlean.errors import WanLeanError, missing_package
from ..wanlean.video.sampler import OFFICIAL_NEGATIVE, VideoRequest
from ..wanlean.video.schedule import SAMPLERS
from ..wanlean.video.session import MEMORY_MODES
from . import _comfy

PIPE = "WANLEAN_PIPE"
CATEGORY = "WanLean/video"
DISK_CACHE_SUBFOLDER = os.path.join("wanlean", "text_embedding_cache")


def _diffusers_missing() -> bool:
    if "diffusers" in sys.modules:
        return sys.modules["diffusers"] is None
    try:
        return importlib.util.find_spec("diffusers") is None
    except (ImportError, ValueError):
        return True


if _diffusers_missing():
    _comfy.log.warning(
        "[WanLean] the Python package 'diffusers' is missing: WanLeanLoadDiffusers and WanLeanSampler load but "
        "refuse to run until it is there. Install it into ComfyUI's Python: pip install -r requirements.txt in the pack folder."
    )


def _require_diffusers() -> None:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise missing_package("diffusers", "WanLean's Wan2.2 video nodes") from None


def diffusers_folder_names() -> list[str]:
    """Folders under ComfyUI's models/diffusers that hold a model_index.json, as relative names."""
    names = []
    for root in _comfy.model_folders("diffusers"):
        if not os.path.isdir(root):
            continue
        for folder, subfolders, files in os.walk(root, followlinks=True):
            if "model_index.json" in files:
                names.append(os.path.relpath(folder, root).replace(os.sep, "/"))
                subfolders[:] = []  # a pipeline's component folders are not pipelines
    return sorted(set(names))


def diffusers_folder_path(name: str) -> str:
    """The full path of a listed folder name (only listed names are accepted)."""
    if not name or name not in diffusers_folder_names():
        raise WanLeanError(
            f"folder: '{name}' is not a diffusers folder in models/diffusers. Put the Wan2.2 diffusers folder "
            "there (or list its parent in extra_model_paths.yaml under 'diffusers'), then refresh."
        )
    for root in _comfy.model_folders("diffusers"):
        path = os.path.join(root, *name.split("/"))
        if os.path.isfile(os.path.join(path, "model_index.json")):
            return path
    raise WanLeanError(f"folder: '{name}' was listed but is gone; refresh and pick again.")


class WanLeanLoadDiffusers:
    """Loads a Wan2.2 diffusers folder (T2V-A14B or TI2V-5B) for WanLeanSampler."""

    CATEGORY = "WanLean/loaders"
    FUNCTION = "run"
    RETURN_TYPES = (PIPE,)
    RETURN_NAMES = ("pipe",)
    OUTPUT_TOOLTIPS = ("The loaded Wan2.2 model (transformers, VAE, lazily loaded text encoder) for WanLeanSampler.",)
    DESCRIPTION = (
        "Loads a Wan2.2 diffusers pipeline folder from models/diffusers, offline. The text encoder is read "
        "only when a prompt is not in the embedding cache."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "folder": (diffusers_folder_names(), {"tooltip": "A Wan2.2 diffusers folder (with model_index.json) in models/diffusers, e.g. Wan2.2-T2V-A14B-Diffusers or Wan2.2-TI2V-5B-Diffusers."}),
                "dtype": (["auto", "bf16", "fp16", "fp32"], {"default": "auto", "tooltip": "Weights' compute dtype. auto: bf16 on a GPU, fp32 on the CPU. The VAE always runs in fp32, as in official Wan."}),
                "memory_mode": (list(MEMORY_MODES), {"default": "model_offload", "tooltip": "gpu: everything on the GPU (fastest; A14B bf16 needs ~70 GB). model_offload: one expert on the GPU at a time, the other waits in CPU RAM (about half the GPU memory, a few seconds per switch). sequential_offload: blocks streamed to the GPU one by one (least GPU memory, slowest)."}),
                "device": (["auto", "cuda", "cpu"], {"default": "auto", "tooltip": "Where denoising runs. auto: the GPU if there is one."}),
            }
        }

    def run(self, folder, dtype, memory_mode, device):
        _require_diffusers()
        from ..wanlean.video.loaders.diffusers_folder import load_diffusers_folder

        return (load_diffusers_folder(diffusers_folder_path(folder), dtype=dtype, memory_mode=memory_mode, device=device),)


class WanLeanSampler:
    """Text to video with per-stage CFG, official defaults, real-token text encoding and a cache."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "INT,FLOAT", "LATENT", "STRING")
    RETURN_NAMES = ("images", "fps", "latent", "report")
    OUTPUT_TOOLTIPS = (
        "The video's frames as an image batch [frames, H, W, 3] in 0–1: feed CreateVideo → SaveVideo.",
        "The model's frame rate: 16 (A14B) or 24 (TI2V-5B). Connects to INT and FLOAT inputs (CreateVideo's fps).",
        "Raw VAE latents (denormalised with the VAE's latents_mean/std), as ComfyUI's VAEDecode expects them.",
        "Steps per expert, forwards run, CFG per stage, cache hit or miss, tokens kept/cut, time per stage.",
    )
    DESCRIPTION = (
        "Wan2.2 text-to-video. 0 in a number input means the loaded model's official value (A14B: 1280×720, "
        "81 frames, 40 steps, shift 12, cfg 4/3; TI2V-5B: 1280×704, 121 frames, 50 steps, shift 5, cfg 5)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        official = " 0 = the model's official value."
        return {
            "required": {
                "pipe": (PIPE, {"tooltip": "A Wan2.2 model from WanLeanLoadDiffusers or WanLeanLoadComfyFiles."}),
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "What the video shows. umT5 reads at most 512 tokens; longer prompts keep the first 512 and the report says how many were cut."}),
                "negative": ("STRING", {"multiline": True, "default": OFFICIAL_NEGATIVE, "tooltip": "What to avoid (used by stages whose cfg is above 1). Default: Wan's official Chinese negative prompt."}),
                "width": ("INT", {"default": 1280, "min": 0, "max": 8192, "step": 16, "tooltip": "Width in pixels, a multiple of 16 (A14B) or 32 (TI2V-5B). Official: 1280 (or 832 for 480p)." + official}),
                "height": ("INT", {"default": 720, "min": 0, "max": 8192, "step": 16, "tooltip": "Height in pixels, a multiple of 16 (A14B) or 32 (TI2V-5B). Official: 720 for A14B, 704 for TI2V-5B (480 for 480p)." + official}),
                "frames": ("INT", {"default": 81, "min": 0, "max": 10001, "tooltip": "Number of frames, 4k+1. Official: 81 (A14B, 5 s at 16 fps), 121 (TI2V-5B, 5 s at 24 fps)." + official}),
                "steps": ("INT", {"default": 40, "min": 0, "max": 1000, "tooltip": "Sampling steps. Official: 40 (A14B), 50 (TI2V-5B)." + official}),
                "cfg_high": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01, "tooltip": "CFG of the high-noise stage (TI2V-5B: its only stage). 1.0 = off: one forward per step instead of two. Official: 4.0 (A14B), 5.0 (TI2V-5B)." + official}),
                "cfg_low": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01, "tooltip": "CFG of the low-noise stage (A14B only; decided separately from cfg_high). 1.0 = off. Official: 3.0." + official}),
                "shift": ("FLOAT", {"default": 12.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01, "tooltip": "Flow-matching shift. Official: 12.0 (A14B), 5.0 (TI2V-5B). It also moves the expert switch: 40 steps at shift 12 give 26 high + 14 low." + official}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True, "tooltip": "Noise seed: the same seed and inputs give the same video (noise is drawn on the CPU)."}),
                "sampler": (list(SAMPLERS), {"default": "unipc", "tooltip": "unipc: flow-matching UniPC, official Wan's solver. euler: flow-matching Euler."}),
                "text_cache": (list(CACHE_MODES), {"default": "memory", "tooltip": "Prompt embedding cache. memory: reuse within this ComfyUI session. memory + disk: also keep them in output/wanlean/text_embedding_cache (up to 2 GB), across restarts. On a hit the text encoder is neither run nor loaded."}),
            },
            "optional": {
                "boundary": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.005, "tooltip": "A14B: switch to the low-noise expert when the timestep drops below boundary × 1000. 0 = the model's (0.875). Ignored by TI2V-5B."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def run(self, pipe, prompt, negative, width, height, frames, steps, cfg_high, cfg_low, shift, seed, sampler, text_cache, boundary=0.0, unique_id=None):
        _require_diffusers()
        from ..wanlean.video.sampler import generate, resolve_settings

        request = VideoRequest(
            prompt=prompt, negative=negative, width=width, height=height, frames=frames, steps=steps,
            cfg_high=cfg_high, cfg_low=cfg_low, shift=shift, seed=seed, sampler=sampler, boundary=boundary or None,
        )
        settings = resolve_settings(pipe, request)  # bad input fails here, before any weight moves
        _comfy.throw_if_interrupted()
        if str(getattr(pipe, "device", "cpu")).startswith("cuda"):
            _comfy.unload_comfy_models()  # ComfyUI's own models would compete for the GPU
        progress = _comfy.progress_bar(settings.steps)

        def on_step(index, total, stage):
            progress.update(1)
            _comfy.throw_if_interrupted()  # Cancel stops here, within one step

        result = generate(pipe, request, cache=make_cache(text_cache, _disk_cache_folder(text_cache)), on_step=on_step)
        _comfy.show_text(unique_id, result.report)
        return {
            "ui": {"text": [result.report]},
            "result": (result.frames, result.fps, {"samples": result.latents}, result.report),
        }


def _disk_cache_folder(text_cache: str) -> str | None:
    if text_cache != "memory + disk":
        return None
    output = _comfy.output_directory()
    return os.path.join(output, DISK_CACHE_SUBFOLDER) if output else None


NODE_CLASS_MAPPINGS = {"WanLeanLoadDiffusers": WanLeanLoadDiffusers, "WanLeanSampler": WanLeanSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanLoadDiffusers": "WanLean Load Diffusers (Wan2.2)", "WanLeanSampler": "WanLean Sampler (Wan2.2 T2V)"}
