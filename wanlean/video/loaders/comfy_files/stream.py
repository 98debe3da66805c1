"""Read tensors one at a time from a safetensors file, with plain reads.

`safetensors.safe_open` memory-maps the file; every page it touches then counts in the process's
resident memory until the map closes, so streaming a 14 GB file through it can look like (and on some
systems be) a second copy of the model. Reading each tensor with `readinto` into its own buffer keeps the
peak at "the model built so far + one tensor".
"""

from __future__ import annotations

import os

from ....errors import WanLeanError
from ....safetensors_header import SafetensorsHeader, read_header

GGUF_MAGIC = b"GGUF"


def _torch_dtypes() -> dict:
    import torch

    table = {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U8": torch.uint8,
        "BOOL": torch.bool,
    }
    for name, attr in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")):
        if hasattr(torch, attr):
            table[name] = getattr(torch, attr)
    return table


def open_model_file(path: str, what: str) -> SafetensorsHeader:
    """The header of a model file, after refusing what is not a safetensors file with a message that
    says what it is (GGUF, a pickle, a truncated download)."""
    name = os.path.basename(path)
    if path.lower().endswith(".gguf"):
        raise WanLeanError(
            f"{what}: '{name}' is a GGUF file; GGUF quantizations are not supported yet. Use the fp8_scaled, "
            "fp16 or bf16 .safetensors version of this model."
        )
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read(4) == GGUF_MAGIC:
                raise WanLeanError(
                    f"{what}: '{name}' is a GGUF file (renamed); GGUF quantizations are not supported yet. Use the "
                    "fp8_scaled, fp16 or bf16 .safetensors version of this model."
                )
    return read_header(path, what=what)


class TensorReader:
    """`with TensorReader(header) as reader: tensor = reader.read(name)`: one read per tensor."""

    def __init__(self, header: SafetensorsHeader, what: str = "file"):
        self.header = header
        self.what = what
        self._file = None
        self._dtypes = _torch_dtypes()

    def __enter__(self) -> TensorReader:
        self._file = open(self.header.path, "rb", buffering=0)
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def torch_dtype(self, name: str):
        info = self.header.tensors[name]
        if info.dtype not in self._dtypes:
            raise WanLeanError(
                f"{self.what}: '{os.path.basename(self.header.path)}' stores '{name}' as {info.dtype}, a format "
                "WanLean cannot read (not supported yet). Use the fp8_scaled, fp16 or bf16 version of this model."
            )
        return self._dtypes[info.dtype]

    def read(self, name: str):
        import torch

        info = self.header.tensors[name]
        dtype = self.torch_dtype(name)
        nbytes = info.end - info.start
        if nbytes == 0:
            return torch.empty(info.shape, dtype=dtype)
        buffer = bytearray(nbytes)
        self._file.seek(self.header.data_offset + info.start)
        view = memoryview(buffer)
        done = 0
        while done < nbytes:
            got = self._file.readinto(view[done:])
            if not got:
                raise WanLeanError(
                    f"{self.what}: '{os.path.basename(self.header.path)}' is truncated while reading '{name}'; "
                    "download it again."
                )
            done += got
        flat = torch.frombuffer(buffer, dtype=torch.uint8)
        return flat.view(dtype).reshape(info.shape)
