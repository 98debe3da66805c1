"""WanLeanSpeed: speed options (attention kernel, compiled blocks, fp8 matmul, step cache) on a new pipe
that shares the input's weights. The sampler applies them for each run (`wanlean.video.speed`)."""

from __future__ import annotations

from ...wanlean.errors import WanLeanError
from ...wanlean.video import speed
from .._shared import PIPE, require_diffusers


class WanLeanSpeed:
    """Speed levers for WanLeanSampler; without this node the sampler runs its baseline."""

    CATEGORY = "WanLean/loaders"
    FUNCTION = "run"
    RETURN_TYPES = (PIPE,)
    RETURN_NAMES = ("pipe",)
    OUTPUT_TOOLTIPS = ("The same model with these speed options; the input pipe is unchanged (no weight is copied).",)
    DESCRIPTION = (
        "Faster sampling. Lossless: the attention kernel and compiled blocks. Lossy: fp8 matmul (rounds activations "
        "to fp8) and the step cache (skips forwards). The sampler's report says what was used, how many forwards the "
        "cache skipped, and any lever that failed during the run (it is switched off and the run goes on without it)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pipe": (PIPE, {"tooltip": "A Wan2.2 model from WanLeanLoadComfyFiles, WanLeanLoadDiffusers or WanLeanLoRA."}),
                "attention": (list(speed.ATTENTION), {"default": "auto", "tooltip": "Attention kernel, through diffusers' dispatcher. auto: the fastest lossless one available (flash-attn if installed, else cuDNN attention on a bf16/fp16 GPU, else sdpa; the report names it). sdpa: PyTorch's default (the baseline). sdpa_cudnn: PyTorch's cuDNN kernel (CUDA, Ampere or newer). flash: the flash-attn package. sage: SageAttention (pip install sageattention; CUDA; int8 Q·K, not lossless)."}),
                "compile": (list(speed.COMPILE), {"default": "off", "tooltip": "blocks: compile the repeated transformer blocks with torch.compile (regional compilation). The first run compiles (minutes at full size; the report says so); later runs with the same sizes reuse it."}),
                "fp8_matmul": (list(speed.FP8_MATMUL), {"default": "off", "tooltip": "on: multiply fp8-stored weights in fp8 (torch._scaled_mm), activations quantized per token on the fly, instead of dequantizing to bf16. Needs weight_storage fp8 in WanLeanLoadComfyFiles and an NVIDIA GPU with compute capability 8.9+ (RTX 40xx, L40S, H100, H200). Slightly lossy."}),
                "step_cache": (list(speed.STEP_CACHE), {"default": "off", "tooltip": "first_block: skip the rest of a forward when the first block's output barely changed since the last full one (diffusers' First Block Cache; cond and uncond cached apart). Trades quality for speed; not quality-tested on real Wan weights."}),
                "cache_threshold": ("FLOAT", {"default": 0.05, "min": 0.0, "max": 1.0, "step": 0.005, "round": 0.0001, "tooltip": "Step cache: relative change of the first block's output below which a forward is skipped. Higher: more skipped, faster, lower quality. 0: never skip."}),
            }
        }

    def run(self, pipe, attention, compile, fp8_matmul, step_cache, cache_threshold):
        require_diffusers()
        if not hasattr(pipe, "transformer"):
            raise WanLeanError("pipe: connect a WANLEAN_PIPE from WanLeanLoadComfyFiles, WanLeanLoadDiffusers or WanLeanLoRA.")
        options = speed.SpeedOptions(attention=attention, compile=compile, fp8_matmul=fp8_matmul, step_cache=step_cache,
                               cache_threshold=float(cache_threshold))
        return (speed.with_speed(pipe, options),)


NODE_CLASS_MAPPINGS = {"WanLeanSpeed": WanLeanSpeed}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanSpeed": "WanLean Speed options"}
