"""What a model file is, from its tensor names and shapes (never its file name), read from the header.

- Diffusion models: the Wan2.2 A14B expert architecture (16 latent channels, as Wan2.1 T2V-14B) or
  TI2V-5B (48 channels), original Wan names with or without the `model.diffusion_model.` prefix, or
  diffusers names. Image-to-video (36 channels or image-embedding weights), VACE, Animate, S2V and other
  Wan variants are refused with a message naming what was found.
- VAEs: Wan2.1 (z 16) or Wan2.2 (z 48, nested per-level blocks), original or diffusers names.
- Text encoders: umT5 (a relative attention bias in every layer) with its sentencepiece model inside;
  plain T5 (bias in layer 0 only), CLIP and LLM encoders are refused with a message.

A high-noise and a low-noise A14B expert have identical names and shapes: no tensor tells them apart.
`fingerprint` (names, shapes and sampled weight bytes) catches the same weights chosen for both slots.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field

from .... import CONFIGS_DIR
from ....errors import WanLeanError
from ....safetensors_header import SafetensorsHeader
from .quant import QuantPlan, plan_quantization
from .stream import open_model_file

WAN_HEAD_DIM = 128  # every released Wan model (1.3B, 5B, 14B) uses 128-wide heads; ComfyUI assumes it too
A14B_CHANNELS = 16
TI2V_CHANNELS = 48
I2V_CHANNELS = 36

CONFIG_FILES = {
    "A14B": "wan2.2_t2v_a14b_transformer.json",
    "TI2V-5B": "wan2.2_ti2v_5b_transformer.json",
    "vae2.1": "wan2.1_vae.json",
    "vae2.2": "wan2.2_vae.json",
    "umt5": "umt5_xxl_encoder.json",
    "scheduler": "wan2.2_scheduler.json",
}

A14B_FILES = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors / wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
UMT5_FILES = "umt5_xxl_fp8_e4m3fn_scaled.safetensors or umt5_xxl_fp16.safetensors"


def shipped_config(name: str) -> dict:
    """A config JSON shipped in `wanlean/configs/` (keys starting with '_' removed)."""
    with open(os.path.join(CONFIGS_DIR, CONFIG_FILES[name]), encoding="utf-8") as f:
        text = f.read()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


@dataclass
class FileKind:
    """What a file seems to be, in words for messages ("a Wan VAE"), and the slot it belongs in."""

    label: str
    slot: str | None = None  # "diffusion model", "vae", "text_encoder", "lora" or None


@dataclass
class ModelFile:
    path: str
    header: SafetensorsHeader
    prefix: str  # stripped from every name before mapping
    layout: str  # "wan", "diffusers" (transformer/VAE), "hf" (text encoder)
    config: dict  # constructor arguments for the diffusers / transformers class
    quant: QuantPlan
    description: str  # for reports, e.g. "Wan2.2 A14B expert, fp8_scaled, 40 layers"
    family: str = ""  # transformer: "A14B" / "TI2V-5B"; VAE: "2.1" / "2.2"; text encoder: "umt5"
    extras: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def names(self) -> list[str]:
        """Tensor names under the prefix, prefix removed, sidecars (scales, markers) excluded."""
        cut = len(self.prefix)
        return [key[cut:] for key in self.header.tensors if key.startswith(self.prefix) and key[cut:] not in self.quant.sidecar]

    def full_name(self, short: str) -> str:
        return self.prefix + short


def classify(header: SafetensorsHeader) -> FileKind:
    """A best guess at what any safetensors file is, for messages when it sits in the wrong slot."""
    names = list(header.tensors)

    def has(pattern: str) -> bool:
        regex = re.compile(pattern)
        return any(regex.search(name) for name in names)

    if has(r"lora_(down|up|A|B)\b|\.lora\.(down|up)\.|^lora_unet_"):
        return FileKind("a LoRA", "lora")
    if has(r"(^|\.)patch_embedding\.weight$"):
        return FileKind("a Wan diffusion model", "diffusion model")
    if has(r"(^|\.)decoder\.middle\.0\.residual\.0\.gamma$|(^|\.)decoder\.mid_block\.resnets\.0\.norm1\.gamma$"):
        return FileKind("a Wan VAE", "vae")
    if has(r"(^|\.)decoder\.(mid\.block_1|up\.0\.block)|(^|\.)decoder\.conv_in\.weight$") and not has(r"encoder\.block\."):
        return FileKind("a VAE of another model family (not Wan)", None)
    if has(r"(^|\.)encoder\.block\.1\.layer\.0\.SelfAttention\.relative_attention_bias"):
        return FileKind("a umT5 text encoder", "text_encoder")
    if has(r"(^|\.)encoder\.block\.0\.layer\.0\.SelfAttention\.q\.weight$"):
        return FileKind("a plain T5 text encoder (as used by Flux, SD3 or LTX-Video, not umT5)", None)
    if has(r"(^|\.)text_model\.encoder\.layers\.|(^|\.)transformer\.resblocks\.|text_projection"):
        return FileKind("a CLIP text encoder", None)
    if has(r"(^|\.)vision_model\.|visual\.blocks\.|(^|\.)visual\.transformer"):
        return FileKind("a CLIP vision (image) encoder", None)
    if has(r"(^|\.)model\.layers\.\d+\.self_attn\.(q|k)_proj\.weight$|(^|\.)layers\.\d+\.attention\.wq\.weight$"):
        return FileKind("a language-model text encoder (Llama/Qwen/Gemma-like)", None)
    if has(r"(^|\.)(input_blocks|double_blocks|joint_blocks|transformer_blocks)\.0\."):
        return FileKind("a diffusion model of another family (not Wan)", None)
    return FileKind(f"an unrecognised model ({len(names)} tensors)", None)


def _wrong_slot(what: str, path: str, header: SafetensorsHeader, wanted: str, fix: str) -> WanLeanError:
    kind = classify(header)
    where = {
        "diffusion model": "high_noise_model / low_noise_model",
        "vae": "vae",
        "text_encoder": "text_encoder",
        "lora": "WanLeanLoRA",
    }.get(kind.slot or "")
    move = f" Choose it in {where}." if where and kind.slot != wanted else ""
    return WanLeanError(f"{what}: '{os.path.basename(path)}' is {kind.label}, not {fix}.{move}")


def _prefix_of(header: SafetensorsHeader, suffix: str) -> str | None:
    """The prefix before `suffix` of the first tensor ending with it (shortest prefix wins)."""
    found = [key[: -len(suffix)] for key in header.tensors if key == suffix or key.endswith("." + suffix)]
    return min(found, key=len) if found else None


# --- diffusion models -----------------------------------------------------------------------------------

_WAN_TOP = {"patch_embedding", "text_embedding", "time_embedding", "time_projection", "blocks", "head"}
_DIFFUSERS_TOP = {"patch_embedding", "condition_embedder", "blocks", "proj_out", "scale_shift_table", "norm_out"}
_WAN_BLOCK = {"self_attn", "cross_attn", "norm1", "norm2", "norm3", "ffn", "modulation"}
_DIFFUSERS_BLOCK = {"attn1", "attn2", "norm1", "norm2", "norm3", "ffn", "scale_shift_table"}
_VARIANTS = (
    # (name pattern, what it is)
    (r"^vace_", "a VACE model (video editing/control)"),
    (r"^(motion_encoder|face_encoder|face_adapter|pose_patch_embedding)\.", "a Wan2.2 Animate model"),
    (r"^(casual_audio_encoder|audio_injector|cond_encoder|trainable_cond_mask|frame_packer)\.", "a Wan2.2 S2V (speech-to-video) model"),
    (r"^audio_proj\.", "an audio-driven Wan model (HuMo-like)"),
    (r"^(img_emb|condition_embedder\.image_embedder)\.|\.(k_img|v_img|add_k_proj|add_v_proj)\.", "an image-to-video model (it has image-embedding weights)"),
    (r"^(ref_conv|control_adapter)\.", "a Wan Fun control/reference model"),
)


def inspect_diffusion_model(path: str, what: str = "high_noise_model") -> ModelFile:
    """Detect a Wan text-to-video transformer file and derive its diffusers config, or raise a message."""
    header = open_model_file(path, what)
    name = os.path.basename(path)
    prefix = _prefix_of(header, "patch_embedding.weight")
    if prefix is None:
        raise _wrong_slot(what, path, header, "diffusion model", "a Wan2.2 diffusion model")
    shorts = {key[len(prefix):]: info for key, info in header.tensors.items() if key.startswith(prefix)}
    layout = "diffusers" if "condition_embedder.time_proj.weight" in shorts else "wan"
    quant = plan_quantization(header, prefix, what)
    weights = {k: v for k, v in shorts.items() if k not in quant.sidecar}

    for pattern, label in _VARIANTS:
        regex = re.compile(pattern)
        if any(regex.search(k) for k in weights):
            raise WanLeanError(
                f"{what}: '{name}' is {label}. This sampler is text-to-video: choose a Wan2.2 T2V-A14B expert "
                f"({A14B_FILES}) or the TI2V-5B model."
            )
    top_allowed, block_allowed = (_WAN_TOP, _WAN_BLOCK) if layout == "wan" else (_DIFFUSERS_TOP, _DIFFUSERS_BLOCK)
    for key in weights:
        parts = key.split(".")
        if parts[0] not in top_allowed or (parts[0] == "blocks" and (len(parts) < 3 or parts[2] not in block_allowed)):
            raise WanLeanError(
                f"{what}: '{name}' has weights a Wan text-to-video model does not have (e.g. '{key}'): it is "
                "another Wan variant. Choose a Wan2.2 T2V-A14B expert or the TI2V-5B model."
            )

    patch = weights["patch_embedding.weight"].shape  # (dim, in_channels, pt, ph, pw)
    if len(patch) != 5:
        raise WanLeanError(f"{what}: '{name}' has a patch embedding of shape {list(patch)}; it is not a Wan video model.")
    dim, in_channels = int(patch[0]), int(patch[1])
    patch_size = [int(p) for p in patch[2:]]
    if in_channels == I2V_CHANNELS:
        raise WanLeanError(
            f"{what}: '{name}' is an image-to-video model (36 input channels: latents + image condition). This "
            f"sampler is text-to-video: choose a Wan2.2 T2V-A14B expert ({A14B_FILES}) or the TI2V-5B model."
        )
    if in_channels == A14B_CHANNELS:
        family = "A14B"
    elif in_channels == TI2V_CHANNELS:
        family = "TI2V-5B"
    else:
        raise WanLeanError(
            f"{what}: '{name}' is a Wan model with {in_channels} input channels, which is neither the T2V-A14B "
            "architecture (16) nor TI2V-5B (48). Choose a Wan2.2 text-to-video model."
        )
    if family == "A14B" and dim == 1536:
        raise WanLeanError(
            f"{what}: '{name}' is Wan2.1 T2V-1.3B (width 1536), not a Wan2.2 model. Choose the Wan2.2 T2V-A14B "
            "experts or the TI2V-5B model."
        )
    if dim % WAN_HEAD_DIM:
        raise WanLeanError(
            f"{what}: '{name}' has width {dim}, not a multiple of Wan's 128-wide attention heads; it is not a "
            "released Wan model."
        )

    def shape(wan_name: str, diffusers_name: str):
        key = wan_name if layout == "wan" else diffusers_name
        if key not in weights:
            raise WanLeanError(f"{what}: '{name}' lacks '{key}'; the file is incomplete or not a Wan model.")
        return [int(d) for d in weights[key].shape]

    block_ids = {int(k.split(".")[1]) for k in weights if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    num_layers = len(block_ids)
    if num_layers == 0 or block_ids != set(range(num_layers)):
        raise WanLeanError(f"{what}: '{name}' has missing transformer blocks; the file is incomplete.")
    head = shape("head.head.weight", "proj_out.weight")
    out_channels = head[0] // (patch_size[0] * patch_size[1] * patch_size[2])
    text_dim = shape("text_embedding.0.weight", "condition_embedder.text_embedder.linear_1.weight")[1]
    freq_dim = shape("time_embedding.0.weight", "condition_embedder.time_embedder.linear_1.weight")[1]
    ffn_dim = shape("blocks.0.ffn.0.weight", "blocks.0.ffn.net.0.proj.weight")[0]
    qk_norm = ("blocks.0.self_attn.norm_q.weight" if layout == "wan" else "blocks.0.attn1.norm_q.weight") in weights
    cross_attn_norm = "blocks.0.norm3.weight" in weights if layout == "wan" else "blocks.0.norm2.weight" in weights

    config = shipped_config(family)
    config.update(
        num_attention_heads=dim // WAN_HEAD_DIM,
        attention_head_dim=WAN_HEAD_DIM,
        in_channels=in_channels,
        out_channels=out_channels,
        patch_size=patch_size,
        text_dim=text_dim,
        freq_dim=freq_dim,
        ffn_dim=ffn_dim,
        num_layers=num_layers,
        qk_norm="rms_norm_across_heads" if qk_norm else None,
        cross_attn_norm=cross_attn_norm,
    )
    label = "Wan2.2 A14B expert" if family == "A14B" else "Wan2.2 TI2V-5B"
    description = f"{label} ({quant.format}, {num_layers} layers, width {dim})"
    return ModelFile(path, header, prefix, layout, config, quant, description, family)


# --- VAEs ------------------------------------------------------------------------------------------------


def inspect_vae(path: str, what: str = "vae") -> ModelFile:
    """Detect a Wan2.1 or Wan2.2 VAE file and derive its diffusers config, or raise a message."""
    header = open_model_file(path, what)
    name = os.path.basename(path)
    prefix = _prefix_of(header, "decoder.middle.0.residual.0.gamma")
    layout = "wan"
    if prefix is None:
        prefix = _prefix_of(header, "decoder.mid_block.resnets.0.norm1.gamma")
        layout = "diffusers"
    if prefix is None:
        raise _wrong_slot(what, path, header, "vae", "a Wan VAE (wan_2.1_vae.safetensors or wan2.2_vae.safetensors)")
    shorts = {key[len(prefix):]: info for key, info in header.tensors.items() if key.startswith(prefix)}
    quant = plan_quantization(header, prefix, what)

    def dims(key: str):
        if key not in shorts:
            raise WanLeanError(f"{what}: '{name}' lacks '{key}'; the file is incomplete or not a Wan VAE.")
        return [int(d) for d in shorts[key].shape]

    if layout == "wan":
        version = "2.2" if "decoder.upsamples.0.upsamples.0.residual.2.weight" in shorts else "2.1"
        names = {"enc_in": "encoder.conv1.weight", "z": "conv2.weight", "dec_norm": "decoder.head.0.gamma", "dec_out": "decoder.head.2.weight"}
    else:
        version = "2.2" if "encoder.down_blocks.0.resnets.0.norm1.gamma" in shorts else "2.1"
        names = {"enc_in": "encoder.conv_in.weight", "z": "post_quant_conv.weight", "dec_norm": "decoder.norm_out.gamma", "dec_out": "decoder.conv_out.weight"}
    z_dim = dims(names["z"])[0]
    expected_z = 16 if version == "2.1" else 48
    if z_dim != expected_z:
        raise WanLeanError(
            f"{what}: '{name}' looks like a Wan{version} VAE but has {z_dim} latent channels (expected {expected_z}); "
            "it is not a released Wan VAE."
        )
    config = shipped_config("vae2.1" if version == "2.1" else "vae2.2")
    config.update(base_dim=dims(names["enc_in"])[0], z_dim=z_dim, in_channels=dims(names["enc_in"])[1], out_channels=dims(names["dec_out"])[0])
    if version == "2.2":
        config["decoder_base_dim"] = dims(names["dec_norm"])[0]
    description = f"Wan{version} VAE ({quant.format})"
    file = ModelFile(path, header, prefix, "wan" if layout == "wan" else "diffusers", config, quant, description, version)
    return file


# --- text encoders ---------------------------------------------------------------------------------------

_T5_Q = "encoder.block.0.layer.0.SelfAttention.q.weight"


def inspect_text_encoder(path: str, what: str = "text_encoder") -> ModelFile:
    """Detect ComfyUI's umT5-XXL text-encoder file (with `spiece_model` inside), or raise a message."""
    header = open_model_file(path, what)
    name = os.path.basename(path)
    prefix = _prefix_of(header, _T5_Q)
    if prefix is None:
        raise _wrong_slot(what, path, header, "text_encoder", f"the umT5-XXL text encoder Wan2.2 needs ({UMT5_FILES})")
    shorts = {key[len(prefix):]: info for key, info in header.tensors.items() if key.startswith(prefix)}
    if "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" not in shorts and any(
        k.startswith("encoder.block.1.") for k in shorts
    ):
        raise WanLeanError(
            f"{what}: '{name}' is a plain T5 text encoder (relative attention bias only in its first layer), as "
            f"used by Flux, SD3 or LTX-Video. Wan2.2 needs umT5-XXL ({UMT5_FILES})."
        )
    if "spiece_model" not in header.tensors:
        raise WanLeanError(
            f"{what}: '{name}' holds umT5 weights but no tokenizer (no 'spiece_model' tensor). Use ComfyUI's "
            f"text-encoder file ({UMT5_FILES}), which carries its tokenizer."
        )
    quant = plan_quantization(header, prefix, what)

    def dims(key: str):
        if key not in shorts:
            raise WanLeanError(f"{what}: '{name}' lacks '{key}'; the file is incomplete.")
        return [int(d) for d in shorts[key].shape]

    vocab_size, d_model = dims("shared.weight")
    buckets, num_heads = dims("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    inner = dims(_T5_Q)[0]
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shorts
    d_ff = dims("encoder.block.0.layer.1.DenseReluDense.wi_0.weight" if gated else "encoder.block.0.layer.1.DenseReluDense.wi.weight")[0]
    layers = {int(k.split(".")[2]) for k in shorts if k.startswith("encoder.block.") and k.split(".")[2].isdigit()}
    config = shipped_config("umt5")
    config.update(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=inner // num_heads,
        d_ff=d_ff,
        num_layers=len(layers),
        num_heads=num_heads,
        relative_attention_num_buckets=buckets,
        feed_forward_proj="gated-gelu" if gated else "relu",
    )
    description = f"umT5 ({quant.format}, {len(layers)} layers, d_model {d_model})"
    return ModelFile(path, header, prefix, "hf", config, quant, description, "umt5")


# --- identity ----------------------------------------------------------------------------------------------

_SAMPLE_BYTES = 4096


def fingerprint(file: ModelFile) -> str:
    """A content id: names, dtypes, shapes and the first bytes of a few large tensors. Two copies of the same
    weights match; two different experts (same names and shapes) do not."""
    header = file.header
    digest = hashlib.sha256()
    for key in sorted(header.tensors):
        info = header.tensors[key]
        digest.update(f"{key}:{info.dtype}:{list(info.shape)};".encode())
    largest = sorted(header.tensors, key=lambda k: header.tensors[k].end - header.tensors[k].start, reverse=True)[:4]
    with open(header.path, "rb") as f:
        for key in sorted(largest):
            info = header.tensors[key]
            f.seek(header.data_offset + info.start)
            digest.update(f.read(min(_SAMPLE_BYTES, info.end - info.start)))
    return digest.hexdigest()[:24]
