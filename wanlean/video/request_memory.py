"""The memory a video request needs at least, checked before anything is allocated.

A request of 4096×4096×321 used to fill 8 GB of host memory for ten seconds before failing, and
8192×8192×10001 ended in torch's raw allocator message. `check_fits` refuses such a request at once, with a
message naming the largest size and the most frames that would fit.

The estimate is a **lower bound**: it counts only tensors a run cannot avoid, so a request it refuses cannot
run, and a request it passes may still run out of memory (that error is caught and reported as before).
What it counts, for width W, height H, frames F (latent frames f = (F − 1)/4 + 1, latent size h × w):
- latents: C × f × h × w in fp32, three at once during a step (latents, the prediction, the new latents);
- one transformer block's activations for L = f × (h/2) × (w/2) video tokens in the compute dtype: the
  larger of 5 × L × dim (hidden states, q, k, v, attention output) and 2 × L × ffn + 2 × L × dim (the
  feed-forward's two wide tensors, hidden states), plus 6 × L × dim for TI2V-5B's per-token timestep
  embedding. Attention is taken as memory-efficient (no L × L matrix), as torch's SDPA runs it;
- decoding: the video 3 × F × H × W in the VAE's dtype twice (diffusers concatenates the decoded frames
  onto the video so far, then clamps a copy);
- on a GPU, the weights the memory mode keeps on it while each part runs (`gpu`: all of them;
  `model_offload`: the expert, or the VAE while decoding; `sequential_offload`: one block, or the VAE),
  and on the host the frames output (3 × F × H × W fp32) and the raw latents.
At the official 1280×720×81 the A14B floor is about 5.7 GB of activations in bf16 (plus the weights), so
a device that can run the official sizes is never refused.

Free memory: on CUDA `torch.cuda.mem_get_info` plus what torch's caching allocator holds unused plus this
session's own weights already on the device (they are counted in the need); on the CPU the kernel's
"available" figure (psutil when installed, else /proc/meminfo's MemAvailable). Where neither is known,
nothing is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WanLeanError

GB = 1024**3
LATENT_COPIES = 3  # latents, noise prediction, the scheduler's new latents
DECODE_COPIES = 2  # the decoded video and the copy made by concatenating/clamping it


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes a request needs at least, per part (for the message), and in total per pool."""

    device: int  # on the compute device (the host too, when the device is the CPU)
    host: int  # on the CPU besides, when the device is a GPU (the frames output)
    parts: dict  # {"latents": bytes, "transformer activations": bytes, "decoded video": bytes, "weights": bytes}


def _itemsize(dtype) -> int:
    import torch

    return torch.empty((), dtype=dtype).element_size()


def _module_bytes(module, device=None) -> int:
    """Bytes of `module`'s parameters and buffers (only those on `device`, when given), each tensor once."""
    if module is None:
        return 0
    seen, total = set(), 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.device.type == "meta" or (device is not None and not _same_device(tensor.device, device)):
            continue
        key = (tensor.device, tensor.data_ptr())
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def _same_device(a, b) -> bool:
    from .memory import _same_device as same

    return same(a, b)


def _is_cuda(device) -> bool:
    return str(getattr(device, "type", device)).startswith("cuda")


@dataclass(frozen=True)
class Phases:
    """What the device holds at least while denoising and while decoding: weights, and working memory
    (latents and activations, or latents and the decoded video)."""

    denoise_weights: int
    denoise_working: int
    decode_weights: int
    decode_working: int
    parts: dict


def phases(session, width: int, height: int, frames: int, mode: str | None = None) -> Phases:
    """The two peaks of a `width`×`height`×`frames` run in placement `mode` (default: the one in effect)."""
    config = session.transformer.config
    spatial, temporal = session.vae_scale_spatial, session.vae_scale_temporal
    latent_frames = (frames - 1) // temporal + 1
    latent_h, latent_w = height // spatial, width // spatial
    latents = session.latent_channels * latent_frames * latent_h * latent_w * 4
    patch = config.patch_size
    tokens = (latent_frames // patch[0]) * (latent_h // patch[1]) * (latent_w // patch[2])
    dim = int(config.num_attention_heads) * int(config.attention_head_dim)
    per_token = max(5 * dim, 2 * int(config.ffn_dim) + 2 * dim) + (6 * dim if session.expand_timesteps else 0)
    activations = tokens * per_token * _itemsize(session.dtype)
    video = 3 * frames * height * width * _itemsize(session.vae.dtype)
    parts = {"latents": LATENT_COPIES * latents, "transformer activations": activations, "decoded video": DECODE_COPIES * video}
    denoise_weights, decode_weights = _resident_weights(session, mode) if _is_cuda(session.device) else (0, 0)
    return Phases(denoise_weights, LATENT_COPIES * latents + activations, decode_weights, latents + DECODE_COPIES * video, parts)


def estimate(session, width: int, height: int, frames: int, mode: str | None = None) -> MemoryNeed:
    """The memory `session` needs at least to make a `width`×`height`×`frames` video in placement `mode`
    (default: the one in effect; see the module text)."""
    p = phases(session, width, height, frames, mode)
    parts = dict(p.parts)
    if not _is_cuda(session.device):
        return MemoryNeed(device=max(p.denoise_working, p.decode_working), host=0, parts=parts)
    parts["weights"] = max(p.denoise_weights, p.decode_weights)
    latents = p.parts["latents"] // LATENT_COPIES
    frames_output = 3 * frames * height * width * 4 + latents
    return MemoryNeed(
        device=max(p.denoise_weights + p.denoise_working, p.decode_weights + p.decode_working), host=frames_output, parts=parts
    )


def _resident_weights(session, mode: str | None = None) -> tuple[int, int]:
    """(weights on the GPU while denoising, while decoding) in placement `mode` (default: the one in effect)."""
    from .memory import _resident_in_gpu_mode, mode as mode_in_effect

    mode = mode or mode_in_effect(session)
    experts = [m for m in (session.transformer, session.transformer_2) if m is not None]
    vae = _module_bytes(session.vae)
    if mode == "gpu":
        everything = sum(_module_bytes(m) for m in _resident_in_gpu_mode(session))
        return everything, everything
    if mode == "model_offload":
        return max(_module_bytes(m) for m in experts), vae
    return largest_block(session), vae  # sequential_offload: one block at a time


def largest_block(session) -> int:
    experts = [m for m in (session.transformer, session.transformer_2) if m is not None]
    return max((_module_bytes(block) for m in experts for block in getattr(m, "blocks", ())), default=0)


# --- what is free -----------------------------------------------------------------------------------------
def host_available() -> int | None:
    """Bytes the kernel says can be allocated without swapping (None when unknown)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def device_available(session) -> int | None:
    """Bytes this session can use on its device: free now, plus torch's cached but unused blocks, plus the
    session's own weights already there (the estimate counts them). None when unknown."""
    device = session.device
    if not _is_cuda(device):
        return host_available()
    free = device_free(device)
    if free is None:
        return None
    from .memory import _big_modules

    resident = sum(_module_bytes(m, device) for m in _big_modules(session))
    return free + resident


def device_free(device) -> int | None:
    """Bytes free on a CUDA device now, plus torch's cached but unused blocks (None when unknown); on
    the CPU, the host's available memory."""
    if not _is_cuda(device):
        return host_available()
    from .memory import cuda_free

    return cuda_free(device)


# --- the check --------------------------------------------------------------------------------------------
def check_fits(session, width: int, height: int, frames: int, mode: str | None = None, device_free: int | None = None) -> None:
    """Raise WanLeanError when `width`×`height`×`frames` cannot fit in this session's memory in placement
    `mode` (default: the one in effect), naming the largest size (same aspect, same frames) and the most
    frames (same size) that would. `device_free`: a figure already measured (default: measured now)."""
    from .memory import AUTO, mode as mode_in_effect

    device_free = device_free if device_free is not None else device_available(session)
    host_free = host_available() if _is_cuda(session.device) else None
    need = estimate(session, width, height, frames, mode)

    def fits(w: int, h: int, f: int) -> bool:
        n = estimate(session, w, h, f, mode)
        return (device_free is None or n.device <= device_free) and (host_free is None or n.host <= host_free)

    if fits(width, height, frames):
        return
    if device_free is not None and need.device > device_free:
        where = "GPU" if _is_cuda(session.device) else "host (RAM)"
        needed, free = need.device, device_free
    else:
        where, needed, free = "host (RAM, for the frames)", need.host, host_free
    breakdown = ", ".join(f"{name} {_gb(size)}" for name, size in need.parts.items() if size)
    options = []
    size = _largest_size(session, width, height, frames, fits)
    if size is not None:
        options.append(f"{size[0]}×{size[1]} at {frames} frames")
    most_frames = _most_frames(frames, lambda f: fits(width, height, f))
    if most_frames is not None:
        options.append(f"{most_frames} frames at {width}×{height}")
    largest = ("The largest that fits: " + ", or ".join(options) + ".") if options else (
        "Not even the smallest size fits: free memory first (close other programs or models).")
    modes = ""
    if _is_cuda(session.device) and session.memory_mode == AUTO:
        modes = " memory_mode 'auto' tried every mode; these figures are for 'sequential_offload', which needs the least."
    elif _is_cuda(session.device) and (mode or mode_in_effect(session)) != "sequential_offload":
        modes = " memory_mode 'sequential_offload' in the loader keeps the fewest weights on the GPU."
    raise WanLeanError(
        f"width/height/frames: {width}×{height}×{frames} needs at least {_gb(needed)} of {where} memory "
        f"({breakdown}), but only {_gb(free)} is free. {largest}{modes} (A lower estimate: a request it "
        "passes can still run out of memory.)"
    )


def _largest_size(session, width: int, height: int, frames: int, fits) -> tuple[int, int] | None:
    """The largest size with about the aspect of `width`×`height` (multiples of the model's size step)
    at `frames` that fits, or None."""
    step = session.size_multiple
    longest = max(width, height)

    def size(k: int) -> tuple[int, int]:  # k steps along the longer side
        scale = k * step / longest
        return max(step, int(width * scale) // step * step), max(step, int(height * scale) // step * step)

    low, high = 0, longest // step  # size(high) is the request itself, which does not fit
    while high - low > 1:
        middle = (low + high) // 2
        if fits(*size(middle), frames):
            low = middle
        else:
            high = middle
    return size(low) if low >= 1 else None


def _most_frames(frames: int, fits) -> int | None:
    """The most frames (4k+1, fewer than `frames`) that fit, or None."""
    low, high = -1, (frames - 1) // 4  # 4·high+1 is the request itself
    while high - low > 1:
        middle = (low + high) // 2
        if fits(4 * middle + 1):
            low = middle
        else:
            high = middle
    return 4 * low + 1 if low >= 0 else None


def _gb(size: int) -> str:
    return f"{size / GB:.1f} GB" if size >= GB / 10 else f"{size / 1024**2:.1f} MB"


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's out-of-memory errors: `torch.OutOfMemoryError` (CUDA) and the plain RuntimeErrors of the CPU
    allocator ("DefaultCPUAllocator: can't allocate memory", "not enough memory") and other backends."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc)
    return "DefaultCPUAllocator" in text or "out of memory" in text.lower()


def out_of_memory_detail(exc: BaseException) -> str:
    """The first line of an out-of-memory error, from "DefaultCPUAllocator" on for the CPU allocator (its
    message starts with a C++ source location)."""
    text = str(exc).split("\n")[0]
    start = text.find("DefaultCPUAllocator")
    return text[start:] if start > 0 else text


def on_cpu_allocator(detail: str) -> bool:
    return detail.startswith("DefaultCPUAllocator")
