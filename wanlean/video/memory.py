"""Where the weights live while a session runs: the three placement modes, and `auto`.

- `gpu`: everything resident on the device (fastest; A14B in bf16 needs ~57 GB for the two experts
  plus ~11 GB for umT5-XXL).
- `model_offload`: one big module on the device at a time. The inactive expert moves to the CPU at the
  expert switch; the text encoder and the VAE come to the device only while they run. Peak ≈ one expert.
- `sequential_offload`: the transformers stay on the CPU and their blocks are streamed to the device one
  at a time (diffusers group offloading, block level, with a CUDA stream to overlap copies); the text
  encoder and VAE move as in `model_offload`. Least device memory, slowest.

- `auto` (the loaders' default): one of the three, chosen per run from the device's free memory and the
  request's size (`wanlean.video.auto_memory`); `mode(session)` says which is in effect.

In `model_offload` on a GPU the resting expert waits in pinned host memory and comes back with
non-blocking copies (`wanlean.video.pinned`); when pinning fails it waits in ordinary memory.
On a CPU-only machine every mode runs the same computation (the moves are no-ops).
What this module did to a session is kept in its typed `session.memory_state` (`MemoryState`), so the
loaders never deal with it; a loader pins umT5 to a device with the text encoder's `pinned_device`.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass

from . import pinned

PLACEMENT_MODES = ("gpu", "model_offload", "sequential_offload")  # fastest first, least device memory last
AUTO = "auto"
MEMORY_MODES = (AUTO,) + PLACEMENT_MODES  # what a loader accepts
OFFLOAD_DEVICE = "cpu"


@dataclass
class MemoryState:
    """What `prepare` and `activate` did to one session's weights.

    Args:
        prepared_mode: the memory mode the weights were placed for (None: not placed yet).
        moves: weight moves between devices since the session was loaded.
        move_seconds: time those moves took, for reports.
        auto_choice: what `auto` chose for the latest run (an `auto_memory.AutoChoice`), None otherwise.
        swaps: expert moves onto the device in `model_offload` (pinned or not) and their seconds.
        pin_failure: why pinning failed (the resting expert then waits in ordinary memory), or None.
    """

    prepared_mode: str | None = None
    moves: int = 0
    move_seconds: float = 0.0
    auto_choice: object = None
    swaps: int = 0
    swap_seconds: float = 0.0
    pinned_swaps: int = 0
    pin_failure: str | None = None
    encoder_note: str | None = None


def mode(session) -> str:
    """The placement mode in effect: the loader's, or what `auto` chose for the latest run (before any
    choice: `model_offload` on a GPU, `gpu` elsewhere)."""
    if session.memory_mode != AUTO:
        return session.memory_mode
    choice = session.memory_state.auto_choice
    if choice is not None:
        return choice.mode
    return "model_offload" if _on_cuda(session.device) else "gpu"


def _on_cuda(device) -> bool:
    return str(getattr(device, "type", device)).startswith("cuda")


def _experts(session) -> list:
    return [m for m in (session.transformer, session.transformer_2) if m is not None]


def _big_modules(session) -> list:
    modules = [session.transformer, session.transformer_2, session.vae]
    encoder = _loaded_encoder(session)
    if encoder is not None and _pinned_encoder_device(session) is None:
        modules.append(encoder)
    return [m for m in modules if m is not None]


def _resident_in_gpu_mode(session) -> list:
    """What `gpu` keeps on the device: every big module, the text encoder included when the loader chose
    `gpu` itself. Under `auto` the encoder visits the device only while it runs: it is loaded lazily, so
    its size is unknown when `auto` decides."""
    modules = _big_modules(session)
    if session.memory_mode == AUTO:
        encoder = _loaded_encoder(session)
        modules = [m for m in modules if m is not encoder]
    return modules


def _pinned_encoder_device(session):
    """A device the loader pinned the text encoder to, or None. WanLeanLoadComfyFiles' text_encoder_device
    "cpu" sets the encoder's `pinned_device`: umT5-XXL then always runs on the CPU, in every mode."""
    return getattr(session.text_encoder, "pinned_device", None)


def _loaded_encoder(session):
    source = session.text_encoder
    if source is None or not getattr(source, "loaded", False):
        return None
    return source.encoder()


def _move(session, module, device) -> None:
    """Move `module` if it is not already there (timed for reports)."""
    import torch

    device = torch.device(device)
    current = next(module.parameters(), None)
    if current is None or _same_device(current.device, device):
        return
    state = session.memory_state
    started = time.perf_counter()
    swap = mode(session) == "model_offload" and any(module is m for m in _experts(session))
    to_host = str(device) == str(torch.device(OFFLOAD_DEVICE))
    if to_host:
        pinned.offload(module) if pinned.holds_buffers(module) else module.to(device)
    elif swap and state.pin_failure is None and pinned.can_pin(session.device):
        try:
            pinned.onload(module, device)
            state.pinned_swaps += 1
        except pinned.PinningFailed as failure:
            state.pin_failure = str(failure)
            pinned.onload(module, device, pin=False)  # what was pinned stays pinned; the rest waits in ordinary memory
    elif pinned.holds_buffers(module):
        pinned.onload(module, device, pin=False)  # pinned earlier (model_offload), placed now for another mode
    else:
        module.to(device)
    seconds = time.perf_counter() - started
    state.move_seconds += seconds
    state.moves += 1
    if swap and not to_host:
        state.swaps += 1
        state.swap_seconds += seconds


def _same_device(a, b) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    import torch

    index_a = a.index if a.index is not None else torch.cuda.current_device()
    index_b = b.index if b.index is not None else torch.cuda.current_device()
    return index_a == index_b


def prepare(session) -> None:
    """Place the session's weights for its memory mode (once per mode; later calls return at once)."""
    state = session.memory_state
    placement = mode(session)
    if state.prepared_mode == placement:
        return
    experts = _experts(session)
    if state.prepared_mode == "sequential_offload":  # `auto` chose another mode for this run
        for expert in experts:
            _stop_streaming(expert)
    if placement == "gpu":
        for module in _resident_in_gpu_mode(session):
            _move(session, module, session.device)
    elif placement == "model_offload":
        for module in _big_modules(session):
            _move(session, module, OFFLOAD_DEVICE)
    elif placement == "sequential_offload":
        for module in _big_modules(session):
            _move(session, module, OFFLOAD_DEVICE)
        for expert in experts:
            _stream_blocks(expert, session.device)
    state.prepared_mode = placement


def _stop_streaming(module) -> None:
    """Remove diffusers' group offloading from `module` (its weights are on the CPU afterwards)."""
    from diffusers.hooks.group_offloading import _GROUP_OFFLOADING, _LAYER_EXECUTION_TRACKER, _LAZY_PREFETCH_GROUP_OFFLOADING
    from diffusers.hooks.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(module)
    for name in (_GROUP_OFFLOADING, _LAYER_EXECUTION_TRACKER, _LAZY_PREFETCH_GROUP_OFFLOADING):
        registry.remove_hook(name, recurse=True)
    module.to(OFFLOAD_DEVICE)


def _stream_blocks(module, device) -> None:
    """diffusers group offloading, one transformer block per group."""
    import importlib.util

    import torch
    from diffusers.hooks import apply_group_offloading

    from ..errors import missing_package

    if importlib.util.find_spec("accelerate") is None:  # diffusers' group offloading calls into it
        raise missing_package("accelerate", "memory_mode 'sequential_offload'")
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        # Streams need pinned host memory. Pin each tensor in place, one at a time: diffusers would
        # otherwise keep a pinned copy beside the pageable one (2× host RAM: 114 GB for A14B's experts).
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.device.type == "cpu" and not tensor.is_pinned():
                tensor.data = tensor.data.pin_memory()
    apply_group_offloading(
        module,
        onload_device=torch.device(device),
        offload_device=torch.device(OFFLOAD_DEVICE),
        offload_type="block_level",
        num_blocks_per_group=1,
        non_blocking=on_cuda,
        use_stream=on_cuda,  # copy the next block while this one computes
    )


def activate(session, module) -> None:
    """Make `module` (an expert, the VAE or the text encoder) ready to run on the device.

    In `model_offload` the module that was on the device goes back to the CPU first, so only one big
    module is ever resident: this is where the experts swap at the boundary."""
    placement = mode(session)
    if placement == "gpu":
        _move(session, module, session.device)
        return
    streamed = _experts(session) if placement == "sequential_offload" else []
    if any(module is m for m in streamed):
        return  # its blocks come and go by themselves
    for other in _big_modules(session):
        if other is not module and not any(other is m for m in streamed):
            _move(session, other, OFFLOAD_DEVICE)
    _move(session, module, session.device)


@contextmanager
def text_encoder_placed(session, encoder):
    """Context for one encoder forward: yields the device to put the ids on. Outside `gpu` mode (and
    under `auto`) the encoder leaves the device afterwards. A pinned encoder runs where it is pinned;
    under `auto` an encoder that does not fit in the device's free memory runs on the CPU (said in the
    report)."""
    import torch

    pinned_device = _pinned_encoder_device(session)
    if pinned_device is None and session.memory_mode == AUTO and _on_cuda(session.device) and not _encoder_fits(session, encoder):
        pinned_device = OFFLOAD_DEVICE
    if pinned_device is not None:
        _move(session, encoder, pinned_device)
        yield torch.device(pinned_device)
        return
    activate(session, encoder)
    try:
        yield session.device
    finally:
        if mode(session) != "gpu" or session.memory_mode == AUTO:
            _move(session, encoder, OFFLOAD_DEVICE)


ENCODER_HEADROOM = 1.2  # the encoder's weights plus room for its activations (short sequences)


def _encoder_fits(session, encoder) -> bool:
    """Whether the text encoder fits on the device beside what stays there while it runs."""
    need = _bytes(encoder) * ENCODER_HEADROOM
    free = cuda_free(session.device)
    if free is not None and mode(session) != "gpu":  # the other big modules leave the device first
        free += sum(_bytes(m, session.device) for m in _big_modules(session) if m is not encoder)
    fits = free is None or need <= free
    if not fits:
        session.memory_state.encoder_note = (
            f"text encoder ran on the CPU: its {need / 1024**3:.1f} GB did not fit in the GPU's "
            f"{free / 1024**3:.1f} GB free (auto)"
        )
    return fits


def _bytes(module, device=None) -> int:
    """Bytes of `module`'s parameters and buffers (those on `device`, when given)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors if device is None or _same_device(t.device, _torch_device(device)))


def _torch_device(device):
    import torch

    return torch.device(device)


def cuda_free(device) -> int | None:
    """Bytes free on a CUDA device now plus torch's cached but unused blocks; None when unknown."""
    import torch

    try:
        free, _total = torch.cuda.mem_get_info(device)
        cached_unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    except (RuntimeError, AssertionError):
        return None
    return int(free) + max(0, int(cached_unused))


def release(session=None, collect: bool = True) -> None:
    """Give freed device memory back to the driver (after a run, a cancel or an out-of-memory error).
    `collect` also runs Python's garbage collector (~0.2 s with torch loaded): needed after a failure,
    whose tracebacks and frames may hold tensors in cycles; a finished run frees its tensors by itself."""
    import torch

    if collect:
        gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def move_stats(session) -> tuple[int, float]:
    """(moves, seconds spent moving weights) since the session was loaded."""
    state = session.memory_state
    return state.moves, state.move_seconds
