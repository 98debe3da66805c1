"""Read a safetensors file's header (names, dtypes, shapes, offsets) and single small tensors.

safetensors is 8 bytes of little-endian header length, a JSON header, then the raw tensor bytes. Reading
the header and one small tensor costs a few kilobytes of I/O whatever the file's size, which is what lets
us take the tokenizer out of a 6.7 GB text-encoder file in milliseconds, and detect what a model file is
without loading it.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

from .errors import WanLeanError

# A real header is a few MB at most (names and shapes of a few thousand tensors).
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Bits per element of every dtype safetensors writes. A dtype not listed here is not size-checked (the
# tensor reader refuses it by name when it is read).
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8,
    "U16": 16, "I16": 16, "F16": 16, "BF16": 16,
    "U32": 32, "I32": 32, "F32": 32,
    "U64": 64, "I64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors spelling: "F16", "BF16", "F8_E4M3", "U8", ...
    shape: tuple[int, ...]
    start: int  # byte offset of the data, relative to the end of the header
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    path: str
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_offset: int  # absolute byte offset where tensor data begins


def read_header(path: str | os.PathLike, what: str = "file") -> SafetensorsHeader:
    """Parse the header of `path`. `what` names the input in error messages (e.g. "tokenizer")."""
    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise WanLeanError(f"{what}: file not found: {path}")
    if path.lower().endswith((".ckpt", ".pt", ".pth", ".bin", ".pkl")):
        raise WanLeanError(
            f"{what}: '{name}' is a pickle-based file; WanLean loads .safetensors only (pickles can run code "
            "when loaded). Use the .safetensors version of this model."
        )
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WanLeanError(f"{what}: '{name}' is not a safetensors file (only {len(head)} bytes).")
        (header_len,) = struct.unpack("<Q", head)
        if header_len == 0 or header_len > MAX_HEADER_BYTES or 8 + header_len > file_size:
            raise WanLeanError(
                f"{what}: '{name}' is not a valid safetensors file (bad header length); "
                "it may be another format or a truncated download."
            )
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise WanLeanError(
            f"{what}: '{name}' is not a valid safetensors file (unreadable header: {exc}); "
            "it may be another format or a corrupt download."
        ) from None
    metadata = header.pop("__metadata__", None) or {}
    tensors: dict[str, TensorInfo] = {}
    data_offset = 8 + header_len
    data_size = file_size - data_offset
    for key, info in header.items():
        try:
            start, end = (int(v) for v in info["data_offsets"])
            tensor = TensorInfo(str(info["dtype"]), tuple(int(d) for d in info["shape"]), start, end)
            if any(d < 0 for d in tensor.shape):
                raise ValueError("negative dimension")
        except (KeyError, TypeError, ValueError):
            raise WanLeanError(f"{what}: '{name}' has a malformed header entry for tensor '{key}'.") from None
        if end > data_size or start > end:
            raise WanLeanError(
                f"{what}: '{name}' is truncated (tensor '{key}' ends past the end of the file); "
                "download it again."
            )
        expected = expected_nbytes(tensor)
        if expected is not None and expected != end - start:
            raise WanLeanError(
                f"{what}: '{name}' is damaged: its header gives tensor '{key}' the shape {list(tensor.shape)} in "
                f"{tensor.dtype} ({expected} bytes), but the file holds {end - start} bytes for it. "
                "Download the file again."
            )
        tensors[key] = tensor
    return SafetensorsHeader(path, tensors, metadata, data_offset)


def expected_nbytes(tensor: TensorInfo) -> int | None:
    """The bytes a tensor's shape and dtype need (None for a dtype we do not know)."""
    bits = DTYPE_BITS.get(tensor.dtype)
    if bits is None:
        return None
    elements = 1
    for d in tensor.shape:
        elements *= d
    return (elements * bits + 7) // 8


def read_tensor_bytes(header: SafetensorsHeader, key: str) -> bytes:
    """The raw bytes of one tensor, read with a single seek. Meant for small tensors."""
    info = header.tensors[key]
    with open(header.path, "rb") as f:
        f.seek(header.data_offset + info.start)
        data = f.read(info.end - info.start)
    if len(data) != info.end - info.start:
        raise WanLeanError(f"'{os.path.basename(header.path)}' is truncated while reading '{key}'.")
    return data
