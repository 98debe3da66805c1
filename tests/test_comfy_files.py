"""Loading ComfyUI's single files: the weights, the text encoder and the frames equal what the diffusers
models give, for every format (exact after dtype for fp32/fp16/bf16, within fp8 error for fp8 — and never
the raw fp8 numbers)."""

import pytest
import torch

from wanlean.video.loaders.comfy_files.detect import inspect_text_encoder
from wanlean.video.loaders.comfy_files.load import load_comfy_files
from wanlean.video.loaders.comfy_files.quant import Fp8Linear, dequantize
from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
from wanlean.video.embedding_cache import EmbeddingCache, MemoryCache
from wanlean.errors import WanLeanError
from wanlean.video.sampler import generate
from wltest.comfy_formats import QUANTIZABLE_TRANSFORMER, diffusers_folder, original_transformer_names, tiny_set
from wltest.tiny_wan import tiny_request

FP8_FORMATS = ["fp8_scaled", "fp8_scaled_weight_scale", "comfy_quant", "comfy_quant_metadata"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_set()


def load_a14b(tiny, fmt="fp32", dtype="fp32", prefix="", **options):
    return load_comfy_files(
        tiny.transformer("high", fmt, prefix), tiny.transformer("low", fmt), tiny.umt5(options.pop("te_format", "fp32")),
        tiny.vae("2.1"), dtype=dtype, device="cpu", **options,
    )


def weights(module) -> dict:
    """Every weight as the model computes with it (Fp8Linear dequantized)."""
    out = {}
    for name, sub in module.named_modules():
        if isinstance(sub, Fp8Linear):
            out[f"{name}.weight"] = dequantize(sub.weight, sub.weight_scale, sub.compute_dtype)
            if sub.bias is not None:
                out[f"{name}.bias"] = sub.bias
    for name, tensor in module.state_dict().items():
        if not name.endswith("weight_scale"):
            out.setdefault(name, tensor)
    return out


def request(**overrides):
    return tiny_request(**{"steps": 3, **overrides})


# --- weights ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, dtype", [("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_float_files_load_to_the_diffusers_weights_exactly(tiny, fmt, dtype):
    session = load_a14b(tiny, fmt, prefix="model.diffusion_model.")
    for loaded, original in ((session.transformer, tiny.high), (session.transformer_2, tiny.low)):
        got, want = loaded.state_dict(), original.state_dict()
        assert set(got) == set(want)
        for name in want:
            assert torch.equal(got[name], want[name].to(dtype).to(torch.float32)), name
    assert all(torch.equal(a, b) for a, b in zip(session.vae.state_dict().values(), tiny.vae21.state_dict().values()))


def test_bf16_load_matches_diffusers_from_pretrained_dtype_by_dtype(tiny):
    """Same dtypes per parameter as diffusers (norms, modulation, time embedder kept fp32) and same values."""
    pytest.importorskip("accelerate", reason="diffusers loads a bf16 model with fp32 modules only with accelerate")
    from diffusers import WanTransformer3DModel

    session = load_a14b(tiny, "fp32", dtype="bf16")
    reference = WanTransformer3DModel.from_pretrained(diffusers_folder(tiny, "A14B"), subfolder="transformer", torch_dtype=torch.bfloat16)
    got, want = session.transformer.state_dict(), reference.state_dict()
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert torch.equal(got[name], want[name]), name
    assert got["blocks.0.norm2.weight"].dtype == torch.float32 and got["blocks.0.attn1.to_q.weight"].dtype == torch.bfloat16


@pytest.mark.parametrize("fmt", FP8_FORMATS + ["fp8"])
def test_fp8_files_load_within_fp8_error_and_never_raw(tiny, fmt):
    from safetensors.torch import load_file

    session = load_a14b(tiny, fmt)
    raw_file = load_file(tiny.transformer("high", fmt))
    names = original_transformer_names(tiny.high)
    got = session.transformer.state_dict()
    checked = 0
    for name, original in tiny.high.state_dict().items():
        stored = raw_file[names[name]]
        if not QUANTIZABLE_TRANSFORMER.search(names[name]):
            assert torch.equal(got[name], original), name  # everything else was stored at full precision
            continue
        assert stored.dtype == torch.float8_e4m3fn
        error = (got[name] - original).abs()
        # e4m3 rounds to 3 mantissa bits (relative 2^-4); below its smallest normal number the step is fixed:
        # 2^-9 × scale, and an unscaled file has scale 1
        step = 2**-9 if fmt == "fp8" else original.abs().max() / 448 * 2**-9
        assert torch.all(error <= original.abs() * 2**-4 + step), name
        if fmt != "fp8":  # a scaled file: the loaded weight is not the stored number
            raw_error = (stored.to(torch.float32) - original).abs().max()
            assert raw_error > 50 * error.max(), f"{name}: loaded the raw fp8 values"
        checked += 1
    assert checked == 2 * 10 + 6  # 2 blocks × (8 attention + 2 ffn) + text/time embeddings, time_projection.1, head.head


def test_scaled_fp8_output_close_to_full_precision_and_far_from_raw(tiny):
    """What a user sees: the fp8_scaled expert's prediction is close to the fp32 one. A loader that ignores
    the scales (as diffusers' from_single_file does) produces noise."""
    torch.manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, 16, 2, 4, 4), timestep=torch.tensor([700.0]), encoder_hidden_states=torch.randn(1, 12, 32))
    with torch.no_grad():
        reference = tiny.high(**inputs, return_dict=False)[0]
        scaled = load_a14b(tiny, "fp8_scaled").transformer(**inputs, return_dict=False)[0]
    assert (scaled - reference).abs().max() < 0.1 * reference.abs().max()


@pytest.mark.parametrize("fmt", ["fp8_scaled", "fp16"])
def test_fp8_storage_keeps_float8_and_computes_like_dequantized(tiny, fmt):
    as_file = load_a14b(tiny, fmt)
    stored = load_a14b(tiny, fmt, weight_storage="fp8")
    linears = [m for m in stored.transformer.modules() if isinstance(m, Fp8Linear)]
    assert len(linears) == 2 * 10 and all(m.weight.dtype == torch.float8_e4m3fn for m in linears)
    assert not any(isinstance(m, Fp8Linear) for m in stored.transformer.condition_embedder.modules())
    block_bytes = lambda t: sum(p.numel() * p.element_size() for n, p in t.named_parameters() if n.startswith("blocks.") and n.endswith("weight") and p.dim() == 2)
    assert block_bytes(stored.transformer) * 4 == block_bytes(as_file.transformer)  # 1 byte/weight vs fp32
    torch.manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, 16, 2, 4, 4), timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 12, 32))
    with torch.no_grad():
        a = as_file.transformer(**inputs, return_dict=False)[0]
        b = stored.transformer(**inputs, return_dict=False)[0]
    if fmt == "fp8_scaled":
        assert torch.equal(a, b)  # same dequantized weights, only kept compressed
    else:
        assert (a - b).abs().max() < 0.05 * a.abs().max()  # quantized to fp8 on load


# --- VAE, tokenizer, text encoder ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_vae_decodes_identically_after_the_key_mapping(tiny, version):
    high = tiny.transformer("high" if version == "2.1" else "ti2v")
    low = tiny.transformer("low") if version == "2.1" else None
    session = load_comfy_files(high, low, tiny.umt5(), tiny.vae(version), device="cpu", dtype="fp32")
    original = tiny.vae21 if version == "2.1" else tiny.vae22
    channels = 16 if version == "2.1" else 48
    latents = torch.randn(1, channels, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(session.vae.decode(latents, return_dict=False)[0], original.decode(latents, return_dict=False)[0])
    assert session.vae.config.latents_mean == original.config.latents_mean


def test_tokenizer_from_spiece_model_counts_like_sentencepiece(tiny):
    import sentencepiece as spm

    session = load_a14b(tiny)
    processor = spm.SentencePieceProcessor(model_proto=tiny.spiece)
    for text in ["a red fox runs through deep snow", "一只红色的狐狸在雪地里奔跑", "mixed 中文 and English, 24mm lens", ""]:
        assert session.text_encoder.token_ids(text) == processor.encode(text) + [1]
    assert not session.text_encoder.loaded  # tokenizing never reads the encoder weights


@pytest.mark.parametrize("fmt", ["fp32", "fp16", "fp8_scaled"])
def test_text_encoder_from_the_file_equals_the_original(tiny, fmt):
    session = load_a14b(tiny, te_format=fmt)
    encoder = session.text_encoder.encoder()
    assert encoder.encoder.embed_tokens.weight is encoder.shared.weight
    ids = torch.tensor([session.text_encoder.token_ids("a red fox runs through deep snow")])
    with torch.no_grad():
        got = encoder(ids).last_hidden_state
        want = tiny.text_encoder(ids).last_hidden_state
    if fmt == "fp32":
        assert torch.equal(got, want)
    else:
        assert (got - want).abs().max() < (0.02 if fmt == "fp16" else 0.15) * want.abs().max()


def test_text_encoder_fp8_storage_and_identity(tiny):
    session = load_a14b(tiny, te_format="fp8_scaled", weight_storage="fp8")
    encoder = session.text_encoder.encoder()
    kinds = {name.rsplit(".", 1)[-1]: type(m).__name__ for name, m in encoder.named_modules() if name.startswith("encoder.block.0.")}
    assert kinds["q"] == "Fp8Linear" and kinds["wo"] == "Linear"  # T5 casts wo's input to wo.weight.dtype
    other = load_a14b(tiny, te_format="fp8_scaled")
    assert session.text_encoder.identity != other.text_encoder.identity
    assert other.text_encoder.identity == load_a14b(tiny, te_format="fp8_scaled").text_encoder.identity
    assert inspect_text_encoder(tiny.umt5("fp8_scaled")).quant.format == "fp8_scaled"


# --- the whole pipeline ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["A14B", "TI2V-5B"])
def test_frames_from_single_files_equal_frames_from_the_diffusers_folder(tiny, kind):
    folder = load_diffusers_folder(diffusers_folder(tiny, kind), dtype="fp32", device="cpu")
    if kind == "A14B":
        files = load_a14b(tiny, "fp32")
    else:
        files = load_comfy_files(tiny.transformer("ti2v", "fp32"), "none", tiny.umt5("fp32"), tiny.vae("2.2"), dtype="fp32", device="cpu")
    assert files.model_type == folder.model_type == kind
    assert (files.boundary_ratio, files.expand_timesteps) == (folder.boundary_ratio, folder.expand_timesteps)
    expected = generate(folder, request())
    got = generate(files, request())
    assert got.frames.shape == expected.frames.shape
    assert torch.allclose(got.frames, expected.frames, atol=1e-5)
    assert torch.allclose(got.latents, expected.latents, atol=1e-5)


def test_frames_from_fp8_scaled_files_are_close(tiny):
    folder = load_diffusers_folder(diffusers_folder(tiny, "A14B"), dtype="fp32", device="cpu")
    scaled = load_a14b(tiny, "fp8_scaled", te_format="fp8_scaled", weight_storage="fp8")
    expected = generate(folder, request(cfg_high=1.0, cfg_low=1.0))
    got = generate(scaled, request(cfg_high=1.0, cfg_low=1.0))
    assert (got.frames - expected.frames).abs().mean() < 0.02


def test_embedding_cache_hit_never_reads_the_encoder(tiny):
    cache = EmbeddingCache(MemoryCache())
    first = load_a14b(tiny, "fp32")
    generate(first, request(steps=1), cache=cache)
    assert first.text_encoder.loaded
    second = load_a14b(tiny, "fp32")
    generate(second, request(steps=1, seed=8), cache=cache)
    assert not second.text_encoder.loaded


def test_memory_modes_and_session_notes(tiny):
    session = load_a14b(tiny, "fp8_scaled", memory_mode="model_offload", weight_storage="fp8")
    session.check()
    assert session.memory_mode == "model_offload"
    assert session.extras["weight_storage"] == "fp8"
    assert "fp8_scaled" in session.extras["formats"]["high_noise_model"]
    assert session.source.startswith("ComfyUI files wan_high_noise_fp8_scaled")
    offloaded = generate(session, request(steps=2))
    on_device = generate(load_a14b(tiny, "fp8_scaled", memory_mode="gpu", weight_storage="fp8"), request(steps=2))
    assert torch.isfinite(offloaded.latents).all() and offloaded.latents.abs().max() > 0
    torch.testing.assert_close(offloaded.latents, on_device.latents, rtol=0, atol=1e-6)  # the mode moves weights, not results
    assert "memory model_offload" in offloaded.report and "ComfyUI files wan_high_noise_fp8_scaled" in offloaded.report


def test_text_encoder_device_option(tiny):
    """text_encoder_device "cpu" pins umT5 to the CPU in every memory mode (wanlean.video.memory reads it);
    "gpu" leaves it to the memory mode."""
    import dataclasses

    from wanlean.video import memory

    with pytest.raises(WanLeanError, match="text_encoder_device must be one of cpu, gpu"):
        load_a14b(tiny, text_encoder_device="tpu")
    assert load_a14b(tiny, text_encoder_device="gpu").extras["text_encoder_device"] is None
    session = load_a14b(tiny, text_encoder_device="cpu")
    assert session.extras["text_encoder_device"] == "cpu"
    on_gpu = dataclasses.replace(session, device=torch.device("cuda"), memory_mode="gpu")  # nothing is moved here
    encoder = on_gpu.text_encoder.encoder()
    with memory.text_encoder_placed(on_gpu, encoder) as device:
        assert device.type == "cpu" and next(encoder.parameters()).device.type == "cpu"
    assert encoder not in memory._big_modules(on_gpu)
