"""What a Wan2.2 generation costs, from its settings alone: tokens, steps per expert, forwards, compute.

The cost of a Wan video is the denoising transformer (DiT) run `forwards` times over the video tokens.
The prompt's length does not enter: the DiT always cross-attends to 512 text rows (shorter prompts are
zero-padded to 512), and the text encoder runs once per prompt, not once per step.

Compute model (an estimate, stated so it can be checked): per transformer block and forward,
  self-attention projections 4·L·d², attention scores and values 2·L²·d,
  cross-attention projections 2·L·d² + 2·T·d², its scores and values 2·L·T·d, feed-forward 2·L·d·f
multiply-accumulates, with L video tokens, T = 512 text rows, d the model width and f the feed-forward
width; FLOPs = 2 × that × blocks. Patch embedding, the output head, modulation, the VAE and the text
encoder are left out: at full step counts they are a small fraction of the DiT's compute. `relative_compute` divides the
total by that of the official A14B 720p run (1280×720, 81 frames, 40 UniPC steps, shift 12, boundary
0.875, CFG 4.0/3.0: 80 forwards of 75,600 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import video_shape
from ..errors import WanLeanError
from .models import A14B, MODELS, ModelSpec
from .schedule import SAMPLERS, cfg_enabled, count_forwards, plan_steps

TEXT_ROWS = 512  # the DiT always sees 512 text rows, whatever the prompt's length


@dataclass(frozen=True)
class GenerationCost:
    model: str
    width: int
    height: int
    frames: int
    latent_frames: int
    video_tokens: int  # tokens per transformer forward
    high_noise_steps: int
    low_noise_steps: int
    cfg_high_on: bool
    cfg_low_on: bool
    forwards: int  # transformer forwards, CFG counted per stage
    tflops_per_forward: float
    total_pflops: float
    relative_compute: float  # total compute / the official A14B 720p run
    attention_share: float  # part of the compute that is the quadratic self-attention term
    video_seconds: float
    fps: int
    price: float | None

    def summary(self) -> str:
        lines = [
            f"Wan2.2 {self.model}: {self.width}×{self.height}, {self.frames} frames = {self.video_seconds:.2f} s at {self.fps} fps",
            f"latent frames: {self.latent_frames}; video tokens per forward: {self.video_tokens:,}",
        ]
        if MODELS[self.model].two_experts:
            lines.append(
                f"steps: {self.high_noise_steps} high-noise + {self.low_noise_steps} low-noise "
                f"(from the scheduler's timesteps for this shift and boundary)"
            )
            lines.append(
                f"CFG: high-noise stage {'on (2 forwards/step)' if self.cfg_high_on else 'off (1 forward/step)'}, "
                f"low-noise stage {'on (2 forwards/step)' if self.cfg_low_on else 'off (1 forward/step)'}"
            )
        else:
            lines.append(f"steps: {self.high_noise_steps} (one transformer: boundary and cfg_low do not apply)")
            lines.append(f"CFG: {'on (2 forwards/step)' if self.cfg_high_on else 'off (1 forward/step)'}")
        lines.append(f"transformer forwards: {self.forwards}")
        lines.append(
            f"compute: ≈{self.total_pflops:,.1f} PFLOP in the transformer ({self.tflops_per_forward:,.1f} TFLOP per "
            f"forward, {self.attention_share:.0%} of it self-attention) = {self.relative_compute:.3g}× the official "
            "A14B 720p run (estimate; VAE and text encoder not counted)"
        )
        if self.price is not None:
            lines.append(f"price: {self.price:.4g} ({self.video_seconds:.2f} video-seconds × the price per second given)")
        lines.append(
            "Prompt length does not drive this cost: the transformer always attends to 512 text rows, and the "
            "text encoder runs once per prompt. Size, frames, steps and CFG do."
        )
        return "\n".join(lines)


def _whole(value, name: str, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WanLeanError(f"{name} must be a whole number ({hint}); got {value!r}.")
    return value


def _forward_macs(spec: ModelSpec, video_tokens: int) -> tuple[float, float]:
    """(multiply-accumulates of one forward, of which the self-attention L² term)."""
    L, T, d, f = float(video_tokens), float(TEXT_ROWS), float(spec.dim), float(spec.ffn_dim)
    self_attention = 2 * L * L * d
    per_block = 4 * L * d * d + self_attention + 2 * L * d * d + 2 * T * d * d + 2 * L * T * d + 2 * L * d * f
    return per_block * spec.layers, self_attention * spec.layers


def video_tokens(model: str, width: int, height: int, frames: int) -> tuple[int, int]:
    """(latent frames, video tokens per forward) after checking the sizes for `model`."""
    spec = model_spec(model)
    frames = _whole(frames, "frames", "4k+1, e.g. 81")
    width = _whole(width, "width", f"a multiple of {spec.size_multiple}")
    height = _whole(height, "height", f"a multiple of {spec.size_multiple}")
    video_shape.check_frames(frames)
    for name, value in (("width", width), ("height", height)):
        video_shape.check_size(name, value, spec.size_multiple, spec.name, f"official sizes {spec.sizes}")
    latent = video_shape.latent_frames(frames)
    pt, ph, pw = spec.patch
    cells = spec.vae_spatial
    tokens = (latent // pt) * (height // cells // ph) * (width // cells // pw)
    return latent, tokens


def model_spec(model: str) -> ModelSpec:
    if model not in MODELS:
        raise WanLeanError(f"model must be one of {', '.join(MODELS)}; got '{model}'.")
    return MODELS[model]


def estimate_cost(
    model: str = "A14B",
    width: int = A14B.width,
    height: int = A14B.height,
    frames: int = A14B.frames,
    steps: int = A14B.steps,
    cfg_high: float = A14B.cfg_high,
    cfg_low: float = A14B.cfg_low,
    boundary: float = A14B.boundary,
    shift: float = A14B.shift,
    sampler: str = "unipc",
    price_per_second: float | None = None,
) -> GenerationCost:
    """The cost of one generation; raises WanLeanError naming the input and the fix."""
    spec = model_spec(model)
    latent_frames, tokens = video_tokens(model, width, height, frames)
    for name, value in (("cfg_high", cfg_high), ("cfg_low", cfg_low)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise WanLeanError(f"{name} must be a number, 0 or more (1.0 turns CFG off); got {value!r}.")
    if sampler not in SAMPLERS:
        raise WanLeanError(f"sampler must be one of {', '.join(SAMPLERS)}; got '{sampler}'.")
    if price_per_second is not None and (not isinstance(price_per_second, (int, float)) or price_per_second < 0):
        raise WanLeanError(f"price_per_second must be 0 or more (0 means not given); got {price_per_second!r}.")
    plan = plan_steps(_whole(steps, "steps", "e.g. 40"), shift, boundary if spec.two_experts else None, sampler)
    cfg_low_effective = cfg_low if spec.two_experts else cfg_high
    forwards = count_forwards(plan, cfg_high, cfg_low_effective)
    macs, attention_macs = _forward_macs(spec, tokens)
    total_flops = 2 * macs * forwards
    video_seconds = frames / spec.fps
    return GenerationCost(
        model=spec.name,
        width=width,
        height=height,
        frames=frames,
        latent_frames=latent_frames,
        video_tokens=tokens,
        high_noise_steps=plan.high_noise_steps,
        low_noise_steps=plan.low_noise_steps,
        cfg_high_on=cfg_enabled(cfg_high),
        cfg_low_on=cfg_enabled(cfg_low_effective),
        forwards=forwards,
        tflops_per_forward=2 * macs / 1e12,
        total_pflops=total_flops / 1e15,
        relative_compute=total_flops / reference_flops(),
        attention_share=attention_macs / macs,
        video_seconds=video_seconds,
        fps=spec.fps,
        price=None if not price_per_second else video_seconds * price_per_second,
    )


_REFERENCE_FLOPS: float | None = None


def reference_flops() -> float:
    """FLOPs of the official A14B 720p run (80 forwards of 75,600 tokens), the unit of relative_compute."""
    global _REFERENCE_FLOPS
    if _REFERENCE_FLOPS is None:
        _, tokens = video_tokens("A14B", A14B.width, A14B.height, A14B.frames)
        plan = plan_steps(A14B.steps, A14B.shift, A14B.boundary, "unipc")
        forwards = count_forwards(plan, A14B.cfg_high, A14B.cfg_low)
        _REFERENCE_FLOPS = 2 * _forward_macs(MODELS["A14B"], tokens)[0] * forwards
    return _REFERENCE_FLOPS
