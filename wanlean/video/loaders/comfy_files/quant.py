"""Weight formats in ComfyUI model files, and how to get true weights out of them.

Formats met in the wild (see `comfy/utils.py` `convert_old_quants` and `comfy/ops.py` in ComfyUI):
- fp32 / fp16 / bf16: cast to the compute dtype.
- plain fp8 (`float8_e4m3fn` / `float8_e5m2` weights with no scale): cast.
- "scaled fp8": a marker tensor `scaled_fp8` and, per Linear, a float8 `weight` with a scalar
  `scale_weight` (other tools write `weight_scale`). True weight = weight × scale. diffusers' single-file
  loader ignores the scales and outputs garbage without an error; here a scale, whenever the file has one
  for a weight, is always applied.
- per-layer `comfy_quant`: a uint8 tensor `<layer>.comfy_quant` holding JSON such as
  `{"format": "float8_e4m3fn"}`, with the scale in `<layer>.weight_scale` (or the same JSON for all layers
  in the header metadata `_quantization_metadata`). FP8 formats dequantize as above; NVFP4 and unknown
  formats are refused with a message.
- `scale_input` / `input_scale` scale activations for fp8 matrix multiplies; computing in bf16 they do not
  apply, so they are read past.

`Fp8Linear` keeps a float8 weight and its scale in memory and dequantizes one layer at a time in forward,
so resident weight memory stays at the fp8 file's size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch

from ....errors import WanLeanError
from ....safetensors_header import SafetensorsHeader, read_tensor_bytes

WEIGHT_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
INPUT_SCALE_SUFFIXES = (".scale_input", ".input_scale")
COMFY_QUANT_SUFFIX = ".comfy_quant"
MARKER = "scaled_fp8"
FP8_DTYPES = ("F8_E4M3", "F8_E5M2")
FP8_FORMATS = ("float8_e4m3fn", "float8_e5m2")
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16") + FP8_DTYPES


@dataclass
class QuantPlan:
    """How to read the weights of one file (names without the file's prefix)."""

    format: str  # for reports: "fp16", "bf16", "fp32", "fp8", "fp8_scaled", "comfy_quant fp8", "mixed"
    weight_scales: dict[str, str] = field(default_factory=dict)  # weight name → its scale tensor's name
    sidecar: set[str] = field(default_factory=set)  # names that are not weights (markers, scales, configs)

    def is_quantized(self, name: str, header_dtype: str) -> bool:
        return header_dtype in FP8_DTYPES or name in self.weight_scales


def plan_quantization(header: SafetensorsHeader, prefix: str, what: str) -> QuantPlan:
    """Find every scale and quantization marker in the file under `prefix`; refuse formats we cannot
    dequantize (NVFP4, unknown `comfy_quant` formats). Reads only the tiny `comfy_quant` tensors."""
    name_of = os.path.basename(header.path)
    names = {key[len(prefix):]: key for key in header.tensors if key.startswith(prefix)}
    sidecar: set[str] = set()
    layer_formats: dict[str, str] = {}

    metadata_quant = header.metadata.get("_quantization_metadata")
    if metadata_quant:
        layer_formats.update(_metadata_formats(metadata_quant, what, name_of))
    for short, full in names.items():
        if short.endswith(COMFY_QUANT_SUFFIX):
            sidecar.add(short)
            try:
                conf = json.loads(read_tensor_bytes(header, full).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise WanLeanError(f"{what}: '{name_of}' has an unreadable '{short}' entry; download it again.") from None
            layer_formats[short[: -len(COMFY_QUANT_SUFFIX)]] = str(conf.get("format"))

    refused = sorted({fmt for fmt in layer_formats.values() if fmt not in FP8_FORMATS})
    if any(short.endswith(".weight_scale_2") for short in names):
        refused = sorted(set(refused) | {"nvfp4"})
    if refused:
        kind = "NVFP4" if "nvfp4" in refused else ", ".join(refused)
        raise WanLeanError(
            f"{what}: '{name_of}' is quantized as {kind}, which WanLean does not support yet. Use the fp8_scaled, "
            "fp16 or bf16 version of this model."
        )

    weight_scales: dict[str, str] = {}
    for short in names:
        if short == MARKER:
            sidecar.add(short)
        elif short.endswith(INPUT_SCALE_SUFFIXES):
            sidecar.add(short)
        elif short.endswith(WEIGHT_SCALE_SUFFIXES):
            sidecar.add(short)
            layer = short.rsplit(".", 1)[0]
            weight = f"{layer}.weight"
            if weight not in names:
                raise WanLeanError(f"{what}: '{name_of}' has a scale '{short}' without its weight; the file is damaged.")
            if weight in weight_scales:
                raise WanLeanError(f"{what}: '{name_of}' has two scales for '{weight}'; the file is damaged.")
            weight_scales[weight] = short
    for layer, fmt in layer_formats.items():
        weight = f"{layer}.weight"
        if weight in names and weight not in weight_scales and header.tensors[names[weight]].dtype not in FP8_DTYPES:
            raise WanLeanError(
                f"{what}: '{name_of}' marks '{layer}' as {fmt} but stores it as "
                f"{header.tensors[names[weight]].dtype}; the file is damaged."
            )

    return QuantPlan(_describe(header, names, weight_scales, layer_formats), weight_scales, sidecar)


def _metadata_formats(text: str, what: str, name_of: str) -> dict[str, str]:
    """{layer: format} from the header's `_quantization_metadata`: JSON `{"layers": {layer: {"format": ...}}}`.
    A download cut short breaks the whole file, not this string, so a wrong shape here is a tool that wrote
    another layout: the message names what is wrong instead of asking for a new download."""
    where = f"{what}: '{name_of}' has header metadata '_quantization_metadata'"
    expected = 'expected {"layers": {"<layer>": {"format": "float8_e4m3fn"}, ...}}'
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise WanLeanError(f"{where} that is not valid JSON ({exc}); {expected}.") from None
    layers = parsed.get("layers", {}) if isinstance(parsed, dict) else None
    if not isinstance(layers, dict):
        raise WanLeanError(f"{where} whose 'layers' is {type(layers).__name__ if parsed is not None else 'missing'}, not an "
                           f"object; {expected}. The tool that wrote the file uses a layout WanLean does not know.")
    formats = {}
    for layer, conf in layers.items():
        if not isinstance(conf, dict) or "format" not in conf:
            raise WanLeanError(
                f"{where} whose entry for layer '{layer}' is {json.dumps(conf)[:80]} ({type(conf).__name__}), not an object "
                f"with a 'format'; {expected}. The tool that wrote the file uses a layout WanLean does not know: use "
                "the fp8_scaled, fp16 or bf16 version of this model."
            )
        formats[layer] = str(conf["format"])
    return formats


def _describe(header, names: dict, weight_scales: dict, layer_formats: dict) -> str:
    """A short label for reports: the quantization, or the dtype holding most of the weight bytes (real
    fp16/bf16 files often keep norms and modulation in fp32)."""
    if layer_formats:
        return "comfy_quant fp8"
    if weight_scales:
        return "fp8_scaled"
    bytes_by_dtype: dict[str, int] = {}
    for full in names.values():
        info = header.tensors[full]
        if info.dtype in FLOAT_DTYPES:
            bytes_by_dtype[info.dtype] = bytes_by_dtype.get(info.dtype, 0) + info.end - info.start
    if not bytes_by_dtype:
        return "unknown"
    if bytes_by_dtype.keys() & set(FP8_DTYPES):
        return "fp8"  # unscaled float8 weights: what matters for precision, whatever else is stored wider
    dominant = max(bytes_by_dtype, key=bytes_by_dtype.get)
    return {"F8_E4M3": "fp8", "F8_E5M2": "fp8", "BF16": "bf16", "F16": "fp16", "F32": "fp32", "F64": "fp64"}[dominant]


def dequantize(weight, scale, dtype):
    """True weight in `dtype`: the stored value times its scale, multiplied in fp32 and rounded once.

    A per-tensor scale takes the cheap path: float8 → `dtype` is exact (every float8 value is a bf16/fp16
    value), then an in-place multiply by a Python float, which PyTorch computes in fp32 for bf16/fp16
    ("opmath") — the same result as the fp32 product rounded to `dtype`, without an fp32 copy of the weight.
    """
    if scale is None:
        return weight.to(dtype)
    if isinstance(scale, float) or scale.numel() == 1:
        if weight.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) or weight.dtype == dtype:
            return weight.to(dtype, copy=True).mul_(float(scale))
        return (weight.to(torch.float32) * float(scale)).to(dtype)
    scale = scale.to(torch.float32)
    if weight.dim() >= 1 and scale.numel() == weight.shape[0]:
        scale = scale.reshape((-1,) + (1,) * (weight.dim() - 1))  # a per-output-channel scale
    return (weight.to(torch.float32) * scale).to(dtype)


def quantize_fp8(weight, fp8_dtype=None, chunk: int = 1 << 22):
    """(float8 weight, fp32 scalar scale) with weight ≈ fp8 × scale: one scale per tensor, chosen so the
    largest magnitude lands on the fp8 maximum. Used to store fp16/bf16 files as fp8 on request; converts
    `chunk` values at a time so the fp32 working copy stays small."""
    fp8_dtype = fp8_dtype or torch.float8_e4m3fn
    fp8_max = torch.finfo(fp8_dtype).max
    low, high = torch.aminmax(weight.detach())
    amax = torch.maximum(low.abs(), high.abs()).to(torch.float32)
    scale = torch.clamp(amax / fp8_max, min=torch.finfo(torch.float32).tiny)
    quantized = torch.empty(weight.shape, dtype=fp8_dtype)
    source, target = weight.detach().reshape(-1), quantized.view(-1)
    for start in range(0, source.numel(), chunk):
        part = source[start : start + chunk].to(torch.float32, copy=True).div_(scale).clamp_(-fp8_max, fp8_max)
        target[start : start + chunk] = part.to(fp8_dtype)
    return quantized, scale.reshape(())


class Fp8Linear(torch.nn.Module):
    """A Linear whose weight stays float8 in memory with its scale; forward dequantizes the weight to
    `compute_dtype` (one layer at a time) and runs an ordinary linear. The result equals running a Linear
    holding `dequantize(weight, scale, compute_dtype)`."""

    def __init__(self, weight, scale, bias, compute_dtype):
        super().__init__()
        self.out_features, self.in_features = (int(d) for d in weight.shape)
        self.compute_dtype = compute_dtype
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.register_buffer("weight_scale", scale.to(torch.float32))
        # a per-tensor scale also as a Python float: forward multiplies by it without a device sync
        self.scale_value = float(scale) if scale.numel() == 1 else None
        self.bias = None if bias is None else torch.nn.Parameter(bias.to(compute_dtype), requires_grad=False)

    def forward(self, x):
        scale = self.scale_value if self.scale_value is not None else self.weight_scale
        weight = dequantize(self.weight, scale, self.compute_dtype)
        if x.dtype != self.compute_dtype:
            x = x.to(self.compute_dtype)
        return torch.nn.functional.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        storage = str(self.weight.dtype).removeprefix("torch.")
        compute = str(self.compute_dtype).removeprefix("torch.")
        return f"in_features={self.in_features}, out_features={self.out_features}, storage={storage}, compute={compute}"
