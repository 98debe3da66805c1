"""The Wan2.2 VAE's original key names → diffusers `AutoencoderKLWan(is_residual=True)` names.

The original layout (official Wan2.2, ComfyUI `comfy/ldm/wan/vae2_2.py`) nests each resolution level's
blocks in a Sequential inside a Sequential:

    encoder.downsamples.{level}.downsamples.{i}.residual.{0,2,3,6}   ResidualBlock i of a level
    encoder.downsamples.{level}.downsamples.{i}.shortcut             its 1×1 shortcut (when dims change)
    encoder.downsamples.{level}.downsamples.{last}.resample.1 / .time_conv   the level's downsampler
    decoder.upsamples.{level}.upsamples.{i}...                       the same for the decoder

diffusers names the same modules `encoder.down_blocks.{level}.resnets.{i}.{norm1,conv1,norm2,conv2,
conv_shortcut}` and `encoder.down_blocks.{level}.downsampler...` (`up_blocks` / `upsampler` in the
decoder). The rest (conv1/conv2 around the latent, middle, head) is named as in the Wan2.1 VAE. The
mapping was written from diffusers' `scripts/convert_wan_to_diffusers.py` (`convert_vae_22`) and is checked
in the tests against ComfyUI's own module layout and by decoding.
"""

from __future__ import annotations

import re

_RESIDUAL = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.weight": "conv1.weight",
    "residual.2.bias": "conv1.bias",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.weight": "conv2.weight",
    "residual.6.bias": "conv2.bias",
    "shortcut.weight": "conv_shortcut.weight",
    "shortcut.bias": "conv_shortcut.bias",
}

# The middle (two residual blocks around one attention block) and the head, shared with Wan2.1.
_MIDDLE_RESIDUAL = re.compile(r"^(encoder|decoder)\.middle\.([02])\.(.+)$")
_MIDDLE_ATTENTION = re.compile(r"^(encoder|decoder)\.middle\.1\.(.+)$")
_LEVEL_BLOCK = re.compile(r"^(encoder|decoder)\.(downsamples|upsamples)\.(\d+)\.(downsamples|upsamples)\.(\d+)\.(.+)$")
_FIXED = {
    "encoder.conv1.weight": "encoder.conv_in.weight",
    "encoder.conv1.bias": "encoder.conv_in.bias",
    "decoder.conv1.weight": "decoder.conv_in.weight",
    "decoder.conv1.bias": "decoder.conv_in.bias",
    "encoder.head.0.gamma": "encoder.norm_out.gamma",
    "encoder.head.2.weight": "encoder.conv_out.weight",
    "encoder.head.2.bias": "encoder.conv_out.bias",
    "decoder.head.0.gamma": "decoder.norm_out.gamma",
    "decoder.head.2.weight": "decoder.conv_out.weight",
    "decoder.head.2.bias": "decoder.conv_out.bias",
    "conv1.weight": "quant_conv.weight",
    "conv1.bias": "quant_conv.bias",
    "conv2.weight": "post_quant_conv.weight",
    "conv2.bias": "post_quant_conv.bias",
}


def vae22_to_diffusers(name: str) -> str:
    """The diffusers name of one original Wan2.2 VAE tensor. Unknown names come back unchanged, so a
    foreign tensor shows up as 'unexpected' when loading instead of being silently dropped."""
    if name in _FIXED:
        return _FIXED[name]
    match = _MIDDLE_RESIDUAL.match(name)
    if match:
        side, index, rest = match.groups()
        if rest in _RESIDUAL:
            return f"{side}.mid_block.resnets.{int(index) // 2}.{_RESIDUAL[rest]}"
        return name
    match = _MIDDLE_ATTENTION.match(name)
    if match:
        side, rest = match.groups()
        return f"{side}.mid_block.attentions.0.{rest}"
    match = _LEVEL_BLOCK.match(name)
    if match:
        side, outer, level, inner, index, rest = match.groups()
        if outer != inner:
            return name
        blocks = "down_blocks" if side == "encoder" else "up_blocks"
        if rest in _RESIDUAL:
            return f"{side}.{blocks}.{level}.resnets.{index}.{_RESIDUAL[rest]}"
        if rest.startswith(("resample.", "time_conv.")):
            sampler = "downsampler" if side == "encoder" else "upsampler"
            return f"{side}.{blocks}.{level}.{sampler}.{rest}"
    return name
