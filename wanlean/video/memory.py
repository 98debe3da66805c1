"""Where the weights live while a session runs: the three memory modes.

- `gpu`: everything resident on the device (fastest; A14B in bf16 needs ~57 GB for the two experts
  plus ~11 GB for umT5-XXL).
- `model_offload`: one big module on the device at a time. The inactive expert moves to the CPU at the
  expert switch; the text encoder and the VAE come to the device only while they run. Peak ≈ one expert.
- `sequential_offload`: the transformers stay on the CPU and their blocks are streamed to the device one
  at a time (diffusers group offloading, block level, with a CUDA stream to overlap copies); the text
  encoder and VAE move as in `model_offload`. Least device memory, slowest.

On a CPU-only machine every mode runs the same computation (the moves are no-ops).
What this module did to a session is kept in its typed `session.memory_state` (`MemoryState`), so the
loaders never deal with it; a loader pins umT5 to a device with the text encoder's `pinned_device`.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass

MEMORY_MODES = ("gpu", "model_offload", "sequential_offload")
OFFLOAD_DEVICE = "cpu"


@dataclass
class MemoryState:
    """What `prepare` and `activate` did to one session's weights.

    Args:
        prepared_mode: the memory mode the weights were placed for (None: not placed yet).
        moves: weight moves between devices since the session was loaded.
        move_seconds: time those moves took, for reports.
    """

    prepared_mode: str | None = None
    moves: int = 0
    move_seconds: float = 0.0


def _big_modules(session) -> list:
    modules = [session.transformer, session.transformer_2, session.vae]
    encoder = _loaded_encoder(session)
    if encoder is not None and _pinned_encoder_device(session) is None:
        modules.append(encoder)
    return [m for m in modules if m is not None]


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
    started = time.perf_counter()
    module.to(device)
    state = session.memory_state
    state.move_seconds += time.perf_counter() - started
    state.moves += 1


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
    """Place the session's weights for its memory mode (once; later calls return at once)."""
    state = session.memory_state
    if state.prepared_mode == session.memory_mode:
        return
    mode = session.memory_mode
    experts = [m for m in (session.transformer, session.transformer_2) if m is not None]
    if mode == "gpu":
        for module in _big_modules(session):
            _move(session, module, session.device)
    elif mode == "model_offload":
        for module in _big_modules(session):
            _move(session, module, OFFLOAD_DEVICE)
    elif mode == "sequential_offload":
        for module in _big_modules(session):
            _move(session, module, OFFLOAD_DEVICE)
        for expert in experts:
            _stream_blocks(expert, session.device)
    state.prepared_mode = mode


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
    mode = session.memory_mode
    if mode == "gpu":
        _move(session, module, session.device)
        return
    is_streamed = mode == "sequential_offload" and module in (session.transformer, session.transformer_2)
    if is_streamed:
        return  # its blocks come and go by themselves
    for other in _big_modules(session):
        if other is not module and not (mode == "sequential_offload" and other in (session.transformer, session.transformer_2)):
            _move(session, other, OFFLOAD_DEVICE)
    _move(session, module, session.device)


@contextmanager
def text_encoder_placed(session, encoder):
    """Context for one encoder forward: yields the device to put the ids on. Outside `gpu` mode the
    encoder leaves the device afterwards. A pinned encoder runs where it is pinned."""
    pinned = _pinned_encoder_device(session)
    if pinned is not None:
        import torch

        _move(session, encoder, pinned)
        yield torch.device(pinned)
        return
    activate(session, encoder)
    try:
        yield session.device
    finally:
        if session.memory_mode != "gpu":
            _move(session, encoder, OFFLOAD_DEVICE)


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
