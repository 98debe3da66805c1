"""A cache of umT5 prompt embeddings: in memory (LRU) and optionally on disk.

Entries hold only the real rows of one text (`[tokens, d_model]`), not the 512-row padded form, so a
typical prompt costs a few hundred KB. The key is a hash of the encoder's identity and the cleaned text,
so a different encoder or dtype never reuses an entry. Disk files are safetensors named by that hash,
written atomically (`disk_cache.SafetensorsFolder`: temporary file in the same folder, fsynced, then `os.replace`), and the folder is kept under
a size cap by removing the least recently used files.

A disk file is trusted only after it passes two checks: a SHA-256 of the tensor's bytes, stored in its
metadata, and the shape and dtype the encoder must produce (`RowSpec`: width from the encoder's config,
rows = the text's tokens cut at 512). A file that fails either (edited, truncated, written by another
tool or an older version) is removed, logged once and encoded again. A folder that cannot be written
(read-only, a file in the way, a full disk) is skipped for the rest of the run with one log line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..tokens import WAN_TEXT_LEN
from .disk_cache import MemoryLRU, MemoryThenDisk, SafetensorsFolder, tensor_checksum

MEMORY_MAX_BYTES = 512 * 1024**2
DISK_MAX_BYTES = 2 * 1024**3
FORMAT = "wanlean-embedding-2"  # version 1 files carry no checksum: they are encoded again


@dataclass(frozen=True)
class RowSpec:
    """What an encoder's cached rows must look like: `[tokens, width]` in `dtype` (e.g. "bfloat16")."""

    width: int
    dtype: str


rows_checksum = tensor_checksum  # SHA-256 of a tensor's raw bytes (dtype and shape are checked apart)


def entry_problem(rows, metadata: dict, spec: RowSpec | None) -> str | None:
    """Why a disk entry cannot be used, or None when it passes every check."""
    if metadata.get("format") != FORMAT:
        return f"it was written in another format ({metadata.get('format') or 'none'})"
    if rows.ndim != 2:
        return f"its tensor has {rows.ndim} dimensions, not 2"
    try:
        total = int(metadata.get("total_tokens", ""))
    except ValueError:
        return "its token count is missing"
    if total < 1 or rows.shape[0] != min(total, WAN_TEXT_LEN):
        return f"it holds {rows.shape[0]} rows for a text of {total} tokens"
    if spec is not None and (rows.shape[1] != spec.width or str(rows.dtype).removeprefix("torch.") != spec.dtype):
        got = str(rows.dtype).removeprefix("torch.")
        return f"its rows are {rows.shape[1]} wide in {got}; this encoder makes {spec.width} in {spec.dtype}"
    if metadata.get("sha256") != rows_checksum(rows):
        return "its data does not match its checksum"
    return None


def cache_key(identity: str, text: str) -> str:
    """The entry name for `text` (already cleaned) encoded by the encoder `identity`."""
    return hashlib.sha256(f"{identity}\0{WAN_TEXT_LEN}\0{text}".encode()).hexdigest()


@dataclass
class CachedEmbedding:
    rows: object  # torch.Tensor [kept_tokens, d_model] on the CPU, in the encoder's output dtype
    total_tokens: int  # tokens the text had before the cut at 512

    @property
    def kept_tokens(self) -> int:
        return int(self.rows.shape[0])

    @property
    def nbytes(self) -> int:
        return self.rows.numel() * self.rows.element_size()


class MemoryCache(MemoryLRU):
    """LRU by total bytes (and at most `max_entries` entries)."""

    def __init__(self, max_bytes: int = MEMORY_MAX_BYTES, max_entries: int = 256):
        super().__init__(max_bytes, max_entries)


class DiskCache(SafetensorsFolder):
    """safetensors files `<key>.safetensors` in `folder`, at most `max_bytes` in all."""

    def __init__(self, folder: str, max_bytes: int = DISK_MAX_BYTES):
        super().__init__(folder, max_bytes, "embedding cache", "the text is encoded again")

    def get(self, key: str, spec: RowSpec | None = None) -> CachedEmbedding | None:
        found = self.read(key, lambda tensors, metadata: entry_problem(tensors["embeds"], metadata, spec))
        if found is None:
            return None
        tensors, metadata = found
        return CachedEmbedding(tensors["embeds"], int(metadata["total_tokens"]))

    def put(self, key: str, entry: CachedEmbedding, identity: str = "") -> None:
        metadata = {
            "total_tokens": str(entry.total_tokens),
            "encoder": identity[:200],
            "format": FORMAT,
            "sha256": rows_checksum(entry.rows),
        }
        self.write(key, {"embeds": entry.rows}, metadata)


class EmbeddingCache(MemoryThenDisk):
    """Memory first, then disk (`disk_cache.MemoryThenDisk`); `get(key, spec)` checks a disk entry against
    the `RowSpec` the encoder must produce."""

    def __init__(self, memory: MemoryCache | None = None, disk: DiskCache | None = None):
        super().__init__(memory if memory is not None else MemoryCache(), disk)

    def put(self, key: str, entry: CachedEmbedding, identity: str = "") -> None:
        self.memory.put(key, entry)
        if self.disk is not None:
            self.disk.put(key, entry, identity)


# One memory cache for the whole process: every sampler run shares it (keys name the encoder).
SHARED_MEMORY = MemoryCache()


def make_cache(mode: str, disk_folder: str | None = None, disk_max_bytes: int = DISK_MAX_BYTES) -> EmbeddingCache | None:
    """The cache for a node's `text_cache` choice: "off", "memory", or "memory + disk"."""
    if mode == "off":
        return None
    if mode == "memory":
        return EmbeddingCache(SHARED_MEMORY)
    if mode == "memory + disk":
        if not disk_folder:
            return EmbeddingCache(SHARED_MEMORY)
        return EmbeddingCache(SHARED_MEMORY, DiskCache(disk_folder, disk_max_bytes))
    from ..errors import WanLeanError

    raise WanLeanError(f"text_cache must be one of off, memory, memory + disk; got '{mode}'.")


CACHE_MODES = ("memory", "memory + disk", "off")
