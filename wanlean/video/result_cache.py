"""A cache of finished samplings: the same model, settings and prompt token ids give the stored latents
back, and the run skips denoising (0 transformer forwards); only the VAE decodes.

The key (`result_key`) is a SHA-256 over everything that decides the denoised latents:
- the transformer weights: `WanSession.weights_identity`, which the loaders build from each weight file's
  path, size, modification time and header hash (or a diffusers folder's transformer files), extended by
  every LoRA with its file identity, expert and strength, and the weight storage (`loaders.identity`);
- the compute dtype, the device type (cpu/cuda), the model type, and the diffusers and torch versions;
- the speed levers of `WanLeanSpeed` (attention kernel, compile, fp8 matmul, step cache and threshold):
  most change the numbers, the step cache the video;
- every resolved setting: size, frames, steps, cfg_high/cfg_low, shift, boundary, sampler, seed;
- the text encoder's identity and the token ids of the prompt and, when a stage uses CFG, of the negative,
  so texts that encode the same (e.g. differing only in spaces) hit the same entry.
It leaves out what does not change the latents: the node's title and widget order, the text cache, the
memory mode, the notes of `Settings` and the VAE (it runs again on a hit, so a new VAE decodes the stored
latents). The text is still encoded on a hit (the report shows its tokens); the text-embedding cache makes
that cheap.

Entries hold the final model-space latents in fp16 and the stored run's forwards and denoising time (for
the report). A run that stores an entry decodes the same fp16 latents, so the first run and every later
hit give identical frames. Memory: an in-process LRU bounded by bytes. Disk: safetensors files in
`output/wanlean/result_cache/` (`disk_cache.SafetensorsFolder`: atomic, checksummed, capped, least
recently used first), each checked for format, key, dtype, shape and checksum before it is trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from ..errors import WanLeanError
from . import speed
from .disk_cache import MemoryLRU, MemoryThenDisk, SafetensorsFolder, tensor_checksum
from .embedding_cache import CACHE_MODES
from .text_encoding import truncate
from .video_shape import latent_shape

log = logging.getLogger("wanlean")

FORMAT = "wanlean-result-1"  # bump when sampling changes what the same inputs produce
MEMORY_MAX_BYTES = 1024**3  # the in-process LRU: about 100 videos at 1280×720×81 (10 MB of fp16 latents each)
MEMORY_MAX_ENTRIES = 256
DISK_MAX_GB = 5  # default of the node's result_cache_gb: the disk folder's cap, in GiB
RESULT_CACHE_MODES = CACHE_MODES  # "memory", "memory + disk", "off"
NO_IDENTITY = (
    "not used: this pipe's transformer weights have no file identity (a pipe built in code, not by a WanLean "
    "loader), so a result could not be told apart from another model's"
)


@dataclass
class CachedResult:
    latents: object  # torch.Tensor [1, C, latent_frames, h, w] float16 on the CPU, model space (normalised)
    forwards: int  # transformer forwards the stored run took
    denoise_seconds: float  # the stored run's denoising time

    @property
    def nbytes(self) -> int:
        return self.latents.numel() * self.latents.element_size()


def text_digest(session, text: str) -> str:
    """A hash of what the text encoder reads: its identity (weights and dtype) and the text's token ids, cut
    at 512 as the encoder is. Texts with the same ids encode the same. (Not a hash of the embedding's
    bytes: the same ids give embeddings that differ in the last bits with what they were batched with, e.g.
    the negative beside them, so a byte hash missed real repeats.)"""
    source = session.text_encoder
    ids = truncate(list(source.token_ids(text)))
    return hashlib.sha256(f"{source.identity}:{ids}".encode()).hexdigest()


def result_key(session, settings) -> str | None:
    """The entry name for a run, or None when the session's weights have no identity."""
    identity = getattr(session, "weights_identity", "")
    if not identity:
        return None
    import diffusers
    import torch

    guided = any(settings.guided_stages)
    parts = {
        "format": FORMAT,
        "weights": identity,
        "model_type": session.model_type,
        "dtype": str(session.dtype).removeprefix("torch."),
        "device": torch.device(session.device).type,
        "versions": [diffusers.__version__, torch.__version__],
        "speed": _speed_key(session),
        "settings": [settings.width, settings.height, settings.frames, settings.steps, settings.cfg_high,
                     settings.cfg_low, settings.shift, settings.boundary, settings.sampler, settings.seed],
        "prompt": text_digest(session, settings.prompt),
        "negative": text_digest(session, settings.negative) if guided else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _speed_key(session) -> list:
    """The speed levers (WanLeanSpeed) that change what a run computes: the attention kernel (`auto` as
    chosen for this device and dtype), compile, fp8 matmul, and the step cache with its threshold."""
    options = speed.options_of(session)
    attention = options.attention if options.attention != "auto" else speed.choose_attention(session.device, session.dtype)[0]
    threshold = options.cache_threshold if options.step_cache != "off" else None
    return [attention, options.compile, options.fp8_matmul, options.step_cache, threshold]


def entry_problem(tensors: dict, metadata: dict, key: str, shape) -> str | None:
    """Why a disk entry cannot be used for `key`, or None when it passes every check."""
    if metadata.get("format") != FORMAT:
        return f"it was written in another format ({metadata.get('format') or 'none'})"
    if metadata.get("key") != key:
        return "it was written for another key (a renamed or foreign file)"
    latents = tensors.get("latents")
    if latents is None or len(tensors) != 1:
        return f"it holds {sorted(tensors)} instead of one 'latents' tensor"
    if str(latents.dtype) != "torch.float16":
        return f"its latents are {str(latents.dtype).removeprefix('torch.')}, not float16"
    if shape is not None and tuple(latents.shape) != tuple(shape):
        return f"its latents have the shape {list(latents.shape)}; this run makes {list(shape)}"
    if metadata.get("sha256") != tensor_checksum(latents):
        return "its data does not match its checksum"
    try:
        int(metadata["forwards"]), float(metadata["denoise_seconds"])
    except (KeyError, ValueError):
        return "its run statistics are missing"
    return None


class ResultFolder(SafetensorsFolder):
    """Result entries `<key>.safetensors` in `folder`, at most `max_bytes` in all."""

    def __init__(self, folder: str, max_bytes: int = DISK_MAX_GB * 1024**3):
        super().__init__(folder, max_bytes, "result cache", "the video is sampled again")

    def get(self, key: str, shape=None) -> CachedResult | None:
        found = self.read(key, lambda tensors, metadata: entry_problem(tensors, metadata, key, shape))
        if found is None:
            return None
        tensors, metadata = found
        return CachedResult(tensors["latents"], int(metadata["forwards"]), float(metadata["denoise_seconds"]))

    def put(self, key: str, entry: CachedResult) -> bool:
        metadata = {
            "format": FORMAT,
            "key": key,
            "sha256": tensor_checksum(entry.latents),
            "forwards": str(entry.forwards),
            "denoise_seconds": repr(float(entry.denoise_seconds)),
        }
        return self.write(key, {"latents": entry.latents}, metadata)


class ResultCache(MemoryThenDisk):
    """Memory first, then disk (`disk_cache.MemoryThenDisk`); `get(key, shape)` checks a disk entry's
    latent shape."""

    def put(self, key: str, entry: CachedResult) -> str:
        """Store `entry`; returns where it went, for the report."""
        self.memory.put(key, entry)
        if self.disk is None:
            return "stored in memory"
        if self.disk.put(key, entry):
            return "stored in memory and on disk"
        return f"stored in memory only: the disk folder cannot be written ({self.disk.unwritable})"



# One memory cache for the whole process: every sampler run shares it (keys name the weights).
SHARED_MEMORY = MemoryLRU(MEMORY_MAX_BYTES, MEMORY_MAX_ENTRIES)


def make_result_cache(mode: str, disk_folder: str | None = None, disk_max_gb: int = DISK_MAX_GB) -> ResultCache | None:
    """The cache for a node's `result_cache` choice: "off", "memory", or "memory + disk" (in `disk_folder`,
    capped at `disk_max_gb` GiB; without a folder, memory only)."""
    if mode not in RESULT_CACHE_MODES:
        raise WanLeanError(f"result_cache must be one of {', '.join(RESULT_CACHE_MODES)}; got '{mode}'.")
    if mode == "off":
        return None
    if mode == "memory + disk" and disk_folder:
        if not isinstance(disk_max_gb, (int, float)) or disk_max_gb < 1:
            raise WanLeanError(f"result_cache_gb must be at least 1 (GB on disk for stored results); got {disk_max_gb}.")
        return ResultCache(SHARED_MEMORY, ResultFolder(disk_folder, int(disk_max_gb * 1024**3)))
    return ResultCache(SHARED_MEMORY)


_said_no_identity = []


def cached_or_run(cache: ResultCache | None, session, settings, stats, run):
    """The final model-space latents (float32, on the session's device): from `cache` when it holds this
    run's key, else from `run()` (the denoising loop), then stored. Sets `stats.result_cache` ("off",
    "unkeyed", "miss", "memory", "disk") and `stats.result_cache_note` for the report."""
    import torch

    if cache is None:
        stats.result_cache = "off"
        return run()
    key = result_key(session, settings)
    if key is None:
        stats.result_cache, stats.result_cache_note = "unkeyed", NO_IDENTITY
        if not _said_no_identity:
            _said_no_identity.append(True)
            log.info("[WanLean] result cache %s.", NO_IDENTITY)
        return run()
    entry, where = cache.get(key, latent_shape(session, settings))
    if entry is not None:
        stats.result_cache = where
        stats.result_cache_note = f"the stored run took {entry.forwards} forwards and {entry.denoise_seconds:.2f} s of denoising"
        return entry.latents.to(device=session.device, dtype=torch.float32)
    latents = run()
    stored = latents.detach().to(device="cpu", dtype=torch.float16)
    stats.result_cache = "miss"
    if not bool(torch.isfinite(stored).all()):  # beyond fp16's range: keep the run's own latents, store nothing
        stats.result_cache_note = "not stored: the latents exceed the fp16 range"
        return latents
    stats.result_cache_note = cache.put(key, CachedResult(stored, stats.forwards, stats.denoise_seconds))
    # Decode what was stored, so this run and every later hit give the same frames.
    return stored.to(device=latents.device, dtype=torch.float32)
