"""WanLeanLoRA: a LoRA for each Wan2.2 expert, on a new pipe that shares the input's weights."""

from __future__ import annotations

from ...wanlean.errors import WanLeanError
from .. import _comfy
from .._shared import NONE, PIPE, require_diffusers


class WanLeanLoRA:
    """A LoRA for each Wan2.2 expert (e.g. the lightx2v 4-step pair), chainable."""

    CATEGORY = "WanLean/loaders"
    FUNCTION = "run"
    RETURN_TYPES = (PIPE,)
    RETURN_NAMES = ("pipe",)
    OUTPUT_TOOLTIPS = ("A new pipe with the LoRAs applied; the input pipe is unchanged, so other branches using it see no LoRA.",)
    DESCRIPTION = (
        "Adds a LoRA to the high-noise expert and/or the low-noise expert. ComfyUI/lightx2v, kohya/musubi and "
        "diffusers key layouts, and the full deltas of extracted LoRAs (.diff, .diff_b, .diff_m). Keys that match "
        "nothing in the model are named in the sampler's report. The base weights are shared, not copied. For the "
        "lightx2v 4-step pair use "
        "strength 1.0 on both, then sample with 4 steps, cfg 1 and shift 5."
    )

    @classmethod
    def INPUT_TYPES(cls):
        loras = [NONE] + _comfy.model_files("loras")
        strength = {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01, "round": 0.001}
        return {
            "required": {
                "pipe": (PIPE, {"tooltip": "A Wan2.2 model from WanLeanLoadComfyFiles, WanLeanLoadDiffusers or another WanLeanLoRA."}),
                "lora_high_noise": (loras, {"tooltip": "LoRA for the high-noise expert (TI2V-5B: its only transformer), e.g. wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors. 'none': no LoRA."}),
                "strength_high_noise": ("FLOAT", {**strength, "tooltip": "How much of the high-noise LoRA to add: 1.0 as trained, 0 = none, negative subtracts it."}),
                "lora_low_noise": (loras, {"tooltip": "LoRA for the low-noise expert (A14B only), e.g. wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors. 'none': no LoRA."}),
                "strength_low_noise": ("FLOAT", {**strength, "tooltip": "How much of the low-noise LoRA to add: 1.0 as trained, 0 = none, negative subtracts it."}),
            }
        }

    def run(self, pipe, lora_high_noise, strength_high_noise, lora_low_noise, strength_low_noise):
        require_diffusers()
        from ...wanlean.video.loaders.comfy_files.lora import apply_loras

        if not hasattr(pipe, "transformer"):
            raise WanLeanError("pipe: connect a WANLEAN_PIPE from WanLeanLoadComfyFiles or WanLeanLoadDiffusers.")
        high = None if lora_high_noise in (None, "", NONE) else (_comfy.model_path("loras", lora_high_noise, "lora_high_noise"), strength_high_noise)
        low = None if lora_low_noise in (None, "", NONE) else (_comfy.model_path("loras", lora_low_noise, "lora_low_noise"), strength_low_noise)
        return (apply_loras(pipe, high, low),)


NODE_CLASS_MAPPINGS = {"WanLeanLoRA": WanLeanLoRA}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanLoRA": "WanLean LoRA (Wan2.2 experts)"}
