"""WanLeanSampler: Wan2.2 text-to-video on diffusers.

Thin: inputs become a `wanlean.video.sampler.VideoRequest`, results become ComfyUI outputs. torch and
diffusers are imported only when the node runs.
"""

from __future__ import annotations

import os

from ...wanlean.prompt_log.row import PromptEntry
from ...wanlean.video.embedding_cache import CACHE_MODES, make_cache
from ...wanlean.video.guidance import CFG_BATCH_MODES
from ...wanlean.video.models import A14B, OFFICIAL_NEGATIVE
from ...wanlean.video.result_cache import DISK_MAX_GB, RESULT_CACHE_MODES, make_result_cache
from ...wanlean.video.sampler import VideoRequest
from ...wanlean.video.schedule import SAMPLERS
from .. import _comfy
from .._shared import PIPE, require_diffusers
from ..prompt_log import log_prompt

DISK_CACHE_SUBFOLDER = os.path.join("wanlean", "text_embedding_cache")
RESULT_CACHE_SUBFOLDER = os.path.join("wanlean", "result_cache")


class WanLeanSampler:
    """Text to video with per-stage CFG, official defaults, real-token text encoding and a cache."""

    CATEGORY = "WanLean/video"
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "INT,FLOAT", "LATENT", "STRING")
    RETURN_NAMES = ("images", "fps", "latent", "report")
    OUTPUT_TOOLTIPS = (
        "The video's frames as an image batch [frames, H, W, 3] in 0–1: feed CreateVideo → SaveVideo.",
        "The model's frame rate: 16 (A14B) or 24 (TI2V-5B). Connects to INT and FLOAT inputs (CreateVideo's fps).",
        "Raw VAE latents (denormalised with the VAE's latents_mean/std), as ComfyUI's VAEDecode expects them.",
        "Steps per expert, forwards run, CFG per stage, cache hit or miss, tokens kept/cut, time per stage and per step, the memory mode used (and why, for auto).",
    )
    DESCRIPTION = (
        "Wan2.2 text-to-video. 0 in a number input means the loaded model's official value (A14B: 1280×720, "
        "81 frames, 40 steps, shift 12, cfg 4/3; TI2V-5B: 1280×704, 121 frames, 50 steps, shift 5, cfg 5). "
        "While it runs the node shows the expert, step, seconds per step and time left, and a preview of the "
        "video's first frame after each step (ComfyUI's --preview-method: none turns previews off)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        official = " 0 = the model's official value."
        return {
            "required": {
                "pipe": (PIPE, {"tooltip": "A Wan2.2 model from WanLeanLoadDiffusers or WanLeanLoadComfyFiles."}),
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "What the video shows. umT5 reads at most 512 tokens; longer prompts keep the first 512 and the report says how many were cut."}),
                "negative": ("STRING", {"multiline": True, "default": OFFICIAL_NEGATIVE, "tooltip": "What to avoid (used by stages whose cfg is above 1). Default: Wan's official Chinese negative prompt."}),
                "width": ("INT", {"default": A14B.width, "min": 0, "max": 8192, "step": 16, "tooltip": "Width in pixels, a multiple of 16 (A14B) or 32 (TI2V-5B). Official: 1280 (or 832 for 480p)." + official}),
                "height": ("INT", {"default": A14B.height, "min": 0, "max": 8192, "step": 16, "tooltip": "Height in pixels, a multiple of 16 (A14B) or 32 (TI2V-5B). Official: 720 for A14B, 704 for TI2V-5B (480 for 480p)." + official}),
                "frames": ("INT", {"default": A14B.frames, "min": 0, "max": 10001, "tooltip": "Number of frames, 4k+1. Official: 81 (A14B, 5 s at 16 fps), 121 (TI2V-5B, 5 s at 24 fps)." + official}),
                "steps": ("INT", {"default": A14B.steps, "min": 0, "max": 1000, "tooltip": "Sampling steps. Official: 40 (A14B), 50 (TI2V-5B)." + official}),
                "cfg_high": ("FLOAT", {"default": A14B.cfg_high, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01, "tooltip": "CFG of the high-noise stage (TI2V-5B: its only stage). 1.0 = off: one forward per step instead of two. Official: 4.0 (A14B), 5.0 (TI2V-5B)." + official}),
                "cfg_low": ("FLOAT", {"default": A14B.cfg_low, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01, "tooltip": "CFG of the low-noise stage (A14B only; decided separately from cfg_high). 1.0 = off. Official: 3.0." + official}),
                "shift": ("FLOAT", {"default": A14B.shift, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01, "tooltip": "Flow-matching shift. Official: 12.0 (A14B), 5.0 (TI2V-5B). It also moves the expert switch: 40 steps at shift 12 give 26 high + 14 low." + official}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True, "tooltip": "Noise seed: the same seed and inputs give the same video (noise is drawn on the CPU)."}),
                "sampler": (list(SAMPLERS), {"default": "unipc", "tooltip": "unipc: flow-matching UniPC, official Wan's solver. euler: flow-matching Euler."}),
                "text_cache": (list(CACHE_MODES), {"default": "memory", "tooltip": "Prompt embedding cache. memory: reuse within this ComfyUI session. memory + disk: also keep them in output/wanlean/text_embedding_cache (up to 2 GB), across restarts. On a hit the text encoder is neither run nor loaded."}),
            },
            "optional": {
                "boundary": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.005, "tooltip": "A14B: switch to the low-noise expert when the timestep drops below boundary × 1000. 0 = the model's (0.875). Ignored by TI2V-5B."}),
                # After boundary: saved workflows fill widgets by position, so new inputs go last.
                "result_cache": (list(RESULT_CACHE_MODES), {"default": "memory", "tooltip": "Finished-video cache. The same model files, LoRAs, settings, seed and prompt embeddings give the stored latents back: 0 transformer forwards, only the VAE decodes (the text is still encoded, cheaply with text_cache). memory: within this ComfyUI session. memory + disk: also in output/wanlean/result_cache, across restarts (capped by result_cache_gb). off: always sample."}),
                "result_cache_gb": ("INT", {"default": DISK_MAX_GB, "min": 1, "max": 10000, "tooltip": "With result_cache 'memory + disk': the most GB its folder keeps; the least recently used results go first. A result takes about 10 MB at 1280×720×81."}),
                "cfg_batch": (list(CFG_BATCH_MODES), {"default": "auto", "tooltip": "Run the CFG pair (prompt and negative) as one batch of 2 instead of two forwards: same video within float rounding, twice the activation memory. auto: batched only where measured faster (small videos on the CPU); sequential on a GPU, where it is unmeasured. on / off force it."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def run(self, pipe, prompt, negative, width, height, frames, steps, cfg_high, cfg_low, shift, seed, sampler, text_cache, boundary=0.0,
            result_cache="memory", result_cache_gb=DISK_MAX_GB, cfg_batch="auto", unique_id=None):
        require_diffusers()
        from ...wanlean.video.sampler import generate, resolve_settings

        request = VideoRequest(
            prompt=prompt, negative=negative, width=width, height=height, frames=frames, steps=steps,
            cfg_high=cfg_high, cfg_low=cfg_low, shift=shift, seed=seed, sampler=sampler, boundary=boundary or None,
            cfg_batch=cfg_batch,
        )
        settings = resolve_settings(pipe, request)  # bad input fails here, before any weight moves
        results = make_result_cache(result_cache, _disk_cache_folder(result_cache, RESULT_CACHE_SUBFOLDER), result_cache_gb)
        _comfy.throw_if_interrupted()
        if str(getattr(pipe, "device", "cpu")).startswith("cuda"):
            _comfy.unload_comfy_models()  # ComfyUI's own models would compete for the GPU (and for auto's choice)
        progress = _comfy.progress_bar(settings.steps)
        preview = _comfy.latent_previewer(pipe.latent_channels, pipe.device)  # None: --preview-method none

        def on_progress(step):
            image = preview(step.clean_latents()) if preview is not None else None
            progress.update_absolute(step.index + 1, step.total, image)
            _comfy.show_text(unique_id, step.text())
            _comfy.throw_if_interrupted()

        result = generate(
            pipe, request, cache=make_cache(text_cache, _disk_cache_folder(text_cache, DISK_CACHE_SUBFOLDER)), on_progress=on_progress,
            cancel_check=_comfy.throw_if_interrupted,  # Cancel also stops between two transformer blocks
            result_cache=results,
        )
        if result.stats.result_cache in ("memory", "disk"):  # no step ran: the bar would stay empty
            progress.update_absolute(settings.steps, settings.steps)
        _comfy.show_text(unique_id, result.report)
        if result.stats.text:  # the prompt as the model's own tokenizer counted it (the negative is not logged)
            log_prompt(PromptEntry("WanLeanSampler", prompt, result.stats.text[0].total_tokens, True))
        return {
            "ui": {"text": [result.report]},
            "result": (result.frames, result.fps, {"samples": result.latents}, result.report),
        }


def _disk_cache_folder(mode: str, subfolder: str) -> str | None:
    if mode != "memory + disk":
        return None
    output = _comfy.output_directory()
    return os.path.join(output, subfolder) if output else None


NODE_CLASS_MAPPINGS = {"WanLeanSampler": WanLeanSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanSampler": "WanLean Sampler (Wan2.2 T2V)"}
