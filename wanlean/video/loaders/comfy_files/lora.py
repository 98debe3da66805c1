"""LoRAs for the Wan2.2 experts, applied without changing the session they come from.

What a LoRA file can carry, and what happens to it (strength multiplies all of it):
- low-rank factors (`lora_down`/`lora_up` + `alpha`, kohya/musubi `lora_unet_…`, diffusers `lora_A`/`lora_B`):
  converted by diffusers' own `WanLoraLoaderMixin.lora_state_dict`, which folds `alpha / rank` into the
  factors; each targeted Linear computes base(x) + strength × B(A(x)).
- full deltas, as LoRAs made by extraction carry them (LightX2V's extractor, the Wan2.1 lightx2v distill
  LoRAs): `<layer>.diff` is added to the layer's weight (norms, `head.head`, `patch_embedding`, any layer),
  `<layer>.diff_b` to its bias and `blocks.N.diff_m` / `head.diff_m` to the modulation table. These are read
  here, not by diffusers (whose converter drops norm deltas and leftovers, and fails on a `head.head.diff`
  without `head.head.diff_b`). ComfyUI applies `.diff`/`.diff_b` but skips `.diff_m`; here all three apply.
  A weight delta on a Linear is computed beside it (strength × x·diffᵀ), so an fp8-stored layer stays fp8;
  a delta on anything else (norms, modulation, biases, the patch embedding) gives that tensor a new copy,
  base + strength × delta, in the new module tree only.

Keys that match nothing in the model (a layer it lacks, a DoRA scale, a layout that cannot be resolved) are
not applied and are listed by name in the session's notes, the sampler's report and the log. A LoRA whose
keys mostly match nothing is refused: it belongs to another model.

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
import re

import torch

from ....errors import WanLeanError
from ..identity import with_lora
from .stream import TensorReader, open_model_file

log = logging.getLogger("wanlean")

DELTA_SUFFIXES = (".diff", ".diff_b", ".diff_m")
_FACTOR_SUFFIX = re.compile(r"\.(lora_down|lora_up|lora_A|lora_B)\.(weight|bias)$|\.alpha$")


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


class DiffAdapter(torch.nn.Module):
    """A full weight delta on one Linear: strength × (x @ diffᵀ). Kept beside the layer instead of merged,
    so an fp8-stored weight stays fp8 and the base tensor stays shared."""

    def __init__(self, diff, strength: float, name: str):
        super().__init__()
        self.register_buffer("diff", diff)
        self.strength = float(strength)
        self.name = name

    def forward(self, x):
        out = torch.nn.functional.linear(x.to(self.diff.dtype), self.diff)
        return (out * self.strength).to(x.dtype)

    def extra_repr(self) -> str:
        return f"full delta {list(self.diff.shape)}, strength={self.strength}, lora='{self.name}'"


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


@dataclasses.dataclass
class LoRAContents:
    """What one LoRA file holds, in the diffusers transformer's names.

    - `layers`: {Linear name: (down [r, in], up [out, r], bias [out] or None)}, alpha / rank folded in.
    - `deltas`: [(parameter name, the file's key, delta)]: `.diff` → `<layer>.weight`, `.diff_b` →
      `<layer>.bias`, `.diff_m` → the modulation table (`blocks.N.scale_shift_table`, `scale_shift_table`).
    - `origins`: {Linear name: the file's keys it came from}, for naming what is not applied.
    - `unreadable`: the file's keys that mean nothing here (DoRA scales, deltas in a layout not resolved).
    """

    layers: dict[str, tuple] = dataclasses.field(default_factory=dict)
    deltas: list[tuple[str, str, torch.Tensor]] = dataclasses.field(default_factory=list)
    origins: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    unreadable: list[str] = dataclasses.field(default_factory=list)

    @property
    def targets(self) -> int:
        return len(self.layers) + len(self.deltas) + len(self.unreadable)


def _is_lora_key(key: str) -> bool:
    return "lora" in key or key.endswith((".alpha",) + DELTA_SUFFIXES)


def _delta_target(key: str) -> str | None:
    """The diffusers parameter a `.diff` / `.diff_b` / `.diff_m` key adds to, or None when its layout is not
    one of: original Wan names (bare or under `diffusion_model.`) or diffusers names (under `transformer.`)."""
    from .keymaps import transformer_map

    stem, _, suffix = key.rpartition(".")
    if stem.startswith("transformer."):
        stem = stem[len("transformer."):]
        if suffix == "diff":
            return f"{stem}.weight"
        if suffix == "diff_b":
            return f"{stem}.bias"
        return stem if stem.endswith("scale_shift_table") else f"{stem}.scale_shift_table".lstrip(".")
    if stem.startswith("diffusion_model."):
        stem = stem[len("diffusion_model."):]
    if stem.startswith("lora_unet_") or not stem:
        return None
    if suffix == "diff":
        original = f"{stem}.weight"
    elif suffix == "diff_b":
        original = f"{stem}.bias"
    else:  # LightX2V's extractor writes `<x>.modulation` as `<x>.diff_m`; accept `<x>.modulation.diff_m` too
        original = stem if stem.endswith(".modulation") else f"{stem}.modulation"
    return transformer_map([original], "wan", "lora")[original]


def _factor_layer(key: str) -> str | None:
    """The diffusers Linear a factor key of the ComfyUI or diffusers layout targets (for messages)."""
    from .keymaps import transformer_map

    stem = _FACTOR_SUFFIX.sub("", key)
    if stem.startswith("transformer."):
        return stem[len("transformer."):]
    if stem.startswith("diffusion_model."):
        original = stem[len("diffusion_model."):] + ".weight"
        return transformer_map([original], "wan", "lora")[original][: -len(".weight")]
    return None


def read_lora(path: str, what: str = "lora") -> LoRAContents:
    """Every tensor of a LoRA file, sorted into factors, deltas and keys that mean nothing here."""
    from diffusers.loaders.lora_pipeline import WanLoraLoaderMixin

    header = open_model_file(path, what)
    name = os.path.basename(path)
    with TensorReader(header, what) as reader:
        state = {key: reader.read(key) for key in header.tensors}
    if not any(_is_lora_key(key) for key in state):
        from .detect import classify

        raise WanLeanError(f"{what}: '{name}' is {classify(header).label}, not a LoRA.")
    state = {("diffusion_model." + key[len("model.diffusion_model."):] if key.startswith("model.diffusion_model.") else key): value for key, value in state.items()}
    contents = LoRAContents()
    factors = {}
    for key, value in state.items():
        if key.endswith(DELTA_SUFFIXES):
            target = _delta_target(key)
            if target is None:
                contents.unreadable.append(key)
            else:
                contents.deltas.append((target, key, value))
        elif "dora_scale" in key:
            contents.unreadable.append(key)  # DoRA is not supported; diffusers would drop it quietly
        else:
            factors[key] = value
    if not factors:
        return contents
    for key in factors:
        layer = _factor_layer(key)
        if layer is not None:
            contents.origins.setdefault(layer, []).append(key)
    try:
        converted = WanLoraLoaderMixin.lora_state_dict(factors)
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
    for layer, parts in layers.items():
        if "down" not in parts or "up" not in parts:
            if "bias" in parts and "down" not in parts and "up" not in parts:
                contents.deltas.append((f"{layer}.bias", f"{layer}.lora_B.bias", parts["bias"]))  # a bias delta alone
                continue
            raise WanLeanError(f"{what}: '{name}' has only half of the LoRA for '{layer}'; the file is damaged.")
        contents.layers[layer] = (parts["down"], parts["up"], parts.get("bias"))
    return contents


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


def _find_module(transformer, name: str):
    try:
        return transformer.get_submodule(name)
    except AttributeError:
        return None


def _wrap_linear(transformer, layer: str, target):
    """`target` (a Linear or Fp8Linear at `layer`) as a LoRALinear, put in its place once."""
    if isinstance(target, LoRALinear):
        return target
    wrapped = LoRALinear(target)
    parent, _, child = layer.rpartition(".")
    setattr(transformer.get_submodule(parent) if parent else transformer, child, wrapped)
    return wrapped


def _add_lora(transformer, contents: LoRAContents, strength: float, label: str, what: str, dtype) -> tuple[int, list[str]]:
    """Add `contents` to `transformer` (a share-clone); (targets applied, the file's keys not applied)."""
    from .quant import Fp8Linear

    applied, missed = 0, list(contents.unreadable)
    for layer, (down, up, bias) in contents.layers.items():
        target = _find_module(transformer, layer)
        if target is None:
            missed.extend(contents.origins.get(layer, [f"{layer} (lora_down, lora_up)"]))
            continue
        base = target.base if isinstance(target, LoRALinear) else target
        if not isinstance(base, (torch.nn.Linear, Fp8Linear)):
            raise WanLeanError(f"{what}: '{label}' targets '{layer}', which is not a linear layer; it is a LoRA for another model.")
        if down.shape[1] != base.in_features or up.shape[0] != base.out_features or up.shape[1] != down.shape[0]:
            raise WanLeanError(
                f"{what}: '{label}' does not fit '{layer}' (LoRA {list(up.shape)}×{list(down.shape)}, layer "
                f"{base.out_features}×{base.in_features}); it is a LoRA for another model size."
            )
        device = base.weight.device
        adapter = LoRAAdapter(
            down.to(device=device, dtype=dtype),
            up.to(device=device, dtype=dtype),
            None if bias is None else bias.to(device=device, dtype=dtype),
            strength,
            label,
        )
        _wrap_linear(transformer, layer, target).adapters.append(adapter)
        applied += 1
    for parameter, key, delta in contents.deltas:
        module_name, _, attr = parameter.rpartition(".")
        owner = _find_module(transformer, module_name) if module_name else transformer
        base = owner.base if isinstance(owner, LoRALinear) else owner
        current = None if base is None else base._parameters.get(attr)
        if current is None:
            missed.append(key)
            continue
        if tuple(delta.shape) != tuple(current.shape):
            raise WanLeanError(
                f"{what}: '{label}' has '{key}' of shape {list(delta.shape)} for '{parameter}' of shape "
                f"{list(current.shape)}; it is a LoRA for another model size."
            )
        if attr == "weight" and isinstance(base, (torch.nn.Linear, Fp8Linear)):
            adapter = DiffAdapter(delta.to(device=current.device, dtype=dtype), strength, label)
            _wrap_linear(transformer, module_name, owner).adapters.append(adapter)
        else:  # a small tensor (norm, bias, modulation, patch embedding): a new merged copy in this tree only
            merged = (current.to(torch.float32) + strength * delta.to(device=current.device, dtype=torch.float32)).to(current.dtype)
            base._parameters[attr] = torch.nn.Parameter(merged, requires_grad=False)
        applied += 1
    return applied, missed


def apply_loras(session, high: tuple[str, float] | None = None, low: tuple[str, float] | None = None):
    """A new session with a LoRA on the high-noise expert (or TI2V-5B's transformer) and/or the low-noise
    expert; each is (path, strength). None or strength 0 leaves that expert as it is. The input session
    is not changed. Keys that match nothing in the model are listed in `extras["loras"]` and the log; a
    LoRA most of whose keys match nothing is refused."""
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
        label = os.path.basename(path)
        contents = read_lora(path, what)
        if contents.targets == 0:
            raise WanLeanError(f"{what}: '{label}' holds no LoRA layers.")
        clone = _share_clone(experts[slot])
        applied, missed = _add_lora(clone, contents, float(strength), label, what, session.dtype)
        if applied * 2 < contents.targets:  # most of what the file targets is not in this model
            raise WanLeanError(
                f"{what}: '{label}' does not match this model: only {applied} of the {contents.targets} layers and "
                f"tensors it changes exist here (not found: {', '.join(missed[:5])}{', …' if len(missed) > 5 else ''}). "
                "It is a LoRA for another model; choose one made for Wan2.1/Wan2.2 text-to-video (A14B) or TI2V-5B."
            )
        if missed:
            log.warning("[WanLean] %s: '%s': %d key(s) not applied (nothing in the model matches them): %s",
                        what, label, len(missed), ", ".join(missed))
        experts[slot] = clone
        notes.append({"expert": slot, "file": label, "strength": float(strength), "layers": len(contents.layers),
                      "deltas": len(contents.deltas), "not_applied": missed})
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
        weights_identity=_identity_with_loras(getattr(session, "weights_identity", ""), plan),
    )


def _identity_with_loras(identity: str, plan) -> str:
    """The pipe's weights identity extended by each LoRA's file identity, expert and strength, in order."""
    for slot, (path, strength) in plan:
        identity = with_lora(identity, slot, path, strength)
    return identity

