"""The tiny files the tests load are in the exact layouts of the files ComfyUI users have (FACTS.md, "The real
files, header by header"), so the paths real files take are the paths the tests take. Read from the headers
the tests' files really have:

- fp8_scaled experts: bare keys; every Linear F8_E4M3 — block q/k/v/o and ffn, `text_embedding.0/2`,
  `time_embedding.0/2`, `time_projection.1`, `head.head` — each with `.scale_weight` and `.scale_input`, both
  F32 `[]`; everything else F16; the marker `scaled_fp8` F8_E4M3 `[0]`; no `__metadata__`.
- fp8_scaled umT5: HF T5 names, no `encoder.embed_tokens.weight`, a relative attention bias in every block,
  all 7 Linears of a block F8 with `.scale_weight` and no `.scale_input` anywhere, `shared.weight` F16,
  `spiece_model` U8.
- both VAEs: bare original names, F16 only.
- the Wan2.2 lightx2v LoRA pair: `diffusion_model.blocks.N.<q/k/v/o/ffn.0/ffn.2>.lora_down/lora_up` F32 at rank
  64, `.alpha` an 8-byte scalar (F64 or I64) with alpha / rank = 1/8.
- an extracted LoRA: factors without alpha; `.diff` for norms, `head.head` and `patch_embedding`; `.diff_b` for
  biases; `.diff_m` for modulation.
"""

import re

import pytest

from wanlean.safetensors_header import read_header
from wltest.comfy_formats import TINY_DIM, tiny_set

EXPERT_LINEAR = re.compile(
    r"^(blocks\.\d+\.(self_attn|cross_attn)\.[qkvo]|blocks\.\d+\.ffn\.[02]|(text|time)_embedding\.[02]|time_projection\.1|head\.head)$"
)
UMT5_LINEAR = re.compile(r"^encoder\.block\.\d+\.layer\.\d+\.(SelfAttention\.[qkvo]|DenseReluDense\.(wi_0|wi_1|wo))$")


@pytest.fixture(scope="module")
def tiny():
    return tiny_set()


def layers_with(tensors: dict, suffix: str) -> set[str]:
    return {name[: -len(suffix)] for name in tensors if name.endswith(suffix)}


@pytest.mark.parametrize("which", ["high", "low"])
def test_fp8_scaled_experts_have_the_real_layout(tiny, which):
    header = read_header(tiny.transformer(which, "fp8_scaled"))
    tensors = header.tensors
    assert header.metadata == {} and not any(name.startswith(("model.", "diffusion_model.")) for name in tensors)
    fp8_layers = {name[: -len(".weight")] for name, info in tensors.items() if info.dtype == "F8_E4M3" and name.endswith(".weight")}
    linears = {name[: -len(".weight")] for name, info in tensors.items() if name.endswith(".weight") and len(info.shape) == 2}
    assert fp8_layers == linears == {layer for layer in linears if EXPERT_LINEAR.match(layer)}
    assert {"time_projection.1", "head.head", "text_embedding.0", "time_embedding.2"} <= fp8_layers
    assert len(fp8_layers) == 2 * 10 + 6
    for suffix in (".scale_weight", ".scale_input"):
        assert layers_with(tensors, suffix) == fp8_layers, suffix
        assert all(tensors[f"{layer}{suffix}"].dtype == "F32" and list(tensors[f"{layer}{suffix}"].shape) == [] for layer in fp8_layers)
    marker = tensors["scaled_fp8"]
    assert (marker.dtype, list(marker.shape)) == ("F8_E4M3", [0])
    sidecars = {f"{layer}{suffix}" for layer in fp8_layers for suffix in (".weight", ".scale_weight", ".scale_input")} | {"scaled_fp8"}
    rest = {name: info.dtype for name, info in tensors.items() if name not in sidecars}
    assert rest and set(rest.values()) == {"F16"}, {n: d for n, d in rest.items() if d != "F16"}
    for name in ("blocks.0.modulation", "head.modulation", "patch_embedding.weight", "blocks.1.norm3.weight",
                 "blocks.0.self_attn.norm_q.weight", "blocks.0.self_attn.q.bias", "head.head.bias"):
        assert rest[name] == "F16", name
    assert list(tensors["blocks.0.modulation"].shape) == [1, 6, TINY_DIM]


def test_fp8_scaled_umt5_has_the_real_layout(tiny):
    tensors = read_header(tiny.umt5("fp8_scaled")).tensors
    blocks = {int(name.split(".")[2]) for name in tensors if name.startswith("encoder.block.")}
    fp8_layers = {name[: -len(".weight")] for name, info in tensors.items() if info.dtype == "F8_E4M3" and name.endswith(".weight")}
    assert fp8_layers == {name[: -len(".weight")] for name in tensors if UMT5_LINEAR.match(name[: -len(".weight")])}
    assert len(fp8_layers) == 7 * len(blocks)  # q, k, v, o, wi_0, wi_1, wo: wo included
    assert layers_with(tensors, ".scale_weight") == fp8_layers
    assert not any(name.endswith((".scale_input", ".input_scale")) for name in tensors)
    assert all(f"encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight" in tensors for i in blocks)
    assert "encoder.embed_tokens.weight" not in tensors
    assert tensors["shared.weight"].dtype == "F16" and tensors["spiece_model"].dtype == "U8"
    others = {info.dtype for name, info in tensors.items()
              if name not in ("spiece_model", "scaled_fp8") and not name.endswith(".scale_weight") and name[: -len(".weight")] not in fp8_layers}
    assert others == {"F16"}


@pytest.mark.parametrize("version, marker", [("2.1", "decoder.middle.0.residual.0.gamma"), ("2.2", "decoder.upsamples.0.upsamples.0.residual.2.weight")])
def test_vaes_are_f16_with_bare_original_names(tiny, version, marker):
    tensors = read_header(tiny.vae(version)).tensors
    assert marker in tensors and "encoder.conv1.weight" in tensors
    assert {info.dtype for info in tensors.values()} == {"F16"}


@pytest.mark.parametrize("which, seed, alpha_dtype", [("high", 0, "F64"), ("low", 1, "I64")])
def test_lightx2v_lora_has_the_real_layout(tiny, which, seed, alpha_dtype):
    from safetensors.torch import load_file

    path = tiny.lora(which, "lightx2v", seed=seed, alpha_dtype=alpha_dtype)
    tensors = read_header(path).tensors
    layers = layers_with(tensors, ".alpha")
    assert len(layers) == 2 * 10 and all(re.fullmatch(r"diffusion_model\.blocks\.\d+\.(self_attn\.[qkvo]|cross_attn\.[qkvo]|ffn\.[02])", layer) for layer in layers)
    assert set(tensors) == {f"{layer}.{part}" for layer in layers for part in ("lora_down.weight", "lora_up.weight", "alpha")}
    values = load_file(path)
    for layer in layers:
        alpha = tensors[f"{layer}.alpha"]
        assert (alpha.dtype, list(alpha.shape), alpha.end - alpha.start) == (alpha_dtype, [], 8)
        down, up = tensors[f"{layer}.lora_down.weight"], tensors[f"{layer}.lora_up.weight"]
        assert down.dtype == up.dtype == "F32" and down.shape[0] == up.shape[1] == 64
        assert float(values[f"{layer}.alpha"]) / down.shape[0] == 1 / 8


@pytest.mark.parametrize("options", [{}, {"head_diff_b": False}])
def test_extracted_lora_has_the_extracted_layout(tiny, options):
    tensors = read_header(tiny.lora("high", "extracted", **options)).tensors
    names = [name[len("diffusion_model."):] for name in tensors]
    assert all(name.startswith("diffusion_model.") for name in tensors)
    assert not any(name.endswith(".alpha") for name in names)  # extracted factors carry no alpha
    diffs = {name for name in names if name.endswith(".diff")}
    assert {"blocks.0.norm3.diff", "blocks.0.self_attn.norm_q.diff", "head.head.diff", "patch_embedding.diff"} <= diffs
    assert {"blocks.0.diff_m", "blocks.1.diff_m", "head.diff_m"} == {name for name in names if name.endswith(".diff_m")}
    assert {"blocks.0.self_attn.q.diff_b", "blocks.0.norm3.diff_b", "patch_embedding.diff_b"} <= set(names)
    assert ("head.head.diff_b" in names) == options.get("head_diff_b", True)
    assert any(name.endswith(".lora_down.weight") for name in names)
