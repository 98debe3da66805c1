"""The choices every loader accepts for where and how weights compute, defined once (the nodes list them
without importing torch): devices, compute dtypes, weight storage, the text encoder's device."""

from __future__ import annotations

from ..errors import WanLeanError

DTYPES = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("auto", "cuda", "cpu")
WEIGHT_STORAGES = ("as_file", "fp8")  # comfy_files: keep fp8 block weights as float8, or convert to the dtype
TEXT_ENCODER_DEVICES = ("cpu", "gpu")  # comfy_files: pin umT5 to the CPU, or let the memory mode place it


def resolve_device(device: str = "auto"):
    import torch

    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise WanLeanError(f"device: '{device}' was chosen but no CUDA GPU is available; choose 'auto' or 'cpu'.")
    try:
        return torch.device(device)
    except RuntimeError:
        raise WanLeanError(f"device must be one of {', '.join(DEVICES)} (or e.g. 'cuda:1'); got '{device}'.") from None


def resolve_dtype(dtype: str, device):
    """bf16 on a GPU and fp32 on the CPU unless chosen otherwise."""
    import torch

    if dtype in ("auto", "", None):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype not in table:
        raise WanLeanError(f"dtype must be one of {', '.join(DTYPES)}; got '{dtype}'.")
    return table[dtype]
