"""WanLeanGenerationCost: what a Wan2.2 run costs, from its settings, before running it."""

from ...wanlean.video import cost
from ...wanlean.video.models import A14B
from ...wanlean.video.schedule import SAMPLERS


class WanLeanGenerationCost:
    """Latent frames, video tokens, steps per expert, transformer forwards and a compute figure."""

    CATEGORY = "WanLean/video"
    FUNCTION = "run"
    OUTPUT_NODE = True  # shows its report, so it runs even when nothing uses its outputs
    RETURN_TYPES = ("INT", "INT", "INT", "INT", "INT", "FLOAT", "FLOAT", "FLOAT", "STRING")
    RETURN_NAMES = (
        "latent_frames",
        "video_tokens",
        "high_noise_steps",
        "low_noise_steps",
        "forwards",
        "relative_compute",
        "video_seconds",
        "price",
        "report",
    )
    OUTPUT_TOOLTIPS = (
        "(frames − 1) / 4 + 1.",
        "Tokens the transformer processes per forward: (h/16)(w/16)·latent frames for A14B, (h/32)(w/32)·latent frames for TI2V-5B.",
        "Steps on the high-noise expert (timestep ≥ boundary × 1000), from the scheduler's real timesteps.",
        "Steps on the low-noise expert (0 for TI2V-5B).",
        "Transformer forwards: steps, doubled in each stage whose CFG is above 1.",
        "Estimated transformer compute relative to the official A14B 720p run (80 forwards of 75,600 tokens); "
        "includes attention's quadratic term.",
        "Video length in seconds at the model's frame rate (16 fps A14B, 24 fps TI2V-5B).",
        "video_seconds × price_per_second (0 when no price is given).",
        "All of the above as text.",
    )
    DESCRIPTION = (
        "What a generation costs from its settings alone. Prompt length is not what drives it: size, "
        "frames, steps and CFG are."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (list(cost.MODELS), {"default": "A14B", "tooltip": "A14B: two 14B experts, 16 fps. TI2V-5B: one 5B transformer with the Wan2.2 VAE, 24 fps."}),
                "width": ("INT", {"default": A14B.width, "min": 16, "max": 8192, "step": 16, "tooltip": "Video width in pixels: a multiple of 16 (A14B) or 32 (TI2V-5B)."}),
                "height": ("INT", {"default": A14B.height, "min": 16, "max": 8192, "step": 16, "tooltip": "Video height in pixels: a multiple of 16 (A14B) or 32 (TI2V-5B; official 704)."}),
                "frames": ("INT", {"default": A14B.frames, "min": 1, "max": 10001, "step": 4, "tooltip": "Number of frames, 4k+1 (official: 81 for A14B, 121 for TI2V-5B)."}),
                "steps": ("INT", {"default": A14B.steps, "min": 1, "max": 1000, "tooltip": "Sampling steps (official: 40 A14B, 50 TI2V-5B; 4 with the lightx2v LoRAs)."}),
                "cfg_high": ("FLOAT", {"default": A14B.cfg_high, "min": 0.0, "max": 100.0, "step": 0.1, "tooltip": "CFG scale of the high-noise stage (TI2V-5B: its only stage). Above 1 costs a second forward per step."}),
                "cfg_low": ("FLOAT", {"default": A14B.cfg_low, "min": 0.0, "max": 100.0, "step": 0.1, "tooltip": "CFG scale of the low-noise stage (A14B only). Above 1 costs a second forward per step."}),
                "boundary": ("FLOAT", {"default": A14B.boundary, "min": 0.0, "max": 1.0, "step": 0.005, "tooltip": "A14B switches to the low-noise expert when the timestep drops below boundary × 1000 (official 0.875)."}),
                "shift": ("FLOAT", {"default": A14B.shift, "min": 0.01, "max": 100.0, "step": 0.1, "tooltip": "Flow shift (official: 12.0 A14B, 5.0 TI2V-5B). It moves the high/low split: 40 steps at shift 12 give 26/14, at shift 3 13/27."}),
                "sampler": (list(SAMPLERS), {"default": "unipc", "tooltip": "Scheduler whose timesteps decide the split: unipc (official) or euler."}),
            },
            "optional": {
                "price_per_second": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.01, "tooltip": "Optional: what a hosted API charges per second of video (they bill per second, not per token). 0 = no price."}),
            },
        }

    def run(self, model, width, height, frames, steps, cfg_high, cfg_low, boundary, shift, sampler, price_per_second=0.0):
        result = cost.estimate_cost(
            model=model,
            width=width,
            height=height,
            frames=frames,
            steps=steps,
            cfg_high=cfg_high,
            cfg_low=cfg_low,
            boundary=boundary,
            shift=shift,
            sampler=sampler,
            price_per_second=price_per_second or None,
        )
        summary = result.summary()
        return {
            "ui": {"text": [summary]},
            "result": (
                result.latent_frames,
                result.video_tokens,
                result.high_noise_steps,
                result.low_noise_steps,
                result.forwards,
                result.relative_compute,
                result.video_seconds,
                result.price or 0.0,
                summary,
            ),
        }


NODE_CLASS_MAPPINGS = {"WanLeanGenerationCost": WanLeanGenerationCost}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanGenerationCost": "WanLean Generation Cost"}
