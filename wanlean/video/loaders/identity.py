"""Identities of loaded transformer weights, for `WanSession.weights_identity` (part of every result-cache
key, see `wanlean.video.result_cache`).

A file's identity is its real path, size, modification time and a hash of its safetensors header (names,
dtypes, shapes, offsets, metadata): a replaced, re-downloaded or re-quantized file changes it, and reading
it costs a few KB whatever the file's size. A LoRA extends the identity of the pipe it is applied to with
its own file identity, its expert and its strength. Only the transformer weights are named: the text
encoder is named by its own identity and the token ids in the key, and the VAE runs again on a cache hit.
"""

from __future__ import annotations

import hashlib
import os
import struct

# Files other than safetensors in a diffusers component folder (config.json, an index) are hashed whole
# when they are at most this big; larger ones by size and time only.
SMALL_FILE_BYTES = 1024 * 1024


def header_digest(path: str) -> str:
    """SHA-256 (first 16 hex digits) of a safetensors file's 8-byte length and JSON header."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
        header = f.read(min(length, 100 * 1024 * 1024))
    return hashlib.sha256(prefix + header).hexdigest()[:16]


def file_identity(path: str) -> str:
    """"<real path>:<size>:<mtime ns>:<header hash>" of one weight file."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    if real.endswith(".safetensors"):
        content = header_digest(real)
    elif stat.st_size <= SMALL_FILE_BYTES:
        with open(real, "rb") as f:
            content = hashlib.sha256(f.read()).hexdigest()[:16]
    else:
        content = "-"
    return f"{real}:{stat.st_size}:{stat.st_mtime_ns}:{content}"


def folder_identity(folder: str, parts: list[str]) -> str:
    """One hash over the identities of every file in the `parts` subfolders of a diffusers folder."""
    digest = hashlib.sha256()
    for part in parts:
        root = os.path.join(folder, part)
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if os.path.isfile(path):
                digest.update(f"{part}/{name}={file_identity(path)};".encode())
    return f"diffusers folder {os.path.realpath(folder)}: {digest.hexdigest()}"


def files_identity(files: dict[str, str], weight_storage: str) -> str:
    """The identity of transformers loaded from single files: {slot: path} and how their weights are stored."""
    named = "; ".join(f"{slot}={file_identity(path)}" for slot, path in sorted(files.items()))
    return f"files {named}; weight_storage={weight_storage}"


def with_lora(identity: str, expert: str, path: str, strength: float) -> str:
    """`identity` of a pipe after a LoRA was added to its `expert` ("high"/"low"); "" stays "" (a pipe
    without an identity cannot gain one)."""
    if not identity:
        return ""
    return f"{identity} + LoRA {expert}={file_identity(path)}@{float(strength)!r}"
