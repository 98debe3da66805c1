"""memory_mode `auto`: the fastest placement that fits this run, chosen when the run starts.

From the device's free memory (the caller asks ComfyUI to unload its own models first) and the model,
size and frame count, the first of `gpu`, `model_offload`, `sequential_offload` whose planned need fits is
used, and the report says which and why:

    auto: model_offload — one expert 26.6 GB + working memory ≈ 5.3 GB fits in 40.0 GB free
    (gpu would need 63.9 GB)

The planned need is `request_memory`'s lower bound with its working part (latents and activations, or
the decoded video) doubled: on the H200 benchmark the measured peak working memory was 1.6× the lower
bound at 832×480×81 and at 1280×720×81, and torch's allocator keeps some memory it cannot reuse. When no
mode's planned need fits but `sequential_offload`'s lower bound does, `sequential_offload` is tried; when
even that does not fit, the run is refused before anything is allocated, naming the largest size and the
most frames that would fit (`request_memory.check_fits`).

On the CPU (no GPU) there is nothing to choose: everything stays resident in host memory (`gpu`), and the
report says so. When the GPU's free memory cannot be read, `model_offload` is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import request_memory
from .memory import PLACEMENT_MODES
from .request_memory import _gb

WORKING_MEMORY_FACTOR = 2.0  # planned working memory = this × the lower estimate (measured: 1.6×)


@dataclass(frozen=True)
class AutoChoice:
    """What `auto` chose for one run.

    Args:
        mode: the placement used ("gpu", "model_offload" or "sequential_offload").
        reason: one line for the report ("auto: model_offload — one expert … fits in … free").
        free: the device memory it decided on, in bytes (None on the CPU or when unknown).
        needs: planned bytes per placement mode, as compared with `free`.
    """

    mode: str
    reason: str
    free: int | None = None
    needs: dict = field(default_factory=dict)


def planned_need(session, width: int, height: int, frames: int, mode: str) -> tuple[int, int]:
    """(bytes planned for `mode`, working part of it) at the run's larger peak (denoising or decoding)."""
    p = request_memory.phases(session, width, height, frames, mode)
    denoise = p.denoise_weights + WORKING_MEMORY_FACTOR * p.denoise_working
    decode = p.decode_weights + WORKING_MEMORY_FACTOR * p.decode_working
    if denoise >= decode:
        return int(denoise), int(WORKING_MEMORY_FACTOR * p.denoise_working)
    return int(decode), int(WORKING_MEMORY_FACTOR * p.decode_working)


def _weights_text(session, mode: str) -> str:
    p = request_memory.phases(session, 16, 16, 1, mode)  # weights do not depend on the size
    if mode == "gpu":
        return f"all weights {_gb(p.denoise_weights)}"
    if mode == "model_offload":
        return f"one {'expert' if session.transformer_2 is not None else 'transformer'} {_gb(p.denoise_weights)}"
    return f"one block {_gb(p.denoise_weights)} (VAE {_gb(p.decode_weights)} while decoding)"


def choose(session, width: int, height: int, frames: int, free: int | None = None) -> AutoChoice:
    """The placement for a `width`×`height`×`frames` run of `session`. `free`: the device's free bytes as
    `request_memory.device_available` counts them (default: measured now). Raises WanLeanError when even
    `sequential_offload` cannot fit."""
    if not request_memory._is_cuda(session.device):
        return AutoChoice("gpu", "auto: gpu — the device is the CPU, so everything stays resident in host memory "
                                 "(the memory modes only matter on a GPU)")
    free = free if free is not None else request_memory.device_available(session)
    if free is None:
        return AutoChoice("model_offload", "auto: model_offload — the GPU's free memory could not be read; one expert at a time")
    needs = {}
    for mode in PLACEMENT_MODES:
        need, working = planned_need(session, width, height, frames, mode)
        needs[mode] = need
        if need <= free:
            faster = [m for m in PLACEMENT_MODES[: PLACEMENT_MODES.index(mode)]]
            would = "; ".join(f"{m} would need {_gb(needs[m])}" for m in faster)
            return AutoChoice(
                mode,
                f"auto: {mode} — {_weights_text(session, mode)} + working memory ≈ {_gb(working)} fits in "
                f"{_gb(free)} free" + (f" ({would})" if would else ""),
                free, needs,
            )
    # Nothing fits with room to spare: the least-memory mode if its lower bound fits, else refuse.
    request_memory.check_fits(session, width, height, frames, mode="sequential_offload", device_free=free)
    return AutoChoice(
        "sequential_offload",
        f"auto: sequential_offload — tight: planned {_gb(needs['sequential_offload'])} (working memory doubled) "
        f"exceeds the {_gb(free)} free, but the lower estimate fits; fewer frames or a smaller size would be safer",
        free, needs,
    )
