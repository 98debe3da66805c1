"""What a run reports while it runs and when it ends: step and stage statistics, the progress line with
the time left, and the report text the sampler node shows. Kept apart from the loop in `sampler.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import memory, request_memory
from .memory import AUTO, PLACEMENT_MODES
from .schedule import NUM_TRAIN_TIMESTEPS, cfg_enabled, forwards_per_step
from .text_encoding import EncodedText


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
    denoise_seconds: float = 0.0
    first_estimate_seconds: float | None = None  # the denoising time foreseen after the first step
    previews: int = 0  # clean estimates computed for previews
    preview_seconds: float = 0.0  # time spent in on_progress (previews, progress text)
    cfg_batch: tuple | None = None  # (the CFG pair ran as one batch of 2, why): guidance.batch_cfg_pair
    speed: object = None  # speed.Levers of the run: its report lines (attention, compile, fp8, skipped forwards, fallbacks)
    result_cache: str = "off"  # "off", "unkeyed" (no weights identity), "miss", or a hit: "memory" / "disk"
    result_cache_note: str = ""  # where a miss was stored, what a hit saved, why the cache was not used

    @property
    def forwards(self) -> int:
        return sum(stage.forwards for stage in self.stages.values())


@dataclass
class StepProgress:
    """What the loop knows after one step: for progress text, time estimates and previews.

    Args:
        index: the step just finished (0-based); `index + 1` steps are done.
        total: steps in the run.
        stage: "high" (the high-noise expert, or TI2V-5B's only transformer) or "low".
        step_seconds: this step's time, weight moves included.
        seconds_per_step: this stage's mean step time so far, weight moves excluded.
        seconds_left: estimate of the denoising time left: the forwards still to run at the measured
            seconds per forward, plus one expert swap if the switch is still ahead and weights move.
        two_stages: whether the model has two experts (names the stage in `text()`).
    """

    index: int
    total: int
    stage: str
    step_seconds: float
    seconds_per_step: float
    seconds_left: float
    two_stages: bool = True
    _clean: Callable[[], object] | None = None

    def clean_latents(self):
        """The current clean estimate x0 = latents − σ·prediction (flow matching), `[1, C, f, h, w]`
        float32 in model space (normalised like ComfyUI's Wan latent formats after `process_in`), on the
        device. Computed on first call only: a caller that shows no preview pays nothing."""
        return self._clean() if self._clean is not None else None

    def text(self) -> str:
        """"high-noise expert · step 3/40 · 6.41 s/step · about 3 min 51 s left"."""
        name = {"high": "high-noise expert", "low": "low-noise expert"}[self.stage] if self.two_stages else "transformer"
        left = "done" if self.index + 1 >= self.total else f"about {format_duration(self.seconds_left)} left"
        return f"{name} · step {self.index + 1}/{self.total} · {self.seconds_per_step:.2f} s/step · {left}"


def format_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class StepTimer:
    """Seconds per forward from the steps so far (weight moves apart), and the time left from the plan."""

    def __init__(self, settings, high_noise_steps: list[bool]):
        self.forwards = [forwards_per_step(settings.cfg_high if high else settings.cfg_low) for high in high_noise_steps]
        self.stages = ["high" if high else "low" for high in high_noise_steps]
        self.compute_seconds = 0.0
        self.forwards_done = 0
        self.largest_move = 0.0
        self.per_stage = {"high": [0.0, 0], "low": [0.0, 0]}  # compute seconds, steps

    def add(self, index: int, step_seconds: float, move_seconds: float) -> None:
        compute = max(0.0, step_seconds - move_seconds)
        self.compute_seconds += compute
        self.forwards_done += self.forwards[index]
        self.largest_move = max(self.largest_move, move_seconds)
        totals = self.per_stage[self.stages[index]]
        totals[0] += compute
        totals[1] += 1

    def seconds_per_step(self, stage: str) -> float:
        seconds, steps = self.per_stage[stage]
        return seconds / steps if steps else 0.0

    def seconds_left(self, index: int) -> float:
        per_forward = self.compute_seconds / self.forwards_done if self.forwards_done else 0.0
        left = per_forward * sum(self.forwards[index + 1:])
        if "low" in self.stages[index + 1:] and self.stages[index] == "high":
            left += self.largest_move  # the expert swap still ahead (0 when weights do not move)
        return left


def out_of_memory_message(session, settings, detail: str) -> str:
    if request_memory.on_cpu_allocator(detail):  # host RAM: the memory modes change nothing there
        return (
            f"out of host memory (RAM) at {settings.width}×{settings.height}×{settings.frames} ({detail}). Memory "
            "was freed. Choose fewer frames or a smaller size, or close other programs."
        )
    placement = memory.mode(session)
    others = [mode for mode in PLACEMENT_MODES if mode != placement]
    chosen = f"'{placement}' (chosen by 'auto')" if session.memory_mode == AUTO else f"'{placement}'"
    return (
        f"out of device memory at {settings.width}×{settings.height}×{settings.frames} in memory mode "
        f"{chosen} ({detail}). Memory was freed. Try memory_mode "
        + " or ".join(f"'{mode}'" for mode in others)
        + " in the loader ('model_offload' keeps one expert on the GPU at a time; 'sequential_offload' streams "
        "blocks and needs the least), or fewer frames / a smaller size."
    )


def report(session, settings, stats: RunStats) -> str:
    """A few lines for the node's `report` output."""
    lines = [
        f"{session.model_type} ({session.source or 'session'}), {settings.width}×{settings.height}×{settings.frames} "
        f"at {session.fps} fps, {settings.sampler} {settings.steps} steps, shift {settings.shift:g}, seed {settings.seed}, "
        f"memory {_mode_text(session)}",
    ]
    state = session.memory_state
    if session.memory_mode == AUTO and state.auto_choice is not None:
        lines.append(state.auto_choice.reason)
    stage_names = {"high": "high-noise expert", "low": "low-noise expert"} if settings.boundary is not None else {"high": "transformer"}
    for stage, name in stage_names.items():
        s = stats.stages[stage]
        cfg = settings.cfg_high if stage == "high" else settings.cfg_low
        cfg_text = f"cfg {cfg:g} ({'on' if cfg_enabled(cfg) else 'off'})"
        per_step = f" ({s.seconds / s.steps:.2f} s/step)" if s.steps else ""
        lines.append(f"{name}: {_plural(s.steps, 'step')}, {_plural(s.forwards, 'forward')}, {cfg_text}, {s.seconds:.2f} s{per_step}")
    if stats.cfg_batch and any(settings.guided_stages):
        lines.append(_cfg_batch_line(*stats.cfg_batch))
    if settings.boundary is not None:
        lines.append(f"expert switch at t < {settings.boundary * NUM_TRAIN_TIMESTEPS:g} (boundary {settings.boundary:g})")
    for label, item in zip(("prompt", "negative"), stats.text):
        lines.append(f"{label}: {_text_line(item)}")
    if len(stats.text) == 1:
        lines.append("negative: not encoded (CFG off in every stage)")
    lines.append(_result_cache_line(stats))
    lines.append(f"text encoding: {_plural(stats.encoder_forwards, 'encoder forward')}, {stats.text_seconds * 1000:.1f} ms; "
                 f"decode {stats.decode_seconds:.2f} s" + (f"; weight moves {stats.move_seconds:.2f} s" if stats.move_seconds else ""))
    if stats.first_estimate_seconds is not None and settings.steps > 1:
        lines.append(f"denoising took {format_duration(stats.denoise_seconds)}; estimated after step 1: "
                     f"{format_duration(stats.first_estimate_seconds)}")
    if stats.speed is not None:
        lines.extend(stats.speed.report_lines(stage_names))
    if stats.previews:
        lines.append(f"previews: {stats.previews}, {stats.preview_seconds:.2f} s in all")
    lines.extend(_memory_lines(session))
    lines.extend(f"note: {note}" for note in settings.notes)
    for lora in session.extras.get("loras", []):  # keys a LoRA carried that nothing in the model matched
        if lora.get("not_applied"):
            lines.append(f"note: LoRA {lora['file']} ({lora['expert']}-noise expert): {len(lora['not_applied'])} key(s) "
                         f"not applied: {', '.join(lora['not_applied'])}")
    return "\n".join(lines)


def _result_cache_line(stats: RunStats) -> str:
    if stats.result_cache in ("memory", "disk"):
        return (f"result cache hit ({stats.result_cache}): denoising skipped, 0 transformer forwards, only the VAE "
                f"decoded ({stats.result_cache_note})")
    if stats.result_cache == "miss":
        return f"result cache miss: sampled, {stats.result_cache_note}"
    if stats.result_cache == "unkeyed":
        return f"result cache {stats.result_cache_note}"
    return "result cache off"


def _cfg_batch_line(batched: bool, reason: str) -> str:
    """Forwards count samples through the transformer: a pair run as one batch of 2 is still 2 forwards."""
    how = "one batch of 2 per guided step" if batched else "two forwards one after the other"
    return f"CFG pair: {how} ({reason}); forwards count samples, so a batched pair counts 2"


def _mode_text(session) -> str:
    placement = memory.mode(session)
    return f"auto → {placement}" if session.memory_mode == AUTO else placement


def _memory_lines(session) -> list[str]:
    state = session.memory_state
    lines = []
    if state.swaps:
        how = "from pinned memory" if state.pinned_swaps else "from ordinary memory"
        lines.append(f"expert swaps: {state.swaps} onto the GPU {how}, {state.swap_seconds:.2f} s in all (since loading)")
    if state.pin_failure:
        lines.append(f"pinned memory unavailable ({state.pin_failure}): the resting expert waits in ordinary host memory; swaps are slower")
    if state.encoder_note:
        lines.append(state.encoder_note)
    return lines


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _text_line(item: EncodedText) -> str:
    cache = {"memory": "cache hit (memory)", "disk": "cache hit (disk)", "miss": "cache miss", "off": "cache off"}[item.cache]
    if item.cut_tokens > 0:
        return (f"{item.total_tokens} tokens, CUT to the first {item.kept_tokens} (Wan reads at most 512; "
                f"{item.cut_tokens} tokens lost), {cache}")
    return f"{item.kept_tokens} tokens, {cache}"
