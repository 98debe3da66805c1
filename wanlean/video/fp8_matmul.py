"""fp8 matrix multiplies for weights stored in fp8 (`weight_storage=fp8`, `Fp8Linear`).

By default an `Fp8Linear` dequantizes its float8 weight to bf16 and runs an ordinary linear. With fp8
matmul on, it multiplies in fp8 instead (`torch._scaled_mm`): the float8 weight with its scale as it is
stored, and the activations quantized to float8 e4m3 on the fly, one scale per token (per row) on
compute capability 9.0 and newer, one scale per tensor on 8.9 (rowwise scales need sm90 in torch's
kernels). That needs fp8 tensor cores: CUDA compute capability 8.9 or newer. Elsewhere `refusal`
names the requirement.

The switch is made per run by `wanlean.video.speed`: `enable(module, granularity)` puts a forward on the
module instance and `disable(module)` takes it off, so the module's own forward is never changed.
"""

from __future__ import annotations

import types

FP8_MIN_CAPABILITY = (8, 9)
ROWWISE_MIN_CAPABILITY = (9, 0)
GRANULARITIES = ("token", "tensor")
_SHAPE_MULTIPLE = 16  # torch's CUDA fp8 kernels need every matrix dimension divisible by 16


def fp8_layers(experts) -> list:
    """The `Fp8Linear` modules (float8 e4m3 weight with a scale) of the given experts."""
    import torch

    found = []
    for expert in experts:
        for module in expert.modules() if expert is not None else ():
            weight = getattr(module, "weight", None)
            if hasattr(module, "weight_scale") and hasattr(module, "compute_dtype") and weight is not None \
                    and weight.dtype == torch.float8_e4m3fn:
                found.append(module)
    return found


def refusal(device, layers: list) -> str | None:
    """Why fp8 matmul cannot run here (one sentence naming the requirement), or None when it can."""
    import torch

    if not layers:
        return ("fp8_matmul: needs weights stored in fp8 (float8 e4m3): load the model with WanLeanLoadComfyFiles and "
                "weight_storage fp8. This pipe has no fp8 weights. Set fp8_matmul off.")
    if not hasattr(torch, "_scaled_mm"):
        return f"fp8_matmul: needs torch._scaled_mm (torch 2.4 or newer); this torch is {torch.__version__}. Set fp8_matmul off."
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return ("fp8_matmul: needs an NVIDIA GPU with fp8 tensor cores (CUDA compute capability 8.9 or newer: RTX 40xx, "
                f"L4, L40S, H100, H200); this pipe runs on {device.type}. Set fp8_matmul off.")
    capability = torch.cuda.get_device_capability(device)
    if tuple(capability) < FP8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return (f"fp8_matmul: needs CUDA compute capability 8.9 or newer (fp8 tensor cores); {name} has "
                f"{capability[0]}.{capability[1]}. Set fp8_matmul off.")
    return None


def granularity_for(device) -> str:
    """Per-token activation scales where the kernels have them (sm90+), else one scale per tensor."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and tuple(torch.cuda.get_device_capability(device)) < ROWWISE_MIN_CAPABILITY:
        return "tensor"
    return "token"


def shape_fits(module) -> bool:
    """Whether the layer's weight has the dimensions torch's CUDA fp8 kernels take."""
    return module.in_features % _SHAPE_MULTIPLE == 0 and module.out_features % _SHAPE_MULTIPLE == 0


def enable(module, granularity: str = "token") -> None:
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}; got {granularity!r}")
    module._wanlean_fp8_granularity = granularity
    module.forward = types.MethodType(_scaled_forward, module)


def disable(module) -> None:
    module.__dict__.pop("forward", None)
    module.__dict__.pop("_wanlean_fp8_granularity", None)


def quantize_activations(x2d, granularity: str):
    """(float8 e4m3 activations, fp32 scales) with x ≈ q × scale; scales `[rows, 1]` per token, `[]` per tensor."""
    import torch

    fp8_max = torch.finfo(torch.float8_e4m3fn).max
    x32 = x2d.to(torch.float32)
    if granularity == "token":
        amax = x32.abs().amax(dim=1, keepdim=True)
    else:
        amax = x32.abs().amax()
    scale = (amax / fp8_max).clamp(min=torch.finfo(torch.float32).tiny)
    return (x32 / scale).clamp(-fp8_max, fp8_max).to(torch.float8_e4m3fn), scale


def scaled_linear(module, x):
    """`module`'s linear on `x` as an fp8 matrix multiply (what `enable` installs as its forward)."""
    import torch

    granularity = module._wanlean_fp8_granularity
    rows = x.numel() // x.shape[-1]
    if x.is_cuda and (rows % _SHAPE_MULTIPLE or not shape_fits(module)):
        return type(module).forward(module, x)  # no fp8 kernel for this shape: the dequantized path
    x2d = x.reshape(rows, x.shape[-1])
    quantized, x_scale = quantize_activations(x2d, granularity)
    weight_scale = module.weight_scale.to(torch.float32)
    if granularity == "token":  # rowwise: [rows, 1] × [1, out]
        weight_scale = weight_scale.reshape(-1, 1).expand(module.out_features, 1).reshape(1, -1).contiguous()
    elif weight_scale.numel() != 1:
        return type(module).forward(module, x)  # a per-channel weight scale needs rowwise scaling
    else:
        weight_scale = weight_scale.reshape(())
    out = torch._scaled_mm(quantized, module.weight.t(), scale_a=x_scale, scale_b=weight_scale, out_dtype=module.compute_dtype)
    if module.bias is not None:
        out = out + module.bias
    return out.reshape(*x.shape[:-1], module.out_features)


def _scaled_forward(self, x):
    return scaled_linear(self, x)
