"""Weight formats: finding scales and markers, dequantizing, refusing NVFP4, and Fp8Linear."""

import pytest
import torch

from wanlean.video.loaders.comfy_files.detect import inspect_diffusion_model
from wanlean.video.loaders.comfy_files.quant import Fp8Linear, dequantize, plan_quantization, quantize_fp8
from wanlean.errors import WanLeanError
from wanlean.safetensors_header import read_header
from wltest.comfy_formats import save, tiny_set


def test_quantize_then_dequantize_is_within_fp8_error():
    weight = torch.randn(64, 48) * 0.02
    stored, scale = quantize_fp8(weight)
    assert stored.dtype == torch.float8_e4m3fn and scale.shape == ()
    restored = dequantize(stored, scale, torch.float32)
    # e4m3 keeps 3 mantissa bits: relative error ≤ 2^-4 for normal numbers
    assert torch.allclose(restored, weight, rtol=2**-4, atol=float(scale) * 2**-6)
    raw = stored.to(torch.float32)
    assert (raw - weight).abs().max() > 100 * (restored - weight).abs().max()  # the raw values are far off


def test_dequantize_multiplies_in_fp32_and_accepts_per_channel_scales():
    stored = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).to(torch.float8_e4m3fn)
    assert torch.equal(dequantize(stored, torch.tensor(0.5), torch.float32), torch.tensor([[0.5, 1.0], [1.5, 2.0]]))
    per_row = dequantize(stored, torch.tensor([1.0, 10.0]), torch.float32)
    assert torch.equal(per_row, torch.tensor([[1.0, 2.0], [30.0, 40.0]]))
    assert torch.equal(dequantize(stored, torch.tensor([[1.0], [10.0]]), torch.float32), per_row)
    assert dequantize(stored, None, torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_in_place_dequantize_equals_the_fp32_product_rounded_once(fp8, dtype):
    """The memory-saving path (cast, then multiply in place by a Python float) gives the very bits of
    (fp32 weight × fp32 scale) rounded to dtype, for every float8 value including subnormals."""
    every_value = torch.arange(256, dtype=torch.uint8).view(fp8)
    every_value = every_value[torch.isfinite(every_value.to(torch.float32))]
    for scale in (torch.tensor(1.7e-4), torch.tensor(3.0), torch.tensor(0.0123456789)):
        reference = (every_value.to(torch.float32) * scale).to(dtype)
        assert torch.equal(dequantize(every_value, scale, dtype), reference)


def test_quantize_in_chunks_equals_one_pass():
    weight = torch.randn(300, 70, dtype=torch.bfloat16)
    chunked = quantize_fp8(weight, chunk=1000)
    whole = quantize_fp8(weight, chunk=1 << 30)
    assert torch.equal(chunked[1], whole[1]) and torch.equal(chunked[0].view(torch.uint8), whole[0].view(torch.uint8))
    assert weight.dtype == torch.bfloat16 and torch.isfinite(weight).all()  # the input is left alone


def test_fp8_linear_equals_dequantize_then_linear():
    torch.manual_seed(0)
    weight, scale = quantize_fp8(torch.randn(32, 16) * 0.05)
    bias = torch.randn(32)
    x = torch.randn(3, 5, 16, dtype=torch.bfloat16)
    layer = Fp8Linear(weight, scale, bias, torch.bfloat16)
    reference = torch.nn.functional.linear(x, dequantize(weight, scale, torch.bfloat16), bias.to(torch.bfloat16))
    assert torch.equal(layer(x), reference)
    assert layer.weight.dtype == torch.float8_e4m3fn and layer.weight.element_size() == 1
    assert "storage=float8_e4m3fn" in repr(layer)


@pytest.mark.parametrize("fmt, label", [
    ("fp16", "fp16"), ("bf16", "bf16"), ("fp32", "fp32"), ("fp8", "fp8"), ("fp8_scaled", "fp8_scaled"),
    ("fp8_scaled_weight_scale", "fp8_scaled"), ("comfy_quant", "comfy_quant fp8"), ("comfy_quant_metadata", "comfy_quant fp8"),
])
def test_plan_finds_every_scale(fmt, label):
    tiny = tiny_set()
    header = read_header(tiny.transformer("high", fmt))
    plan = plan_quantization(header, "", "high_noise_model")
    assert plan.format == label
    if fmt in ("fp16", "bf16", "fp32", "fp8"):
        assert plan.weight_scales == {}
    else:
        quantized = [k for k, v in header.tensors.items() if v.dtype == "F8_E4M3" and k.endswith(".weight")]
        assert quantized and set(plan.weight_scales) == set(quantized)
        assert all(plan.weight_scales[k].endswith((".scale_weight", ".weight_scale")) for k in quantized)
    # markers, scales and comfy_quant entries are never loaded as weights
    assert not any(name.endswith(".weight") for name in plan.sidecar)


def test_nvfp4_is_refused_clearly():
    tiny = tiny_set()
    with pytest.raises(WanLeanError, match="NVFP4, which WanLean does not support yet.*fp8_scaled"):
        inspect_diffusion_model(tiny.transformer("high", "nvfp4"))


def test_unknown_comfy_quant_format_and_orphan_scale_are_refused(tmp_path):
    path = save(tmp_path / "odd.safetensors", {
        "blocks.0.q.weight": torch.zeros(4, 4, dtype=torch.uint8),
        "blocks.0.q.comfy_quant": torch.tensor(list(b'{"format": "int4_magic"}'), dtype=torch.uint8),
    })
    with pytest.raises(WanLeanError, match="int4_magic, which WanLean does not support yet"):
        plan_quantization(read_header(path), "", "high_noise_model")
    orphan = save(tmp_path / "orphan.safetensors", {"blocks.0.q.scale_weight": torch.tensor(1.0)})
    with pytest.raises(WanLeanError, match="scale 'blocks.0.q.scale_weight' without its weight"):
        plan_quantization(read_header(orphan), "", "high_noise_model")


@pytest.mark.parametrize("metadata, message", [
    ({"format_version": "1.0", "layers": {"blocks.0.q": "float8_e4m3fn"}},
     r"'_quantization_metadata' whose entry for layer 'blocks.0.q' is \"float8_e4m3fn\" \(str\), not an object with a 'format'"),
    ({"layers": ["blocks.0.q"]}, r"'_quantization_metadata' whose 'layers' is list, not an object"),
    ("{not json", r"'_quantization_metadata' that is not valid JSON"),
])
def test_quantization_metadata_of_another_shape_is_named(tmp_path, metadata, message):
    """A header the file's own tool wrote in another shape is named as such, not as a broken download."""
    import json

    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    path = save(tmp_path / "odd_metadata.safetensors", {"blocks.0.q.weight": torch.zeros(4, 4).to(torch.float8_e4m3fn)},
                {"_quantization_metadata": text})
    with pytest.raises(WanLeanError, match=message) as caught:
        plan_quantization(read_header(path), "", "high_noise_model")
    assert "download" not in str(caught.value)
    assert "odd_metadata.safetensors" in str(caught.value) and 'expected {"layers"' in str(caught.value)
