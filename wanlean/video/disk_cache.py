"""What the pack's caches share: an in-memory LRU bounded by bytes, and a folder of safetensors entries
that never trusts its files.

`SafetensorsFolder` writes `<key>.safetensors` atomically (a temporary file in the same folder, fsynced,
then `os.replace`), so a reader, a second writer of the same key or a crash (a full disk included) leaves
either the old entry or the whole new one, never a part. The folder is kept under a size cap by removing
the least recently used files (a read refreshes a file's mtime). A read is checked by the caller's
`problem(tensors, metadata)`: an entry that fails (edited, truncated, foreign) is removed and logged
once, and the caller computes it again. A folder that cannot be written (read-only, a file in the way, a
full disk) is skipped by that object from then on, with one log line.

`MemoryThenDisk` puts the two together: memory first, then disk.

Users: the text-embedding cache (`embedding_cache`) and the result cache (`result_cache`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable

log = logging.getLogger("wanlean")

SUFFIX = ".safetensors"


def tensor_checksum(tensor) -> str:
    """SHA-256 of a tensor's raw bytes (its dtype and shape are checked apart)."""
    import torch

    data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.sha256(data).hexdigest()


class MemoryLRU:
    """LRU by total bytes (and at most `max_entries` entries). Entries need an `nbytes` attribute."""

    def __init__(self, max_bytes: int, max_entries: int = 256):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str):
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry) -> None:
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

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries


class SafetensorsFolder:
    """safetensors files `<key>.safetensors` in `folder`, at most `max_bytes` in all.

    Args:
        label: names the cache in log lines ("embedding cache").
        redo: what happens after a bad entry is removed, for the log ("the text is encoded again").
    """

    def __init__(self, folder: str, max_bytes: int, label: str, redo: str):
        self.folder = folder
        self.max_bytes = max_bytes
        self.label = label
        self.redo = redo
        self.unwritable: str | None = None  # why writing was given up by this object, once it was
        self._lock = threading.Lock()

    def path(self, key: str) -> str:
        return os.path.join(self.folder, key + SUFFIX)

    def read(self, key: str, problem: Callable[[dict, dict], str | None]) -> tuple[dict, dict] | None:
        """(tensors, metadata) of the entry, or None: absent, or failing `problem` (then removed and logged)."""
        path = self.path(key)
        if not os.path.isfile(path):
            return None
        try:
            tensors, metadata = _load(path)
            reason = problem(tensors, metadata)
        except FileNotFoundError:  # evicted by another writer between the check and the read: a plain miss
            return None
        except Exception as exc:  # a damaged or foreign file is a miss, and goes
            reason = f"it cannot be read ({exc})"
        if reason is not None:
            log.warning("[WanLean] %s: removing %s: %s; %s.", self.label, path, reason, self.redo)
            remove_file(path)
            return None
        try:
            os.utime(path)  # least-recently-used order for the size cap
        except OSError:
            pass
        return tensors, metadata

    def write(self, key: str, tensors: dict, metadata: dict) -> bool:
        """Write the entry atomically and enforce the cap; False (and one log line per object) when the
        folder cannot take it."""
        if self.unwritable is not None:
            return False
        final = self.path(key)
        temporary = os.path.join(self.folder, f".{key}.{uuid.uuid4().hex}.tmp")
        try:
            from safetensors.torch import save_file

            os.makedirs(self.folder, exist_ok=True)
            save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, temporary, metadata=metadata)
            _fsync(temporary)  # the data is on disk before the name points at it
            os.replace(temporary, final)  # readers see the old file or the whole new one, never a part
            self.enforce_cap(keep=final)
            return True
        except Exception as exc:  # read-only, blocked, full, a file in the way: the run goes on without it
            self.unwritable = f"{type(exc).__name__}: {exc}"
            log.warning(
                "[WanLean] %s: cannot write to %s (%s); the disk cache is skipped for this run.",
                self.label, self.folder, self.unwritable,
            )
            remove_file(temporary)
            return False

    def enforce_cap(self, keep: str | None = None) -> None:
        """Remove least recently used files until the folder holds at most `max_bytes` (`keep`, the entry
        just written, goes last)."""
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
                remove_file(path)
                total -= size

    def size_bytes(self) -> int:
        if not os.path.isdir(self.folder):
            return 0
        total = 0
        for name in os.listdir(self.folder):
            if name.endswith(SUFFIX):
                try:
                    total += os.path.getsize(os.path.join(self.folder, name))
                except OSError:
                    pass
        return total


def _load(path: str) -> tuple[dict, dict]:
    """(tensors, metadata) from ONE read of the file. Not `safe_open`: it reads the header from one open
    and (for torch) the tensor bytes from a second open by name, which a concurrent `os.replace` can make
    another file's (measured: a checksum mismatch under threads)."""
    from safetensors.torch import load

    with open(path, "rb") as f:
        data = f.read()
    tensors = load(data)  # checks the header against the bytes; raises on a damaged file
    (length,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + length]).get("__metadata__") or {}
    return tensors, metadata


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_file(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


class MemoryThenDisk:
    """Memory first, then disk (a folder whose `get(key, check)` gives an entry or None and whose
    `put(key, entry)` stores one). A disk hit is copied into memory; a memory hit made before the disk was
    turned on is copied to disk as well."""

    def __init__(self, memory: MemoryLRU, disk=None):
        self.memory = memory
        self.disk = disk

    def get(self, key: str, check=None) -> tuple[object | None, str]:
        """(entry, where): where is "memory", "disk" or "miss". `check`: what a disk entry must look like,
        passed on to the folder's `get`."""
        entry = self.memory.get(key)
        if entry is not None:
            disk = self.disk
            if disk is not None and disk.unwritable is None and not os.path.isfile(disk.path(key)):
                disk.put(key, entry)
            return entry, "memory"
        if self.disk is not None:
            entry = self.disk.get(key, check)
            if entry is not None:
                self.memory.put(key, entry)
                return entry, "disk"
        return None, "miss"
