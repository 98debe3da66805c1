"""A cache of umT5 prompt embeddings: in memory (LRU) and optionally on disk.

Entries hold only the real rows of one text (`[tokens, d_model]`), not the 512-row padded form, so a
typical prompt costs a few hundred KB. The key is a hash of the encoder's identity and the cleaned text,
so a different encoder or dtype never reuses an entry. Disk files are safetensors named by that hash,
written atomically (temporary file in the same folder, then `os.replace`), and the folder is kept under
a size cap by removing the least recently used files.

A disk file is trusted only after it passes two checks: a SHA-256 of the tensor's bytes, stored in its
metadata, and the shape and dtype the encoder must produce (`RowSpec`: width from the encoder's config,
rows = the text's tokens cut at 512). A file that fails either (edited, truncated, written by another
tool or an older version) is removed, logged once and encoded again. A folder that cannot be written
(read-only, a file in the way, a full disk) is skipped for the rest of the run with one log line.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from ..tokens import WAN_TEXT_LEN

log = logging.getLogger("wanlean")

MEMORY_MAX_BYTES = 512 * 1024**2
DISK_MAX_BYTES = 2 * 1024**3
SUFFIX = ".safetensors"
FORMAT = "wanlean-embedding-2"  # version 1 files carry no checksum: they are encoded again


@dataclass(frozen=True)
class RowSpec:
    """What an encoder's cached rows must look like: `[tokens, width]` in `dtype` (e.g. "bfloat16")."""

    width: int
    dtype: str


def rows_checksum(rows) -> str:
    """SHA-256 of a tensor's raw bytes (its dtype and shape are checked apart)."""
    import torch

    data = rows.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.sha256(data).hexdigest()


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


class MemoryCache:
    """LRU by total bytes (and at most `max_entries` entries)."""

    def __init__(self, max_bytes: int = MEMORY_MAX_BYTES, max_entries: int = 256):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CachedEmbedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedEmbedding | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: CachedEmbedding) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[key] = entry
            self._bytes += entry.nbytes
            while self._entries and (self._bytes > self.max_bytes or len(self._entries) > self.max_entries):
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries


class DiskCache:
    """safetensors files `<key>.safetensors` in `folder`, at most `max_bytes` in all."""

    def __init__(self, folder: str, max_bytes: int = DISK_MAX_BYTES):
        self.folder = folder
        self.max_bytes = max_bytes
        self.unwritable: str | None = None  # why writing was given up for this run, once it was
        self._lock = threading.Lock()

    def path(self, key: str) -> str:
        return os.path.join(self.folder, key + SUFFIX)

    def get(self, key: str, spec: RowSpec | None = None) -> CachedEmbedding | None:
        path = self.path(key)
        if not os.path.isfile(path):
            return None
        try:
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                rows = f.get_tensor("embeds")
                metadata = f.metadata() or {}
            problem = entry_problem(rows, metadata, spec)
        except Exception as exc:  # a damaged or foreign file is a miss, and goes
            problem = f"it cannot be read ({exc})"
        if problem is not None:
            log.warning("[WanLean] embedding cache: removing %s: %s; the text is encoded again.", path, problem)
            _remove(path)
            return None
        try:
            os.utime(path)  # least-recently-used order for the size cap
        except OSError:
            pass
        return CachedEmbedding(rows, int(metadata["total_tokens"]))

    def put(self, key: str, entry: CachedEmbedding, identity: str = "") -> None:
        if self.unwritable is not None:
            return
        final = self.path(key)
        temporary = os.path.join(self.folder, f".{key}.{uuid.uuid4().hex}.tmp")
        metadata = {
            "total_tokens": str(entry.total_tokens),
            "encoder": identity[:200],
            "format": FORMAT,
            "sha256": rows_checksum(entry.rows),
        }
        try:
            from safetensors.torch import save_file

            os.makedirs(self.folder, exist_ok=True)
            save_file({"embeds": entry.rows.contiguous()}, temporary, metadata=metadata)
            os.replace(temporary, final)  # readers see the old file or the whole new one, never a part
            self.enforce_cap(keep=final)
        except Exception as exc:  # read-only, blocked, full, a file in the way: the run goes on without it
            self.unwritable = f"{type(exc).__name__}: {exc}"
            log.warning(
                "[WanLean] embedding cache: cannot write to %s (%s); the disk cache is skipped for this run.",
                self.folder, self.unwritable,
            )
            _remove(temporary)

    def enforce_cap(self, keep: str | None = None) -> None:
        """Remove least recently used files until the folder holds at most `max_bytes`."""
        with self._lock:
            files = []
            for name in os.listdir(self.folder):
                if not name.endswith(SUFFIX):
                    continue
                path = os.path.join(self.folder, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                files.append((stat.st_mtime_ns, stat.st_size, path))
            total = sum(size for _, size, _ in files)
            for _, size, path in sorted(files):
                if total <= self.max_bytes:
                    break
                if path == keep and total - size > 0:
                    continue
                _remove(path)
                total -= size

    def size_bytes(self) -> int:
        if not os.path.isdir(self.folder):
            return 0
        return sum(os.path.getsize(os.path.join(self.folder, n)) for n in os.listdir(self.folder) if n.endswith(SUFFIX))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


class EmbeddingCache:
    """Memory first, then disk (a disk hit is copied into memory). `last_source` after `get`: "memory",
    "disk" or None (miss)."""

    def __init__(self, memory: MemoryCache | None = None, disk: DiskCache | None = None):
        self.memory = memory if memory is not None else MemoryCache()
        self.disk = disk

    def get(self, key: str, spec: RowSpec | None = None) -> tuple[CachedEmbedding | None, str]:
        """(entry, where): where is "memory", "disk" or "miss". `spec`: what a disk entry must look like."""
        entry = self.memory.get(key)
        if entry is not None:
            if self.disk is not None and not os.path.isfile(self.disk.path(key)):
                self.disk.put(key, entry)  # encoded before the disk cache was turned on: keep it too
            return entry, "memory"
        if self.disk is not None:
            entry = self.disk.get(key, spec)
            if entry is not None:
                self.memory.put(key, entry)
                return entry, "disk"
        return None, "miss"

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
