"""Wan2.2 text-to-video sampling on a `WanSession`, read top to bottom like diffusers' `pipeline_wan.py`:
`resolve_settings` (official defaults, input checks) → `encode_prompts` (real tokens, cache) →
`denoise` (the loop: which expert runs now, is CFG on; skipped on a `result_cache` hit) → `decode` (VAE,
frames 0–1, raw latents).

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
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from . import auto_memory, guidance, memory, request_memory, speed
from ..errors import WanLeanError
from .memory import AUTO
from .models import OFFICIAL_NEGATIVE
from .result_cache import cached_or_run
from .schedule import NUM_TRAIN_TIMESTEPS, SAMPLERS, cfg_enabled, count_forwards, forwards_per_step, make_scheduler, plan_steps
from .session import WanSession
from .text_encoding import encode_texts, padded_batch
from ..tokens import check_text_size, clean_text, lone_surrogates
from .video_shape import check_frames, check_size, latent_shape
from .run_report import RunStats, StageStats, StepProgress, StepTimer, format_duration, out_of_memory_message, report  # noqa: F401 (re-exported)


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
    cfg_batch: str = "auto"  # the CFG pair as one batch of 2: "on", "off", or "auto" (where measured faster)


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
    cfg_batch: str = "auto"  # see guidance.batch_cfg_pair

    @property
    def guided_stages(self) -> tuple[bool, bool]:
        """(CFG on in the high-noise stage, CFG on in the low-noise stage)."""
        return cfg_enabled(self.cfg_high), cfg_enabled(self.cfg_low)


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
    guidance.check_mode(request.cfg_batch)

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
        cfg_batch=request.cfg_batch,
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

    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    return randn_tensor(latent_shape(session, settings), generator=generator, device=torch.device(session.device), dtype=torch.float32)


def denoise(
    session: WanSession,
    settings: Settings,
    prompt_embeds,
    negative_embeds,
    on_step: Callable[[int, int, str], None] | None = None,
    latents=None,
    stats: RunStats | None = None,
    cancel_check: Callable[[], None] | None = None,
    on_progress: Callable[[StepProgress], None] | None = None,
):
    """Run the sampling loop; returns the final (normalised) latents.

    Args:
        on_step: `on_step(index, total, stage)`, called after every step; raise inside it and the loop
            stops at once.
        cancel_check: called before every transformer block (see `checks_between_blocks`); raise inside it
            (ComfyUI's cancel) and the forward stops within one block instead of one step.
        on_progress: `on_progress(StepProgress)`, called after every step (after `on_step`): stage, step,
            seconds per step, time left, and the clean estimate for a preview (computed only if asked).
    """
    stats = stats if stats is not None else RunStats()
    with speed.levers(session, prompt_embeds, negative_embeds) as levers, checks_between_blocks(session, levers.watch_cancel(cancel_check)):
        stats.speed = levers
        return _denoise(session, settings, prompt_embeds, negative_embeds, on_step, latents, stats, on_progress, levers)


@contextmanager
def checks_between_blocks(session: WanSession, check: Callable[[], None] | None):
    """Call `check()` before each block of each transformer while the context is open: a forward pre-hook
    on every module of `transformer.blocks`, removed on exit, error or not. A step at the official size
    takes tens of seconds on a GPU and minutes on a CPU; a block is 1/40 of a forward."""
    if check is None:
        yield
        return
    handles = []
    try:
        for expert in (session.transformer, session.transformer_2):
            for block in getattr(expert, "blocks", None) or ():
                handles.append(block.register_forward_pre_hook(lambda module, args: check()))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _denoise(session, settings, prompt_embeds, negative_embeds, on_step, latents, stats, on_progress=None, levers=None):
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
    timer = StepTimer(settings, [boundary_timestep is None or bool(t >= boundary_timestep) for t in timesteps])
    stats.cfg_batch = guidance.batch_cfg_pair(settings.cfg_batch, session.device, guidance.hidden_elements(session.transformer, latents))
    batched = stats.cfg_batch[0]  # the CFG pair as one batch of 2 (see guidance)
    denoise_started = time.perf_counter()

    with torch.no_grad():
        for index, t in enumerate(timesteps):
            step_started = time.perf_counter()
            moved_before = memory.move_stats(session)[1]
            # Which expert runs now: high-noise while t >= boundary × 1000, then low-noise.
            high_noise = boundary_timestep is None or bool(t >= boundary_timestep)
            stage = "high" if high_noise else "low"
            expert = session.transformer if high_noise else session.transformer_2
            cfg = settings.cfg_high if high_noise else settings.cfg_low  # CFG on where cfg > 1, decided per stage
            memory.activate(session, expert)  # model_offload: the other expert leaves the device here
            expert = levers.wrap(expert) if levers is not None else expert  # speed levers: cache contexts, fallback (speed.py)

            latent_input = latents.to(session.dtype)
            timestep = _timestep_input(session, t, latents)
            # One forward without CFG; with CFG the conditional/unconditional pair (one batch of 2 if `batched`).
            noise_pred = guidance.predict_noise(expert, latent_input, timestep, prompt_embeds, negative_embeds, cfg, batched)
            if not bool(torch.isfinite(noise_pred).all()):  # else NaN runs on to black frames and a "success"
                who = "transformer" if boundary_timestep is None else f"{stage}-noise expert"
                raise WanLeanError(
                    f"the {who} produced NaN or infinite values at step {index + 1} of {len(timesteps)}; "
                    "its file may be damaged, or the dtype too narrow (try bf16 or fp32 instead of fp16)."
                )
            noisy, sigma = latents, scheduler.sigmas[index]
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]

            step_seconds = time.perf_counter() - step_started
            move_seconds = memory.move_stats(session)[1] - moved_before
            stage_stats = stats.stages[stage]
            stage_stats.steps += 1
            stage_stats.forwards += forwards_per_step(cfg)
            stage_stats.seconds += step_seconds
            if on_step is not None:
                on_step(index, len(timesteps), stage)
            if on_progress is not None:
                timer.add(index, step_seconds, move_seconds)
                progress = StepProgress(
                    index, len(timesteps), stage, step_seconds, timer.seconds_per_step(stage), timer.seconds_left(index),
                    two_stages=boundary_timestep is not None,
                    _clean=_clean_estimate(noisy, noise_pred, sigma, stats),
                )
                if stats.first_estimate_seconds is None:  # the whole denoising, as foreseen after step 1
                    stats.first_estimate_seconds = step_seconds + progress.seconds_left
                started = time.perf_counter()
                on_progress(progress)
                stats.preview_seconds += time.perf_counter() - started
            del noise_pred
    stats.denoise_seconds = time.perf_counter() - denoise_started
    return latents


def _clean_estimate(noisy, noise_pred, sigma, stats):
    """x0 = x_t − σ·v for flow matching (what diffusers' UniPC computes as `x0_pred`), made on demand."""
    def compute():
        stats.previews += 1
        return noisy - sigma.to(noisy.device, noisy.dtype) * noise_pred.to(noisy.dtype)

    return compute


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
    cancel_check: Callable[[], None] | None = None,
    on_progress: Callable[[StepProgress], None] | None = None,
    result_cache=None,
) -> VideoResult:
    """Text to video. `cache`: the text-embedding cache; `result_cache`: a `result_cache.ResultCache`, whose
    hit skips denoising (0 forwards; the text is still encoded, for the report's token counts). Raises WanLeanError for bad input and for device out-of-memory (memory is freed and
    the message names the memory modes to try); an exception from `on_step` (after each step) or from
    `cancel_check` (before each transformer block) stops the run at once. `on_progress` gets a
    `StepProgress` after each step (progress text, time left, previews). A request that cannot fit in
    memory is refused before anything is allocated (`request_memory.check_fits`); memory_mode `auto`
    chooses its placement here (`auto_memory.choose`)."""
    settings = resolve_settings(session, request)
    if session.memory_mode == AUTO:  # the fastest placement that fits this run (refuses what fits in none)
        session.memory_state.auto_choice = auto_memory.choose(session, settings.width, settings.height, settings.frames)
    # Refuse what cannot fit before anything is allocated (a lower estimate, see request_memory).
    request_memory.check_fits(session, settings.width, settings.height, settings.frames)
    stats = RunStats()
    moves_before = memory.move_stats(session)[1]
    out_of_memory = None
    try:
        prompt_embeds, negative_embeds = encode_prompts(session, settings, cache, stats)
        latents = cached_or_run(result_cache, session, settings, stats, lambda: denoise(
            session, settings, prompt_embeds, negative_embeds, on_step, stats=stats, cancel_check=cancel_check, on_progress=on_progress))
        decode_started = time.perf_counter()
        frames, latents_raw = decode(session, latents)
        stats.decode_seconds = time.perf_counter() - decode_started
    except BaseException as exc:
        if request_memory.is_out_of_memory(exc):  # torch.OutOfMemoryError, or the CPU allocator's RuntimeError
            out_of_memory = request_memory.out_of_memory_detail(exc)
        else:
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


def expected_forwards(steps: int, shift: float, boundary: float | None, cfg_high: float, cfg_low: float, sampler: str = "unipc") -> int:
    """Transformer forwards a run needs: per stage, one per step, two where that stage's cfg > 1."""
    return count_forwards(plan_steps(steps, shift, boundary, sampler), cfg_high, cfg_low)
