"""Tiny files in the exact formats ComfyUI users have, written from tiny diffusers models.

Each writer inverts a diffusers converter (original Wan names from diffusers names) and checks the
inverse by running the forward converter on it: a writer that produced a wrong name fails here, not in
a test that loads it. Formats: fp32/fp16/bf16, plain fp8, `scaled_fp8` with real per-layer scales (the
`scale_weight` and `weight_scale` spellings, with `scale_input`), per-layer `comfy_quant` (tensors or
header metadata), NVFP4 (only to be refused), and LoRAs in ComfyUI/lightx2v, kohya/musubi and diffusers
layouts, the Wan2.2 lightx2v layout and the extracted layout (`.diff`, `.diff_b`, `.diff_m`).

The files ComfyUI users have are written in their exact layouts (FACTS.md, "The real files, header by
header"; asserted in tests/test_fixture_layouts.py): fp8_scaled experts quantize every Linear, `head.head`
and `time_projection.1` included, each with `scale_weight` and `scale_input`, the rest F16; the fp8_scaled
umT5 has `scale_weight` and no `scale_input`; both VAEs are F16; the lightx2v LoRA has F32 factors and an
8-byte `alpha` with alpha / rank = 1/8. The tiny models' weights are rounded to fp16 values when built, so
an F16 file holds exactly the in-memory model and exact comparisons stay exact.

The tiny transformers are 256 wide (two 128-wide heads, as every Wan model) with 2 layers; the VAEs use
the real level layout (`dim_mult=[1, 2, 4, 4]`, `num_res_blocks=2`) with few channels, and the real
latent channel counts (16 / 48) so detection sees what it sees in real files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .tiny_wan import TEXT_DIM

TINY_DIM = 256
QUANTIZABLE_TRANSFORMER = re.compile(
    r"^blocks\.\d+\.(self_attn|cross_attn)\.[qkvo]\.weight$|^blocks\.\d+\.ffn\.[02]\.weight$|^(text|time)_embedding\.[02]\.weight$"
    r"|^time_projection\.1\.weight$|^head\.head\.weight$"
)
QUANTIZABLE_UMT5 = re.compile(r"^encoder\.block\.\d+\.layer\.\d+\.(SelfAttention\.[qkvo]|DenseReluDense\.(wi_0|wi_1|wo))\.weight$")
FORMATS = (
    "fp32", "fp16", "bf16", "fp8", "fp8_scaled", "fp8_scaled_weight_scale", "comfy_quant", "comfy_quant_metadata", "nvfp4",
)


# --- tiny models -------------------------------------------------------------------------------------------
def tiny_transformer(channels: int = 16, seed: int = 0, num_layers: int = 2, dim: int = TINY_DIM):
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=dim // 128, attention_head_dim=128, in_channels=channels,
        out_channels=channels, text_dim=TEXT_DIM, freq_dim=32, ffn_dim=64, num_layers=num_layers,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    ).eval()
    with torch.no_grad():  # diffusers zero-inits nothing here, but make the modulation tables non-trivial
        for name, param in model.named_parameters():
            if "scale_shift_table" in name or name.endswith(("norm_q.weight", "norm_k.weight", "norm2.weight")):
                param.add_(torch.randn_like(param) * 0.1)
    return model


def tiny_vae(version: str = "2.1", seed: int = 0):
    """The real Wan2.1 / Wan2.2 VAE layout with few channels, and the real latent statistics."""
    import torch
    from diffusers import AutoencoderKLWan

    from wanlean.video.loaders.comfy_files.detect import shipped_config

    torch.manual_seed(seed)
    config = shipped_config("vae2.1" if version == "2.1" else "vae2.2")
    config.update(base_dim=8)
    if version == "2.2":
        config.update(decoder_base_dim=12)
    model = AutoencoderKLWan.from_config(config).eval()
    with torch.no_grad():  # RMS_norm gammas start at 1; vary them so a swapped norm shows
        for name, param in model.named_parameters():
            if name.endswith("gamma"):
                param.add_(torch.randn_like(param) * 0.1)
    return model


# --- inverse key maps --------------------------------------------------------------------------------------
_TRANSFORMER_INVERSE = [
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),  # diffusers norm2 is Wan's cross-attention norm3
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
]


def _apply(rules, name: str) -> str:
    for pattern, replacement in rules:
        name = re.sub(pattern, replacement, name)
    return name


def original_transformer_names(model) -> dict[str, str]:
    """{diffusers name: original Wan name}, checked against diffusers' forward converter."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    names = {key: _apply(_TRANSFORMER_INVERSE, key) for key in model.state_dict()}
    forward = convert_wan_transformer_to_diffusers({original: original for original in names.values()})
    assert {new: old for new, old in forward.items()} == {key: names[key] for key in names}, "inverse transformer map is wrong"
    return names


_RESIDUAL_INVERSE = {
    "norm1.gamma": "residual.0.gamma", "conv1.weight": "residual.2.weight", "conv1.bias": "residual.2.bias",
    "norm2.gamma": "residual.3.gamma", "conv2.weight": "residual.6.weight", "conv2.bias": "residual.6.bias",
    "conv_shortcut.weight": "shortcut.weight", "conv_shortcut.bias": "shortcut.bias",
}
_VAE_FIXED_INVERSE = {
    "encoder.conv_in": "encoder.conv1", "decoder.conv_in": "decoder.conv1", "quant_conv": "conv1", "post_quant_conv": "conv2",
    "encoder.norm_out": "encoder.head.0", "encoder.conv_out": "encoder.head.2",
    "decoder.norm_out": "decoder.head.0", "decoder.conv_out": "decoder.head.2",
}


def _vae_inverse(name: str, version: str) -> str:
    module, _, attr = name.rpartition(".")
    if module in _VAE_FIXED_INVERSE:
        return f"{_VAE_FIXED_INVERSE[module]}.{attr}"
    match = re.match(r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)$", name)
    if match:
        side, index, rest = match.groups()
        return f"{side}.middle.{int(index) * 2}.{_RESIDUAL_INVERSE[rest]}"
    match = re.match(r"^(encoder|decoder)\.mid_block\.attentions\.0\.(.+)$", name)
    if match:
        return f"{match.group(1)}.middle.1.{match.group(2)}"
    if version == "2.2":
        match = re.match(r"^(encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", name)
        if match:
            side, direction, level, index, rest = match.groups()
            return f"{side}.{direction}samples.{level}.{direction}samples.{index}.{_RESIDUAL_INVERSE[rest]}"
        match = re.match(r"^(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(down|up)sampler\.(.+)$", name)
        if match:
            side, direction, level, _, rest = match.groups()
            samples = f"{side}.{direction}samples.{level}.{direction}samples"
            # the resampler is the last entry of its level: num_res_blocks (encoder) or num_res_blocks + 1
            return f"{samples}.{2 if side == 'encoder' else 3}.{rest}"
        raise AssertionError(f"no inverse for {name}")
    match = re.match(r"^encoder\.down_blocks\.(\d+)\.(.+)$", name)
    if match:
        index, rest = match.groups()
        return f"encoder.downsamples.{index}.{_RESIDUAL_INVERSE.get(rest, rest)}"
    match = re.match(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", name)
    if match:
        level, index, rest = match.groups()
        return f"decoder.upsamples.{int(level) * 4 + int(index)}.{_RESIDUAL_INVERSE[rest]}"
    match = re.match(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)$", name)
    if match:
        level, rest = match.groups()
        return f"decoder.upsamples.{int(level) * 4 + 3}.{rest}"
    raise AssertionError(f"no inverse for {name}")


def original_vae_names(model, version: str) -> dict[str, str]:
    """{diffusers name: original name} for the Wan2.1 or Wan2.2 VAE, checked against the forward maps
    (diffusers' converter for Wan2.1, ours for Wan2.2; both are also checked against ComfyUI's modules)."""
    from wanlean.video.loaders.comfy_files.keymaps import vae_map

    names = {key: _vae_inverse(key, version) for key in model.state_dict()}
    forward = vae_map(list(names.values()), version)
    assert {old: new for old, new in forward.items()} == {old: new for new, old in names.items()}, "inverse VAE map is wrong"
    return names


# --- formats ---------------------------------------------------------------------------------------------
def encode_format(tensors: dict, fmt: str, quantizable: re.Pattern, input_scales: bool = True) -> tuple[dict, dict]:
    """(tensors, header metadata) of `tensors` (original names, float) written as `fmt`. In the fp8 formats the
    tensors that are not quantized are F16, as in the real files; `input_scales` False writes no
    `scale_input` (the real umT5 file has none)."""
    import torch

    from wanlean.video.loaders.comfy_files.quant import quantize_fp8

    metadata: dict = {}
    out: dict = {}
    float_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(fmt, torch.float16)
    layers = {}
    first = True
    for name, value in tensors.items():
        value = value.detach().contiguous()
        if not quantizable.search(name) or fmt in ("fp32", "fp16", "bf16"):
            out[name] = value.to(float_dtype) if value.is_floating_point() else value
            continue
        layer = name[: -len(".weight")]
        if fmt == "fp8":
            out[name] = value.to(torch.float8_e4m3fn)
        elif fmt == "nvfp4":
            out[name] = torch.zeros((value.shape[0], value.shape[1] // 2), dtype=torch.uint8)
            out[f"{layer}.weight_scale"] = torch.ones((value.shape[0], value.shape[1] // 16), dtype=torch.float8_e4m3fn)
            out[f"{layer}.weight_scale_2"] = torch.ones((), dtype=torch.float32)
            layers[layer] = {"format": "nvfp4"}
        else:
            weight, scale = quantize_fp8(value)
            out[name] = weight
            if fmt == "fp8_scaled":
                out[f"{layer}.scale_weight"] = scale
                if input_scales:  # the real experts carry one on every fp8 layer; it must not change the weight
                    out[f"{layer}.scale_input"] = torch.tensor(1.0)
            else:
                out[f"{layer}.weight_scale"] = scale
                if first and fmt != "fp8_scaled_weight_scale":
                    out[f"{layer}.input_scale"] = torch.tensor(0.5)
            layers[layer] = {"format": "float8_e4m3fn"}
        first = False
    if fmt == "fp8_scaled":
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    if fmt in ("comfy_quant", "nvfp4"):
        for layer, conf in layers.items():
            out[f"{layer}.comfy_quant"] = torch.tensor(list(json.dumps(conf).encode()), dtype=torch.uint8)
    if fmt == "comfy_quant_metadata":
        metadata["_quantization_metadata"] = json.dumps({"format_version": "1.0", "layers": layers})
    return out, metadata


def save(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata or None)
    return path


def write_transformer_file(path: Path, model, fmt: str = "fp16", prefix: str = "") -> Path:
    """`model` (diffusers) as a ComfyUI diffusion-model file in original Wan names."""
    names = original_transformer_names(model)
    state = {names[key]: value for key, value in model.state_dict().items()}
    tensors, metadata = encode_format(state, fmt, QUANTIZABLE_TRANSFORMER)
    return save(path, {prefix + key: value for key, value in tensors.items()}, metadata)


def write_vae_file(path: Path, model, version: str, fmt: str = "fp16") -> Path:
    names = original_vae_names(model, version)
    tensors, metadata = encode_format({names[k]: v for k, v in model.state_dict().items()}, fmt, re.compile("^$"))
    return save(path, tensors, metadata)


def write_full_width_vae22(path: Path, seed: int = 0) -> Path:
    """The Wan2.2 VAE at its real widths (base 160, decoder 256, z 48; 705M parameters, F16, 1,409,400,960
    bytes as the real `wan2.2_vae.safetensors`) with random weights: ComfyUI builds this VAE only at its real
    width. Built on the meta device and filled from one shared pool of normal numbers (slices at varied
    offsets, scaled by 1/sqrt(fan_in); norm gammas near 1), which takes seconds instead of the ~25 s of
    drawing 705M numbers on 2 cores."""
    import math

    import torch
    from diffusers import AutoencoderKLWan

    from wanlean.video.loaders.comfy_files.build import empty_weights
    from wanlean.video.loaders.comfy_files.detect import shipped_config

    with empty_weights():
        model = AutoencoderKLWan.from_config(shipped_config("vae2.2"))
    names = original_vae_names(model, "2.2")
    generator = torch.Generator().manual_seed(seed)
    largest = max(p.numel() for p in model.parameters())
    pool = torch.randn(largest + (1 << 20), generator=generator).to(torch.float16)
    offsets = torch.randint(0, 1 << 20, (len(names),), generator=generator).tolist()
    tensors = {}
    for (name, param), offset in zip(model.named_parameters(), offsets):
        values = pool[offset: offset + param.numel()].reshape(param.shape)
        if name.endswith("gamma"):
            values = 1 + 0.1 * values
        elif param.dim() > 1:
            values = values * (1 / math.sqrt(param[0].numel()))
        else:
            values = 0.02 * values
        tensors[names[name]] = values.contiguous()
    return save(path, tensors)


def write_umt5_file(path: Path, encoder, spiece_bytes: bytes | None, fmt: str = "fp16", prefix: str = "") -> Path:
    """A ComfyUI umT5 text-encoder file: Hugging Face T5 names, no tied `encoder.embed_tokens.weight`, and the
    sentencepiece model as the uint8 tensor `spiece_model`."""
    import torch

    state = {k: v for k, v in encoder.state_dict().items() if k != "encoder.embed_tokens.weight"}
    tensors, metadata = encode_format(state, fmt, QUANTIZABLE_UMT5, input_scales=False)
    tensors = {prefix + key: value for key, value in tensors.items()}
    if spiece_bytes is not None:
        tensors["spiece_model"] = torch.frombuffer(bytearray(spiece_bytes), dtype=torch.uint8).clone()
    return save(path, tensors, metadata)


# --- LoRAs -----------------------------------------------------------------------------------------------
LORA_TARGETS = [f"{attn}.{proj}" for attn in ("self_attn", "cross_attn") for proj in "qkvo"] + ["ffn.0", "ffn.2"]


def lora_factors(model, rank: int = 4, seed: int = 0, scale: float = 0.05) -> dict[str, tuple]:
    """{original layer name: (down [r, in], up [out, r])} for every LoRA target of every block."""
    import torch

    names = original_transformer_names(model)
    shapes = {names[k][: -len(".weight")]: v.shape for k, v in model.state_dict().items() if k.endswith(".weight")}
    generator = torch.Generator().manual_seed(seed)
    factors = {}
    for block in range(model.config.num_layers):
        for target in LORA_TARGETS:
            layer = f"blocks.{block}.{target}"
            out_features, in_features = shapes[layer]
            down = torch.randn((rank, in_features), generator=generator) * scale
            up = torch.randn((out_features, rank), generator=generator) * scale
            factors[layer] = (down, up)
    return factors


LIGHTX2V_RANK = 64  # the real Wan2.2 lightx2v pair: rank 64, alpha 8 (alpha / rank = 1/8)


def lightx2v_lora_tensors(model, seed: int = 0, alpha_dtype: str = "F64") -> dict:
    """The Wan2.2 lightx2v 4-step LoRA layout: `diffusion_model.blocks.N.<q/k/v/o/ffn.0/ffn.2>.lora_down/lora_up`
    F32 at rank 64 and an 8-byte scalar `.alpha` (F64, or I64 in `alpha_dtype` "I64") with alpha / rank = 1/8."""
    import torch

    alpha = torch.tensor(LIGHTX2V_RANK // 8, dtype=torch.float64 if alpha_dtype == "F64" else torch.int64)
    tensors = {}
    for layer, (down, up) in lora_factors(model, LIGHTX2V_RANK, seed, scale=0.12).items():
        tensors[f"diffusion_model.{layer}.lora_down.weight"] = down.to(torch.float32)
        tensors[f"diffusion_model.{layer}.lora_up.weight"] = up.to(torch.float32)
        tensors[f"diffusion_model.{layer}.alpha"] = alpha.clone()
    return tensors


def extracted_lora_tensors(model, seed: int = 0, rank: int = 4, head_diff_b: bool = True) -> dict:
    """An extracted LoRA (LightX2V's extractor, as the Wan2.1 lightx2v distill LoRAs): `lora_down`/`lora_up`
    without alpha for the blocks' big Linears; `.diff` for every other weight (norms, `head.head`,
    `patch_embedding`, the embeddings, `time_projection.1`) and for one block Linear ("any layer"); `.diff_b`
    for every bias; `.diff_m` for each block's and the head's modulation (`blocks.N.modulation` →
    `blocks.N.diff_m`). `head_diff_b` False leaves out `head.head.diff_b` (a file diffusers fails on)."""
    import torch

    generator = torch.Generator().manual_seed(seed + 100)
    factors = lora_factors(model, rank, seed)
    tensors = {}
    for layer, (down, up) in factors.items():
        if layer == "blocks.0.cross_attn.k":
            continue  # this one comes as a full `.diff` below
        tensors[f"diffusion_model.{layer}.lora_down.weight"] = down
        tensors[f"diffusion_model.{layer}.lora_up.weight"] = up
    names = original_transformer_names(model)
    for key, value in model.state_dict().items():
        original = names[key]
        if original.endswith(".weight") and (original[: -len(".weight")] not in factors or original.startswith("blocks.0.cross_attn.k.")):
            delta_key = original[: -len(".weight")] + ".diff"
        elif original.endswith(".bias"):
            delta_key = original[: -len(".bias")] + ".diff_b"
        elif original.endswith("modulation"):
            delta_key = original[: -len(".modulation")] + ".diff_m"
        else:
            continue
        if delta_key == "head.head.diff_b" and not head_diff_b:
            continue
        size = 0.2 if "norm" in delta_key else 0.05  # norm weights are near 1: a larger delta shows in the output
        tensors[f"diffusion_model.{delta_key}"] = torch.randn(value.shape, generator=generator) * size
    return tensors


def write_lora_file(path: Path, model, layout: str = "comfy", rank: int = 4, seed: int = 0, alpha: float | None = None,
                    bias_layer: str | None = None, **options) -> Path:
    """A LoRA for `model` in `layout`: "comfy" (ComfyUI/lightx2v: `diffusion_model.<wan name>.lora_down/lora_up`
    + `alpha` + optional `diff_b`), "kohya" (musubi: `lora_unet_<wan_name_with_underscores>`), "diffusers"
    (`transformer.<diffusers name>.lora_A/lora_B`, alpha folded in), "lightx2v" (the real Wan2.2 lightx2v
    layout, `lightx2v_lora_tensors`) or "extracted" (`extracted_lora_tensors`). The same `seed` gives the
    same LoRA in the first three layouts."""
    import torch

    if layout == "lightx2v":
        return save(path, lightx2v_lora_tensors(model, seed, **options))
    if layout == "extracted":
        return save(path, extracted_lora_tensors(model, seed, rank, **options))
    factors = lora_factors(model, rank, seed)
    alpha = float(rank) if alpha is None else float(alpha)
    tensors = {}
    if layout == "diffusers":
        inverse = {v[: -len(".weight")]: k[: -len(".weight")] for k, v in original_transformer_names(model).items() if k.endswith(".weight")}
        for layer, (down, up) in factors.items():
            tensors[f"transformer.{inverse[layer]}.lora_A.weight"] = down * (alpha / rank)
            tensors[f"transformer.{inverse[layer]}.lora_B.weight"] = up
        return save(path, tensors)
    for layer, (down, up) in factors.items():
        key = f"diffusion_model.{layer}" if layout == "comfy" else "lora_unet_" + layer.replace(".", "_")
        tensors[f"{key}.lora_down.weight"] = down
        tensors[f"{key}.lora_up.weight"] = up
        tensors[f"{key}.alpha"] = torch.tensor(alpha)
    if bias_layer is not None and layout == "comfy":
        out_features = factors[bias_layer][1].shape[0]
        tensors[f"diffusion_model.{bias_layer}.diff_b"] = torch.randn(out_features, generator=torch.Generator().manual_seed(seed + 1)) * 0.05
    return save(path, tensors)


# --- one tiny set per test process ---------------------------------------------------------------------------
def round_to_fp16(model):
    """Every floating weight rounded to the nearest fp16 value, in place: an F16 file of the model then holds
    it exactly (the real files store their full-precision tensors as F16)."""
    import torch

    with torch.no_grad():
        for tensor in model.parameters():  # buffers (RoPE tables) are recomputed by every loader, never saved
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(torch.float16).to(tensor.dtype))
    return model


class TinySet:
    """Tiny models (A14B experts, TI2V-5B, both VAEs, umT5 with its tokenizer) built once per process, and
    their files written on first request into one temporary folder."""

    def __init__(self):
        import tempfile

        import sentencepiece as spm

        from .tiny import train_spiece
        from .tiny_wan import tiny_text_encoder

        self.root = Path(tempfile.mkdtemp(prefix="wanlean-comfy-files-"))
        self.spiece = train_spiece()
        self.vocab = spm.SentencePieceProcessor(model_proto=self.spiece).get_piece_size()
        self.high = tiny_transformer(16, seed=1)
        self.low = tiny_transformer(16, seed=2)
        self.ti2v = tiny_transformer(48, seed=3)
        self.vae21 = tiny_vae("2.1", seed=4)
        self.vae22 = tiny_vae("2.2", seed=5)
        self.text_encoder = tiny_text_encoder(self.vocab, seed=6)
        for model in (self.high, self.low, self.ti2v, self.vae21, self.vae22, self.text_encoder):
            round_to_fp16(model)
        self._written: dict = {}  # key (every parameter) -> path
        self._owners: dict = {}  # file name -> the key it was written for

    def _once(self, key, name: str, write):
        """The file for `key` (every parameter that shapes its content), written on first request. One name
        never serves two keys: a second set of parameters under a name already written is an error, not a
        silently reused file whose content depends on which test asked first."""
        owner = self._owners.setdefault(name, key)
        if owner != key:
            raise ValueError(f"tiny file name {name!r} already holds {owner}; {key} needs its own name")
        if key not in self._written:
            self._written[key] = write()
        return str(self._written[key])

    def transformer(self, which: str = "high", fmt: str = "fp16", prefix: str = "", name: str | None = None) -> str:
        model = {"high": self.high, "low": self.low, "ti2v": self.ti2v}[which]
        name = name or f"wan_{which}_noise_{fmt}{'_prefixed' if prefix else ''}.safetensors"
        return self._once(("t", which, fmt, prefix, name), name, lambda: write_transformer_file(self.root / name, model, fmt, prefix))

    def vae(self, version: str = "2.1", fmt: str = "fp16") -> str:
        model = self.vae21 if version == "2.1" else self.vae22
        name = f"wan{version}_vae_{fmt}.safetensors"
        return self._once(("v", version, fmt), name, lambda: write_vae_file(self.root / name, model, version, fmt))

    def vae22_full_width(self) -> str:
        name = "wan2.2_vae_full_width.safetensors"
        return self._once(("v", "2.2", "full width"), name, lambda: write_full_width_vae22(self.root / name))

    def umt5(self, fmt: str = "fp16", with_tokenizer: bool = True) -> str:
        name = f"umt5_tiny_{fmt}{'' if with_tokenizer else '_notok'}.safetensors"
        spiece = self.spiece if with_tokenizer else None
        return self._once(("u", fmt, with_tokenizer), name, lambda: write_umt5_file(self.root / name, self.text_encoder, spiece, fmt))

    def lora(self, which: str = "high", layout: str = "comfy", seed: int = 0, **kw) -> str:
        model = {"high": self.high, "low": self.low, "ti2v": self.ti2v}[which]
        options = tuple(sorted(kw.items()))  # rank, alpha, bias_layer: each changes the file
        name = f"lora_{which}_{layout}_{seed}" + "".join(f"_{key}{value}" for key, value in options) + ".safetensors"
        return self._once(("l", which, layout, seed, options), name, lambda: write_lora_file(self.root / name, model, layout, seed=seed, **kw))

    def path(self, name: str) -> Path:
        return self.root / name


_TINY: list = []


def tiny_set() -> TinySet:
    if not _TINY:
        _TINY.append(TinySet())
    return _TINY[0]


def diffusers_folder(tiny: TinySet, kind: str = "A14B") -> str:
    """The same tiny models saved as a diffusers WanPipeline folder (what WanLeanLoadDiffusers reads)."""
    from diffusers import UniPCMultistepScheduler, WanPipeline
    from transformers import AutoTokenizer

    from .tiny_wan import tokenizer_folder

    def write():
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder(tiny.root / "tokenizer", tiny.spiece)))
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0)
        common = dict(tokenizer=tokenizer, text_encoder=tiny.text_encoder, scheduler=scheduler)
        if kind == "A14B":
            pipe = WanPipeline(**common, vae=tiny.vae21, transformer=tiny.high, transformer_2=tiny.low, boundary_ratio=0.875)
        else:
            pipe = WanPipeline(**common, vae=tiny.vae22, transformer=tiny.ti2v, expand_timesteps=True)
        folder = tiny.root / f"diffusers-{kind}"
        pipe.save_pretrained(str(folder), safe_serialization=True)
        return folder

    return tiny._once(("d", kind), f"diffusers-{kind}", write)
