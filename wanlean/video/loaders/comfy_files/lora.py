"""LoRAs for the Wan2.2 experts, applied without changing the session they come from.

Key layouts (ComfyUI/lightx2v `diffusion_model.…lora_down/lora_up/alpha/diff_b`, kohya/musubi
`lora_unet_…`, diffusers `transformer.…lora_A/lora_B`) are converted by diffusers' own
`WanLoraLoaderMixin.lora_state_dict`, which folds `alpha / rank` into the factors. The layers are then
wrapped in `LoRALinear`: output = base(x) + strength × (B(A(x)) + bias). The base weights are never
merged or copied, so an fp8-stored expert stays fp8 and a 14B expert costs only the LoRA's own size.

Why a copy and not in place: ComfyUI caches each node's output and hands the same object to every branch
of a graph. `apply_loras` returns a new `WanSession` whose experts are new module trees sharing every base
weight tensor with the input session's (no weight is copied) with the LoRA layers added only in the new
trees. The input session, and any other branch using it, computes exactly as before. Memory hooks a
sampler attached to the input's modules are not carried over: the new session is placed on its own.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os

import torch

from ....errors import WanLeanError
from .stream import TensorReader, open_model_file

log = logging.getLogger("wanlean")


class LoRAAdapter(torch.nn.Module):
    """One LoRA on one layer: strength × (up @ down @ x + bias)."""

    def __init__(self, down, up, bias, strength: float, name: str):
        super().__init__()
        self.register_buffer("down", down)
        self.register_buffer("up", up)
        self.register_buffer("bias", bias)
        self.strength = float(strength)
        self.name = name

    def forward(self, x):
        hidden = torch.nn.functional.linear(x.to(self.down.dtype), self.down)
        out = torch.nn.functional.linear(hidden, self.up, self.bias)
        return (out * self.strength).to(x.dtype)

    def extra_repr(self) -> str:
        return f"rank={self.down.shape[0]}, strength={self.strength}, lora='{self.name}'"


class LoRALinear(torch.nn.Module):
    """A Linear (or Fp8Linear) plus any number of LoRAs."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        self.adapters = torch.nn.ModuleList()

    @property
    def weight(self):  # code that inspects `layer.weight` (dtype, device) sees the base weight
        return self.base.weight

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x):
        out = self.base(x)
        for adapter in self.adapters:
            out = out + adapter(x)
        return out


def read_lora(path: str, what: str = "lora") -> dict[str, tuple]:
    """{layer name in the diffusers transformer: (down [r, in], up [out, r], bias [out] or None)}."""
    from diffusers.loaders.lora_pipeline import WanLoraLoaderMixin

    header = open_model_file(path, what)
    name = os.path.basename(path)
    with TensorReader(header, what) as reader:
        state = {key: reader.read(key) for key in header.tensors}
    if not any(("lora" in key or key.endswith((".alpha", ".diff_b"))) for key in state):
        from .detect import classify

        raise WanLeanError(f"{what}: '{name}' is {classify(header).label}, not a LoRA.")
    state = {("diffusion_model." + key[len("model.diffusion_model."):] if key.startswith("model.diffusion_model.") else key): value for key, value in state.items()}
    diffs = [key for key in state if key.endswith(".diff") and "norm" not in key and "head" not in key]
    if diffs:
        log.warning("[WanLean] %s: '%s' has %d full-weight '.diff' tensors, which are not applied (e.g. %s).", what, name, len(diffs), diffs[0])
    try:
        converted = WanLoraLoaderMixin.lora_state_dict(state)
    except (KeyError, ValueError, IndexError) as exc:
        raise WanLeanError(
            f"{what}: '{name}' is not a Wan LoRA in a layout diffusers can convert ({type(exc).__name__}: {exc}); "
            "use a LoRA made for Wan2.1/Wan2.2 text-to-video."
        ) from None
    layers: dict[str, dict] = {}
    for key, value in converted.items():
        short = key[len("transformer."):] if key.startswith("transformer.") else key
        for part, slot in ((".lora_A.weight", "down"), (".lora_B.weight", "up"), (".lora_B.bias", "bias")):
            if short.endswith(part):
                layers.setdefault(short[: -len(part)], {})[slot] = value
                break
        else:
            raise WanLeanError(f"{what}: '{name}' has a tensor '{key}' that is not a LoRA factor; it is not a Wan LoRA.")
    result = {}
    for layer, parts in layers.items():
        if "down" not in parts or "up" not in parts:
            if "bias" in parts and "down" not in parts and "up" not in parts:
                continue  # a bias-only entry with no factors: nothing multiplies it
            raise WanLeanError(f"{what}: '{name}' has only half of the LoRA for '{layer}'; the file is damaged.")
        result[layer] = (parts["down"], parts["up"], parts.get("bias"))
    if not result:
        raise WanLeanError(f"{what}: '{name}' holds no LoRA layers.")
    return result


def _share_clone(module):
    """A new module tree sharing every parameter and buffer tensor with `module` (nothing is copied but the
    Python objects), without the diffusers hooks a sampler may have attached (memory placement): those
    stay with `module`, and the clone gets its own when it is placed."""
    memo = {id(t): t for t in list(module.parameters()) + list(module.buffers())}
    stashed = []
    for sub in module.modules():  # hooks hold streams and module references that cannot be copied
        if "_diffusers_hook" in sub.__dict__:
            stashed.append((sub, sub.__dict__.pop("_diffusers_hook"), sub.__dict__.pop("forward", None)))
    try:
        return copy.deepcopy(module, memo)
    finally:
        for sub, registry, forward in stashed:
            sub.__dict__["_diffusers_hook"] = registry
            if forward is not None:
                sub.__dict__["forward"] = forward


def _add_lora(transformer, layers: dict, strength: float, label: str, what: str, dtype) -> int:
    from .quant import Fp8Linear

    for layer, (down, up, bias) in layers.items():
        try:
            target = transformer.get_submodule(layer)
        except AttributeError:
            raise WanLeanError(
                f"{what}: '{label}' targets a layer this model does not have ('{layer}'); it is a LoRA for another model."
            ) from None
        base = target.base if isinstance(target, LoRALinear) else target
        if not isinstance(base, (torch.nn.Linear, Fp8Linear)):
            raise WanLeanError(f"{what}: '{label}' targets '{layer}', which is not a linear layer; it is a LoRA for another model.")
        if down.shape[1] != base.in_features or up.shape[0] != base.out_features or up.shape[1] != down.shape[0]:
            raise WanLeanError(
                f"{what}: '{label}' does not fit '{layer}' (LoRA {list(up.shape)}×{list(down.shape)}, layer "
                f"{base.out_features}×{base.in_features}); it is a LoRA for another model size."
            )
        if not isinstance(target, LoRALinear):
            target = LoRALinear(base)
            parent, _, child = layer.rpartition(".")
            setattr(transformer.get_submodule(parent), child, target)
        device = base.weight.device
        adapter = LoRAAdapter(
            down.to(device=device, dtype=dtype),
            up.to(device=device, dtype=dtype),
            None if bias is None else bias.to(device=device, dtype=dtype),
            strength,
            label,
        )
        target.adapters.append(adapter)
    return len(layers)


def apply_loras(session, high: tuple[str, float] | None = None, low: tuple[str, float] | None = None):
    """A new session with a LoRA on the high-noise expert (or TI2V-5B's transformer) and/or the low-noise
    expert; each is (path, strength). None or strength 0 leaves that expert as it is. The input session
    is not changed."""
    plan = [(slot, spec) for slot, spec in (("high", high), ("low", low)) if spec is not None and float(spec[1]) != 0.0]
    if not plan:
        return session
    if any(slot == "low" for slot, _ in plan) and session.transformer_2 is None:
        raise WanLeanError(
            "lora_low_noise: this model has a single transformer (TI2V-5B); put its LoRA in lora_high_noise "
            "and set lora_low_noise to 'none'."
        )
    experts = {"high": session.transformer, "low": session.transformer_2}
    notes = list(session.extras.get("loras", []))
    for slot, (path, strength) in plan:
        what = f"lora_{slot}_noise"
        layers = read_lora(path, what)
        experts[slot] = _share_clone(experts[slot])
        count = _add_lora(experts[slot], layers, float(strength), os.path.basename(path), what, session.dtype)
        notes.append({"expert": slot, "file": os.path.basename(path), "strength": float(strength), "layers": count})
    extras = dict(session.extras)  # the copy gets its own memory_state: it is placed anew
    extras["loras"] = notes
    base_source = extras.setdefault("source_without_loras", session.source)
    lora_names = ", ".join(f"{n['expert']}: {n['file']} @ {n['strength']:g}" for n in notes)
    return dataclasses.replace(
        session,
        transformer=experts["high"],
        transformer_2=experts["low"],
        source=f"{base_source} + LoRA ({lora_names})",
        extras=extras,
    )
