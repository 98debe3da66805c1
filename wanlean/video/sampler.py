"""Wan2.2 text-to-video sampling on a `WanSession`, read top to bottom like diffusers' `pipeline_wan.py`:
`resolve_settings` (official defaults, input checks) → `encode_prompts` (real tokens, cache) →
`denoise` (the loop: which expert runs now, is CFG on) → `decode` (VAE, frames 0–1, raw latents).

Differences from a bare `WanPipeline` call, all deliberate:
- CFG is decided per stage: the high-noise stage uses `cfg_high`, the low-noise stage `cfg_low`, and a
  stage with cfg 1.0 runs one forward per step (diffusers decides once, from the high-noise scale).
- The defaults are official Wan's for the loaded model (shift 12 for A14B, not the repository's 3.0),
  and the default negative prompt is Wan's official Chinese one (diffusers: empty).
- Text is encoded on the real tokens only, with a cache (see `text_encoding`).
With cfg_low == cfg_high and the same scheduler and seed, the frames equal `WanPipeline(...)`'s.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from . import memory
from ..errors import WanLeanError
from .memory import MEMORY_MODES
from .models import OFFICIAL_NEGATIVE
from .schedule import NUM_TRAIN_TIMESTEPS, SAMPLERS, cfg_enabled, count_forwards, forwards_per_step, make_scheduler, plan_steps
from .session import WanSession
from .text_encoding import EncodedText, encode_texts, padded_batch
from ..tokens import check_text_size, clean_text, lone_surrogates
from .video_shape import check_frames, check_size



@dataclass
class VideoRequest:
    """What the user asks for. 0 (or None) in a number means "the loaded model's official value"."""

    prompt: str
    negative: str = OFFICIAL_NEGATIVE
    width: int = 0
    height: int = 0
    frames: int = 0
    steps: int = 0
    cfg_high: float = 0.0
    cfg_low: float = 0.0
    shift: float = 0.0
    seed: int = 0
    sampler: str = "unipc"
    boundary: float | None = None  # A14B expert switch at boundary × 1000; None/0: the model's (0.875)


@dataclass(frozen=True)
class Settings:
    """A request with every value decided and checked."""

    prompt: str
    negative: str
    width: int
    height: int
    frames: int
    steps: int
    cfg_high: float
    cfg_low: float
    shift: float
    seed: int
    sampler: str
    boundary: float | None  # None: one transformer (TI2V-5B)
    notes: tuple[str, ...] = ()  # things the report should mention (values ignored, ...)

    @property
    def guided_stages(self) -> tuple[bool, bool]:
        """(CFG on in the high-noise stage, CFG on in the low-noise stage)."""
        return cfg_enabled(self.cfg_high), cfg_enabled(self.cfg_low)


@dataclass
class StageStats:
    steps: int = 0
    forwards: int = 0
    seconds: float = 0.0


@dataclass
class RunStats:
    stages: dict = field(default_factory=lambda: {"high": StageStats(), "low": StageStats()})
    text: list = field(default_factory=list)  # EncodedText for prompt (and negative, when encoded)
    text_seconds: float = 0.0
    encoder_forwards: int = 0
    decode_seconds: float = 0.0
    move_seconds: float = 0.0

    @property
    def forwards(self) -> int:
        return sum(stage.forwards for stage in self.stages.values())


@dataclass
class VideoResult:
    frames: object  # torch.Tensor [frames, H, W, 3] float32 in 0–1, on the CPU (ComfyUI IMAGE)
    latents: object  # torch.Tensor [1, C, latent_frames, h, w]: raw VAE latents (ComfyUI LATENT)
    fps: int
    settings: Settings
    stats: RunStats
    report: str


# --- 1. settings -------------------------------------------------------------------------------------
def resolve_settings(session: WanSession, request: VideoRequest) -> Settings:
    """Fill in official values for 0/None and refuse what the model cannot run, naming the input."""
    if not _looks_like_session(session):
        raise WanLeanError(
            f"pipe: expected a WanLean Wan2.2 pipe (from WanLeanLoadDiffusers or WanLeanLoadComfyFiles); got {type(session).__name__}."
        )
    session.check()
    official = session.official
    two_experts = session.transformer_2 is not None
    notes = []

    width = int(request.width) or official.width
    height = int(request.height) or official.height
    frames = int(request.frames) or official.frames
    steps = int(request.steps) if request.steps else official.steps
    shift = float(request.shift) or official.shift
    cfg_high = float(request.cfg_high) or official.cfg_high
    cfg_low = float(request.cfg_low) or official.cfg_low
    multiple = session.size_multiple
    example = f"{official.width}×{official.height}"
    for name, value in (("width", width), ("height", height)):
        check_size(name, value, multiple, session.model_type, f"official {example}; 0 = the official value")
    check_frames(frames, example=official.frames)
    if steps < 1:
        raise WanLeanError(f"steps must be at least 1 (official: {official.steps}); got {steps}.")
    if shift < 0:
        raise WanLeanError(f"shift must be greater than 0, or 0 for the official {official.shift}; got {shift}.")
    for name, value in (("cfg_high", cfg_high), ("cfg_low", cfg_low)):
        if value < 1.0:
            raise WanLeanError(f"{name} must be 1.0 (no CFG) or more, or 0 for the official value; got {value}.")
    if request.sampler not in SAMPLERS:
        raise WanLeanError(f"sampler must be one of {', '.join(SAMPLERS)}; got '{request.sampler}'.")

    boundary = request.boundary if request.boundary else None
    if two_experts:
        boundary = float(boundary) if boundary is not None else float(session.boundary_ratio)
        if not 0.0 < boundary <= 1.0:
            raise WanLeanError(f"boundary must be between 0 and 1 (official: {official.boundary}), or 0 for the model's; got {boundary}.")
    else:
        if boundary is not None:
            notes.append(f"boundary {boundary} ignored: {session.model_type} has one transformer")
        boundary = None
        if request.cfg_low and float(request.cfg_low) != cfg_high:
            notes.append(f"cfg_low {float(request.cfg_low):g} ignored: {session.model_type} has one stage (cfg_high {cfg_high:g} used)")
        cfg_low = cfg_high
    texts = {"prompt": request.prompt, "negative": request.negative if request.negative is not None else OFFICIAL_NEGATIVE}
    for name, text in texts.items():
        if not isinstance(text, str):
            raise WanLeanError(f"{name} must be text; got {type(text).__name__}.")
        check_text_size(text, name)
        if lone := lone_surrogates(text):
            notes.append(f"{name}: {lone} broken character{'s' if lone > 1 else ''} (unpaired UTF-16 surrogate) replaced by U+FFFD")
    return Settings(
        prompt=clean_text(texts["prompt"]), negative=clean_text(texts["negative"]),
        width=width, height=height, frames=frames, steps=steps, cfg_high=cfg_high, cfg_low=cfg_low,
        shift=shift, seed=int(request.seed), sampler=request.sampler, boundary=boundary, notes=tuple(notes),
    )


def _looks_like_session(obj) -> bool:
    """A WanSession, judged by its fields: the class may come from another import of this package
    (ComfyUI imports the pack by path, scripts import `wanlean`)."""
    return isinstance(obj, WanSession) or all(hasattr(obj, name) for name in WanSession.__dataclass_fields__)


# --- 2. text -----------------------------------------------------------------------------------------
def encode_prompts(session: WanSession, settings: Settings, cache=None, stats: RunStats | None = None):
    """(prompt_embeds, negative_embeds or None), each `[1, 512, d]` in the transformer dtype on the device.
    The negative is encoded only when some stage uses CFG."""
    need_negative = any(settings.guided_stages)
    texts = [settings.prompt, settings.negative] if need_negative else [settings.prompt]
    encoded, encode_stats = encode_texts(
        session.text_encoder, texts, cache, place=lambda encoder: memory.text_encoder_placed(session, encoder)
    )
    if stats is not None:
        stats.text = encoded
        stats.text_seconds = encode_stats.seconds
        stats.encoder_forwards = encode_stats.encoder_forwards
    embeds = padded_batch(encoded, device=session.device, dtype=session.dtype)
    return embeds[0:1], (embeds[1:2] if need_negative else None)


# --- 3. the denoising loop ---------------------------------------------------------------------------
def initial_noise(session: WanSession, settings: Settings):
    """Seeded Gaussian latents `[1, C, latent_frames, h, w]` (float32, drawn on the CPU so a seed gives the
    same video on any device)."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    latent_frames = (settings.frames - 1) // session.vae_scale_temporal + 1
    shape = (
        1,
        session.latent_channels,
        latent_frames,
        settings.height // session.vae_scale_spatial,
        settings.width // session.vae_scale_spatial,
    )
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    return randn_tensor(shape, generator=generator, device=torch.device(session.device), dtype=torch.float32)


def denoise(
    session: WanSession,
    settings: Settings,
    prompt_embeds,
    negative_embeds,
    on_step: Callable[[int, int, str], None] | None = None,
    latents=None,
    stats: RunStats | None = None,
):
    """Run the sampling loop; returns the final (normalised) latents. `on_step(index, total, stage)` is
    called after every step: raise inside it (ComfyUI's cancel) and the loop stops at once."""
    import torch

    stats = stats if stats is not None else RunStats()
    memory.prepare(session)
    scheduler = make_scheduler(settings.sampler, settings.shift)
    scheduler.set_timesteps(settings.steps, device=session.device)
    scheduler.set_begin_index(0)
    timesteps = scheduler.timesteps
    boundary_timestep = None if settings.boundary is None else settings.boundary * NUM_TRAIN_TIMESTEPS
    if latents is None:
        latents = initial_noise(session, settings)

    with torch.no_grad():
        for index, t in enumerate(timesteps):
            step_started = time.perf_counter()
            # Which expert runs now: high-noise while t >= boundary × 1000, then low-noise.
            high_noise = boundary_timestep is None or bool(t >= boundary_timestep)
            stage = "high" if high_noise else "low"
            expert = session.transformer if high_noise else session.transformer_2
            cfg = settings.cfg_high if high_noise else settings.cfg_low
            cfg_on = cfg_enabled(cfg)  # decided per stage: cfg 1.0 means one forward per step
            memory.activate(session, expert)  # model_offload: the other expert leaves the device here

            latent_input = latents.to(session.dtype)
            timestep = _timestep_input(session, t, latents)
            noise_pred = expert(hidden_states=latent_input, timestep=timestep, encoder_hidden_states=prompt_embeds, return_dict=False)[0]
            if cfg_on:
                noise_uncond = expert(hidden_states=latent_input, timestep=timestep, encoder_hidden_states=negative_embeds, return_dict=False)[0]
                noise_pred = noise_uncond + cfg * (noise_pred - noise_uncond)
            if not bool(torch.isfinite(noise_pred).all()):  # else NaN runs on to black frames and a "success"
                who = "transformer" if boundary_timestep is None else f"{stage}-noise expert"
                raise WanLeanError(
                    f"the {who} produced NaN or infinite values at step {index + 1} of {len(timesteps)}; "
                    "its file may be damaged, or the dtype too narrow (try bf16 or fp32 instead of fp16)."
                )
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]

            stage_stats = stats.stages[stage]
            stage_stats.steps += 1
            stage_stats.forwards += forwards_per_step(cfg)
            stage_stats.seconds += time.perf_counter() - step_started
            if on_step is not None:
                on_step(index, len(timesteps), stage)
    return latents


def _timestep_input(session: WanSession, t, latents):
    """diffusers' timestep argument: one per sample, or (TI2V-5B, `expand_timesteps`) one per video token."""
    import torch

    if not session.expand_timesteps:
        return t.expand(latents.shape[0])
    patch = session.transformer.config.patch_size
    _, _, latent_frames, height, width = latents.shape
    mask = torch.ones((latent_frames, height // patch[1], width // patch[2]), dtype=torch.float32, device=latents.device)
    return (mask * t).flatten().unsqueeze(0).expand(latents.shape[0], -1)


# --- 4. decode ---------------------------------------------------------------------------------------
def raw_latents(session: WanSession, latents):
    """Model-space latents → raw VAE latents (what ComfyUI's LATENT and VAEDecode use): × std + mean,
    in the arithmetic diffusers uses."""
    import torch

    vae = session.vae
    z_dim = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    inverse_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    return latents / inverse_std + mean


def decode(session: WanSession, latents):
    """(frames `[F, H, W, 3]` float32 0–1 on the CPU, raw latents `[1, C, f, h, w]` float32 on the CPU)."""
    import torch

    memory.activate(session, session.vae)
    vae_device = next(session.vae.parameters()).device
    raw = raw_latents(session, latents.to(vae_device, session.vae.dtype))
    with torch.no_grad():
        video = session.vae.decode(raw, return_dict=False)[0]  # [1, 3, F, H, W] in -1..1
    if not bool(torch.isfinite(video).all()):
        raise WanLeanError("the VAE produced NaN or infinite values while decoding; its file may be damaged, or the dtype too narrow (try bf16 or fp32).")
    frames = (video[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).float().cpu()
    return frames, raw.float().cpu()


# --- all of it ---------------------------------------------------------------------------------------
def generate(
    session: WanSession,
    request: VideoRequest,
    cache=None,
    on_step: Callable[[int, int, str], None] | None = None,
) -> VideoResult:
    """Text to video. Raises WanLeanError for bad input and for device out-of-memory (memory is freed and
    the message names the memory modes to try); an exception from `on_step` stops the run at once."""
    import torch

    settings = resolve_settings(session, request)
    stats = RunStats()
    moves_before = memory.move_stats(session)[1]
    out_of_memory = None
    try:
        prompt_embeds, negative_embeds = encode_prompts(session, settings, cache, stats)
        latents = denoise(session, settings, prompt_embeds, negative_embeds, on_step, stats=stats)
        decode_started = time.perf_counter()
        frames, latents_raw = decode(session, latents)
        stats.decode_seconds = time.perf_counter() - decode_started
    except torch.OutOfMemoryError as exc:
        out_of_memory = str(exc).split("\n")[0]
    except BaseException as exc:
        # A cancel or an error: drop the tensors the loop's frames hold, then give the memory back.
        traceback.clear_frames(exc.__traceback__)
        memory.release(session)
        raise
    if out_of_memory is not None:  # outside the except block, so the traceback (and its tensors) is gone
        memory.release(session)
        raise WanLeanError(out_of_memory_message(session, settings, out_of_memory))
    stats.move_seconds = memory.move_stats(session)[1] - moves_before
    memory.release(session, collect=False)
    return VideoResult(frames, latents_raw, session.fps, settings, stats, report(session, settings, stats))


def out_of_memory_message(session: WanSession, settings: Settings, detail: str) -> str:
    others = [mode for mode in MEMORY_MODES if mode != session.memory_mode]
    return (
        f"out of device memory at {settings.width}×{settings.height}×{settings.frames} in memory mode "
        f"'{session.memory_mode}' ({detail}). Memory was freed. Try memory_mode "
        + " or ".join(f"'{mode}'" for mode in others)
        + " in the loader ('model_offload' keeps one expert on the GPU at a time; 'sequential_offload' streams "
        "blocks and needs the least), or fewer frames / a smaller size."
    )


def report(session: WanSession, settings: Settings, stats: RunStats) -> str:
    """A few lines for the node's `report` output."""
    lines = [
        f"{session.model_type} ({session.source or 'session'}), {settings.width}×{settings.height}×{settings.frames} "
        f"at {session.fps} fps, {settings.sampler} {settings.steps} steps, shift {settings.shift:g}, seed {settings.seed}, "
        f"memory {session.memory_mode}",
    ]
    stage_names = {"high": "high-noise expert", "low": "low-noise expert"} if settings.boundary is not None else {"high": "transformer"}
    for stage, name in stage_names.items():
        s = stats.stages[stage]
        cfg = settings.cfg_high if stage == "high" else settings.cfg_low
        cfg_text = f"cfg {cfg:g} ({'on' if cfg_enabled(cfg) else 'off'})"
        lines.append(f"{name}: {_plural(s.steps, 'step')}, {_plural(s.forwards, 'forward')}, {cfg_text}, {s.seconds:.2f} s")
    if settings.boundary is not None:
        lines.append(f"expert switch at t < {settings.boundary * NUM_TRAIN_TIMESTEPS:g} (boundary {settings.boundary:g})")
    for label, item in zip(("prompt", "negative"), stats.text):
        lines.append(f"{label}: {_text_line(item)}")
    if len(stats.text) == 1:
        lines.append("negative: not encoded (CFG off in every stage)")
    lines.append(f"text encoding: {_plural(stats.encoder_forwards, 'encoder forward')}, {stats.text_seconds * 1000:.1f} ms; "
                 f"decode {stats.decode_seconds:.2f} s" + (f"; weight moves {stats.move_seconds:.2f} s" if stats.move_seconds else ""))
    lines.extend(f"note: {note}" for note in settings.notes)
    return "\n".join(lines)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _text_line(item: EncodedText) -> str:
    cache = {"memory": "cache hit (memory)", "disk": "cache hit (disk)", "miss": "cache miss", "off": "cache off"}[item.cache]
    if item.cut_tokens > 0:
        return (f"{item.total_tokens} tokens, CUT to the first {item.kept_tokens} (Wan reads at most 512; "
                f"{item.cut_tokens} tokens lost), {cache}")
    return f"{item.kept_tokens} tokens, {cache}"


def expected_forwards(steps: int, shift: float, boundary: float | None, cfg_high: float, cfg_low: float, sampler: str = "unipc") -> int:
    """Transformer forwards a run needs: per stage, one per step, two where that stage's cfg > 1."""
    return count_forwards(plan_steps(steps, shift, boundary, sampler), cfg_high, cfg_low)
