"""Build a diffusers / transformers module from one file, streaming one tensor at a time.

The module is created with its parameters on the `meta` device (no memory, no random init), then each
tensor is read, dequantized and assigned in place of its meta parameter. Peak host memory is the model
built so far plus one tensor (and its fp32 product while a scaled fp8 weight is dequantized).

With `fp8_modules`, the named Linear layers become `Fp8Linear`: the float8 weight and its scale stay in
memory as stored (an fp16/bf16 weight is quantized to float8 with one scale per tensor first).
"""

from __future__ import annotations

import contextlib
import os

import torch

from ....errors import WanLeanError
from .detect import ModelFile
from .quant import Fp8Linear, dequantize, quantize_fp8
from .stream import TensorReader


@contextlib.contextmanager
def empty_weights():
    """Parameters created inside are put on the meta device as they are registered, so a 14B model is
    built in milliseconds without memory. Buffers stay real (diffusers computes RoPE tables at init)."""
    register = torch.nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register(module, name, param)
        if param is not None:
            current = module._parameters[name]
            module._parameters[name] = type(current)(current.to("meta"), requires_grad=current.requires_grad)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def _split(name: str) -> tuple[str, str]:
    module, _, attr = name.rpartition(".")
    return module, attr


def _keep_fp32(cls, name: str, dtype) -> bool:
    """diffusers keeps some small modules (norms, modulation, the time embedder) in fp32 whatever the dtype;
    transformers keeps umT5's `wo` in fp32 under fp16. Loading the same way keeps results identical to a
    diffusers folder."""
    if dtype == torch.float32:
        return False
    keep = getattr(cls, "_keep_in_fp32_modules", None) or []
    if getattr(cls, "__module__", "").startswith("transformers.") and dtype != torch.float16:
        keep = []
    parts = name.split(".")
    return any(module in parts for module in keep)


def load_module(
    model,
    file: ModelFile,
    name_map: dict[str, str],
    dtype,
    what: str,
    fp8_modules: set[str] | None = None,
    tied: dict[str, str] | None = None,
    progress=None,
):
    """Fill `model` (built under `empty_weights`) from `file`. `name_map` maps the file's short names to the
    model's names; `tied` maps a model name to the one it shares (loaded once). Raises a WanLeanError naming
    the file for missing, unexpected or misshapen tensors."""
    fp8_modules = fp8_modules or set()
    tied = tied or {}
    name = os.path.basename(file.path)
    targets = dict(model.named_parameters(remove_duplicate=False))
    persistent_buffers = {
        n for n, _ in model.named_buffers() if _split(n)[1] not in model.get_submodule(_split(n)[0])._non_persistent_buffers_set
    }
    buffers = dict(model.named_buffers())
    expected = (set(targets) | persistent_buffers) - set(tied)

    mapped = {short: name_map[short] for short in file.names() if short in name_map}  # the map drops on purpose
    unexpected = sorted(target for target in mapped.values() if target not in expected)
    missing = sorted(expected - set(mapped.values()))
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"it lacks {len(missing)} weight(s) the model needs (e.g. '{missing[0]}')")
        if unexpected:
            parts.append(f"it has {len(unexpected)} weight(s) the model does not (e.g. '{unexpected[0]}')")
        raise WanLeanError(
            f"{what}: '{name}' does not match the {file.description} layout: {'; '.join(parts)}. The file may be "
            "incomplete or a different model."
        )

    pending_fp8: dict[str, dict] = {}  # Linear name → {"weight": (fp8, scale), "bias": tensor} until complete
    with TensorReader(file.header, what) as reader:
        for short, target in mapped.items():
            raw = reader.read(file.full_name(short))
            scale_name = file.quant.weight_scales.get(short)
            scale = reader.read(file.full_name(scale_name)) if scale_name else None
            module_name, attr = _split(target)
            expected_shape = tuple(targets[target].shape) if target in targets else tuple(buffers[target].shape)
            if tuple(raw.shape) != expected_shape:
                raise WanLeanError(
                    f"{what}: '{name}' has '{short}' of shape {list(raw.shape)} where the model expects "
                    f"{list(expected_shape)}; the file is damaged or a different model."
                )
            if module_name in fp8_modules:
                slot = pending_fp8.setdefault(module_name, {})
                if attr == "weight":
                    if raw.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                        scale = torch.ones((), dtype=torch.float32) if scale is None else scale.to(torch.float32)
                        slot["weight"] = (raw, scale)
                    else:
                        slot["weight"] = quantize_fp8(raw if scale is None else dequantize(raw, scale, torch.float32))
                else:
                    slot[attr] = raw
                linear = model.get_submodule(module_name)
                if "weight" in slot and (linear.bias is None or "bias" in slot):
                    weight, weight_scale = slot["weight"]
                    replacement = Fp8Linear(weight, weight_scale, slot.get("bias"), dtype)
                    parent, child = _split(module_name)
                    setattr(model.get_submodule(parent), child, replacement)
                    del pending_fp8[module_name]
            else:
                target_dtype = torch.float32 if _keep_fp32(type(model), target, dtype) else dtype
                value = dequantize(raw, scale, target_dtype) if raw.is_floating_point() else raw
                owner = model.get_submodule(module_name)
                if attr in owner._parameters:
                    owner._parameters[attr] = torch.nn.Parameter(value, requires_grad=False)
                else:
                    owner._buffers[attr] = value
            del raw, scale
            if progress is not None:
                progress()
    for target, source in tied.items():
        module_name, attr = _split(target)
        source_module, source_attr = _split(source)
        setattr(model.get_submodule(module_name), attr, getattr(model.get_submodule(source_module), source_attr))
    leftover = [n for n, p in model.named_parameters() if p.is_meta]
    if leftover or pending_fp8:
        first = leftover[0] if leftover else next(iter(pending_fp8))
        raise WanLeanError(f"{what}: '{name}' left '{first}' unloaded; the file is incomplete or a different model.")
    return model.eval().requires_grad_(False)
