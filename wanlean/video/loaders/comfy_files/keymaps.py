"""Original Wan / ComfyUI tensor names → diffusers names, computed from names alone.

diffusers' single-file converters (`convert_wan_transformer_to_diffusers`, `convert_wan_vae_to_diffusers`)
rename a whole state dict. Fed a dict whose values are the original names themselves, they return
{diffusers name: original name} without a single tensor being read, which gives the map for streaming.
(`convert_wan_transformer_to_diffusers` empties the dict it is given, so it always gets a fresh one.)

The Wan2.2 VAE map is ours (`vae22.py`): diffusers' single-file converter only knows the Wan2.1 layout.
The umT5 file already uses Hugging Face T5 names; only the tied `encoder.embed_tokens.weight` is dropped.
"""

from __future__ import annotations

from ....errors import WanLeanError
from .vae22 import vae22_to_diffusers


def _invert(converted: dict, what: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for new, old in converted.items():
        if old in mapping:
            raise WanLeanError(f"{what}: the key map sends '{old}' to two names; this file layout is not supported.")
        mapping[old] = new
    return mapping


def _check_one_to_one(mapping: dict[str, str], what: str) -> dict[str, str]:
    seen: dict[str, str] = {}
    for old, new in mapping.items():
        if new in seen:
            raise WanLeanError(
                f"{what}: '{seen[new]}' and '{old}' would both load into '{new}'; this file layout is not supported."
            )
        seen[new] = old
    return mapping


def transformer_map(names, layout: str = "wan", what: str = "diffusion model") -> dict[str, str]:
    """{original name: diffusers name} for a Wan transformer's weights (names without any file prefix).
    `layout` "diffusers" means the file already uses diffusers names."""
    if layout == "diffusers":
        return {name: name for name in names}
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    converted = convert_wan_transformer_to_diffusers({name: name for name in names})
    return _check_one_to_one(_invert(converted, what), what)


def vae_map(names, version: str, what: str = "vae") -> dict[str, str]:
    """{original name: diffusers name} for the Wan2.1 ("2.1") or Wan2.2 ("2.2") VAE, or an identity map for
    a VAE saved by diffusers ("diffusers")."""
    if version == "diffusers":
        return {name: name for name in names}
    if version == "2.2":
        return _check_one_to_one({name: vae22_to_diffusers(name) for name in names}, what)
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    converted = convert_wan_vae_to_diffusers({name: name for name in names})
    return _check_one_to_one(_invert(converted, what), what)


def umt5_map(names) -> dict[str, str]:
    """{file name: UMT5EncoderModel name}: the same Hugging Face names, minus the decoder, the LM head, the
    tokenizer (`spiece_model`) and the tied input embedding (loaded from `shared.weight`)."""
    skipped = ("decoder.", "lm_head.")
    dropped = ("encoder.embed_tokens.weight", "spiece_model")
    return {name: name for name in names if not name.startswith(skipped) and name not in dropped}
