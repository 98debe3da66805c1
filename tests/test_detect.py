"""Detection from tensor names and shapes (never file names), and a clear message for every wrong file."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from wanlean.video.loaders.comfy_files.detect import classify, fingerprint, inspect_diffusion_model, inspect_text_encoder, inspect_vae
from wanlean.video.loaders.comfy_files.load import load_comfy_files, low_noise_partner
from wanlean.errors import WanLeanError
from wanlean.safetensors_header import read_header
from wltest.comfy_formats import save, tiny_set, tiny_transformer, write_transformer_file


@pytest.fixture(scope="module")
def tiny():
    return tiny_set()


def _variant(tmp_path, tiny, name, extra=None, drop=None):
    """A copy of the tiny high-noise file with tensors added or removed."""
    tensors = load_file(tiny.transformer("high", "fp16"))
    for key in drop or ():
        tensors.pop(key)
    tensors.update(extra or {})
    return str(save(tmp_path / name, tensors))


# --- what each file is ----------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_a14b_expert_detected_with_or_without_prefix(tiny, prefix):
    file = inspect_diffusion_model(tiny.transformer("high", "fp8_scaled", prefix=prefix))
    assert file.family == "A14B" and file.prefix == prefix and file.layout == "wan"
    assert file.config["num_layers"] == 2 and file.config["num_attention_heads"] == 2 and file.config["in_channels"] == 16
    assert file.config["text_dim"] == 32 and file.config["ffn_dim"] == 64
    assert "A14B expert (fp8_scaled" in file.description
    assert "scaled_fp8" not in file.names() and not any(n.endswith("scale_weight") for n in file.names())


def test_ti2v_5b_detected_and_configured_from_shapes(tiny):
    file = inspect_diffusion_model(tiny.transformer("ti2v"))
    assert file.family == "TI2V-5B" and file.config["in_channels"] == file.config["out_channels"] == 48


def test_shipped_configs_are_the_real_models():
    from wanlean.video.loaders.comfy_files.detect import shipped_config

    a14b, ti2v = shipped_config("A14B"), shipped_config("TI2V-5B")
    assert (a14b["num_layers"], a14b["num_attention_heads"] * a14b["attention_head_dim"], a14b["ffn_dim"]) == (40, 5120, 13824)
    assert (ti2v["num_layers"], ti2v["num_attention_heads"] * ti2v["attention_head_dim"], ti2v["ffn_dim"], ti2v["in_channels"]) == (30, 3072, 14336, 48)
    vae22 = shipped_config("vae2.2")
    assert (vae22["z_dim"], vae22["base_dim"], vae22["decoder_base_dim"], vae22["scale_factor_spatial"], len(vae22["latents_mean"])) == (48, 160, 256, 16, 48)
    assert shipped_config("vae2.1")["z_dim"] == 16 and len(shipped_config("vae2.1")["latents_std"]) == 16
    umt5 = shipped_config("umt5")
    assert (umt5["vocab_size"], umt5["d_model"], umt5["num_layers"], umt5["num_heads"], umt5["d_ff"]) == (256384, 4096, 24, 64, 10240)
    assert shipped_config("scheduler")["prediction_type"] == "flow_prediction"


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_vaes_detected(tiny, version):
    file = inspect_vae(tiny.vae(version))
    assert file.family == version and file.config["z_dim"] == (16 if version == "2.1" else 48)
    if version == "2.2":
        assert file.config["decoder_base_dim"] == 12 and file.config["is_residual"] and file.config["patch_size"] == 2


def test_umt5_detected_with_config_from_shapes(tiny):
    file = inspect_text_encoder(tiny.umt5("fp8_scaled"))
    config = file.config
    assert (config["vocab_size"], config["d_model"], config["num_layers"], config["num_heads"]) == (tiny.vocab, 32, 2, 2)
    assert config["relative_attention_num_buckets"] == 32 and config["feed_forward_proj"] == "gated-gelu"


def test_classify_names_what_a_file_is(tiny):
    assert classify(read_header(tiny.vae("2.1"))).label == "a Wan VAE"
    assert classify(read_header(tiny.transformer("high"))).label == "a Wan diffusion model"
    assert classify(read_header(tiny.umt5())).label == "a umT5 text encoder"
    assert classify(read_header(tiny.lora("high"))).label == "a LoRA"


# --- wrong files, each with its message -------------------------------------------------------------------
def test_vae_chosen_as_diffusion_model(tiny):
    with pytest.raises(WanLeanError, match=r"high_noise_model: 'wan2.1_vae_fp16.safetensors' is a Wan VAE, not a Wan2.2 diffusion model\. Choose it in vae\."):
        inspect_diffusion_model(tiny.vae("2.1"), "high_noise_model")


def test_lora_or_text_encoder_chosen_as_diffusion_model(tiny):
    with pytest.raises(WanLeanError, match="is a LoRA, not a Wan2.2 diffusion model. Choose it in WanLeanLoRA"):
        inspect_diffusion_model(tiny.lora("high"))
    with pytest.raises(WanLeanError, match="is a umT5 text encoder.*Choose it in text_encoder"):
        inspect_diffusion_model(tiny.umt5())


def test_i2v_experts_refused(tmp_path, tiny):
    wan21_i2v = _variant(tmp_path, tiny, "i2v21.safetensors", {"img_emb.proj.1.weight": torch.zeros(4, 4)})
    with pytest.raises(WanLeanError, match="is an image-to-video model .*text-to-video"):
        inspect_diffusion_model(wan21_i2v)
    i2v_a14b = save(tmp_path / "wan2.2_i2v_high_noise.safetensors", {
        **load_file(tiny.transformer("high")), "patch_embedding.weight": torch.zeros(256, 36, 1, 2, 2, dtype=torch.float16),
    })
    with pytest.raises(WanLeanError, match=r"is an image-to-video model \(36 input channels"):
        inspect_diffusion_model(str(i2v_a14b))


@pytest.mark.parametrize("key, label", [
    ("vace_blocks.0.after_proj.weight", "VACE"),
    ("motion_encoder.dec.direction.weight", "Animate"),
    ("casual_audio_encoder.weights", "S2V"),
    ("mystery_adapter.weight", "another Wan variant"),
])
def test_other_wan_variants_refused(tmp_path, tiny, key, label):
    path = _variant(tmp_path, tiny, f"{label}.safetensors", {key: torch.zeros(2, 2)})
    with pytest.raises(WanLeanError, match=label):
        inspect_diffusion_model(path)


def test_wan21_small_model_refused(tmp_path):
    path = save(tmp_path / "x.safetensors", {"patch_embedding.weight": torch.zeros(1536, 16, 1, 2, 2, dtype=torch.float16), "blocks.0.norm3.weight": torch.zeros(2)})
    with pytest.raises(WanLeanError, match="Wan2.1 T2V-1.3B"):
        inspect_diffusion_model(str(path))


def test_truncated_file_refused(tmp_path, tiny):
    path = tmp_path / "wan_high_truncated.safetensors"
    data = open(tiny.transformer("high"), "rb").read()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(WanLeanError, match="is truncated.*download it again"):
        inspect_diffusion_model(str(path))
    path.write_bytes(data[:100])
    with pytest.raises(WanLeanError, match="not a valid safetensors file"):
        inspect_diffusion_model(str(path))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickles_refused_without_loading(tmp_path, suffix):
    path = tmp_path / f"wan2.2_high{suffix}"
    path.write_bytes(b"\x80\x04 not loaded")  # a pickle header; must never be unpickled
    with pytest.raises(WanLeanError, match="pickle-based file; WanLean loads .safetensors only"):
        inspect_diffusion_model(str(path))


def test_gguf_refused_by_extension_and_magic(tmp_path):
    gguf = tmp_path / "wan2.2_high_Q4_K_M.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(WanLeanError, match="GGUF quantizations are not supported yet"):
        inspect_diffusion_model(str(gguf))
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(WanLeanError, match=r"GGUF file \(renamed\)"):
        inspect_diffusion_model(str(renamed))


def test_clip_plain_t5_and_llm_text_encoders_refused(tmp_path):
    clip = save(tmp_path / "clip_l.safetensors", {"text_model.encoder.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4)})
    with pytest.raises(WanLeanError, match=r"is a CLIP text encoder, not the umT5-XXL text encoder Wan2.2 needs"):
        inspect_text_encoder(str(clip))
    t5 = {
        "shared.weight": torch.zeros(8, 4),
        "encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(4, 4),
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": torch.zeros(32, 2),
        "encoder.block.1.layer.0.SelfAttention.q.weight": torch.zeros(4, 4),
        "spiece_model": torch.zeros(4, dtype=torch.uint8),
    }
    with pytest.raises(WanLeanError, match="is a plain T5 text encoder .*Wan2.2 needs umT5-XXL"):
        inspect_text_encoder(str(save(tmp_path / "t5xxl_fp16.safetensors", t5)))
    llm = save(tmp_path / "qwen.safetensors", {"model.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4)})
    with pytest.raises(WanLeanError, match="language-model text encoder"):
        inspect_text_encoder(str(llm))


def test_umt5_without_tokenizer_and_vae_as_text_encoder(tiny):
    with pytest.raises(WanLeanError, match="no tokenizer \\(no 'spiece_model' tensor\\)"):
        inspect_text_encoder(tiny.umt5(with_tokenizer=False))
    with pytest.raises(WanLeanError, match="is a Wan VAE, not the umT5-XXL.*Choose it in vae"):
        inspect_text_encoder(tiny.vae("2.1"))
    with pytest.raises(WanLeanError, match="is a umT5 text encoder, not a Wan VAE.*Choose it in text_encoder"):
        inspect_vae(tiny.umt5())


# --- files that do not belong together (checked before any weight is read) ----------------------------------
def _load(tiny, high, low, te=None, vae=None):
    return load_comfy_files(high, low, te or tiny.umt5(), vae or tiny.vae("2.1"), dtype="fp32", device="cpu")


def test_same_expert_twice_is_caught_by_path_and_by_content(tmp_path, tiny):
    high = tiny.transformer("high")
    with pytest.raises(WanLeanError, match="holds the same weights as high_noise_model"):
        _load(tiny, high, high)
    copy = tmp_path / "wan2.2_t2v_low_noise_copy.safetensors"
    shutil.copyfile(high, copy)
    with pytest.raises(WanLeanError, match="holds the same weights"):
        _load(tiny, high, str(copy))
    assert fingerprint(inspect_diffusion_model(high)) != fingerprint(inspect_diffusion_model(tiny.transformer("low")))


def test_two_high_noise_experts_and_swapped_experts_by_name(tmp_path, tiny):
    """No tensor tells the two experts apart; the official file names do (documented heuristic)."""
    other_high = str(write_transformer_file(tmp_path / "wan2.2_t2v_high_noise_14B_v2.safetensors", tiny_transformer(16, seed=9)))
    high = tiny.transformer("high")  # named wan_high_noise_...
    with pytest.raises(WanLeanError, match="both .* are named as high-noise experts"):
        _load(tiny, high, other_high)
    with pytest.raises(WanLeanError, match="look swapped"):
        _load(tiny, tiny.transformer("low"), high)


def test_model_count_and_vae_must_fit_the_model(tiny):
    with pytest.raises(WanLeanError, match="TI2V-5B, a single model; set low_noise_model to 'none'"):
        _load(tiny, tiny.transformer("ti2v"), tiny.transformer("low"), vae=tiny.vae("2.2"))
    with pytest.raises(WanLeanError, match="needs both experts"):
        _load(tiny, tiny.transformer("high"), "none")
    with pytest.raises(WanLeanError, match="not an A14B expert"):
        _load(tiny, tiny.transformer("high"), tiny.transformer("ti2v"))
    with pytest.raises(WanLeanError, match="is the Wan2.2 VAE .* needs the Wan2.1 VAE .*wan_2.1_vae.safetensors"):
        _load(tiny, tiny.transformer("high"), tiny.transformer("low"), vae=tiny.vae("2.2"))
    with pytest.raises(WanLeanError, match="is the Wan2.1 VAE .* needs the Wan2.2 VAE .*wan2.2_vae.safetensors"):
        _load(tiny, tiny.transformer("ti2v"), None)


def test_experts_of_different_sizes_refused(tmp_path, tiny):
    deeper = str(write_transformer_file(tmp_path / "wan_low_noise_3layers.safetensors", tiny_transformer(16, seed=5, num_layers=3)))
    with pytest.raises(WanLeanError, match="different architectures"):
        _load(tiny, tiny.transformer("high"), deeper)


def test_text_encoder_width_must_match(tmp_path, tiny):
    from wltest.comfy_formats import write_umt5_file
    from wltest.tiny_wan import tiny_text_encoder

    wide = write_umt5_file(tmp_path / "umt5_wide.safetensors", tiny_text_encoder(tiny.vocab, d_model=64), tiny.spiece)
    with pytest.raises(WanLeanError, match="64-wide embeddings but .* expects 32"):
        _load(tiny, tiny.transformer("high"), tiny.transformer("low"), te=str(wide))


def test_bad_options_named(tiny):
    with pytest.raises(WanLeanError, match="weight_storage must be one of as_file, fp8"):
        load_comfy_files(tiny.transformer("high"), tiny.transformer("low"), tiny.umt5(), tiny.vae("2.1"), weight_storage="int4")
    with pytest.raises(WanLeanError, match="memory_mode must be one of"):
        load_comfy_files(tiny.transformer("high"), tiny.transformer("low"), tiny.umt5(), tiny.vae("2.1"), memory_mode="fast")


def test_a14b_expert_without_low_noise_names_the_right_input(tiny):
    """low_noise_model 'none' with an A14B expert: the message names the high-noise file under high_noise_model
    (it used to say "low_noise_model: '…high_noise….safetensors' is an A14B expert")."""
    with pytest.raises(WanLeanError) as caught:
        _load(tiny, tiny.transformer("high"), None)
    assert str(caught.value).startswith(
        "low_noise_model: 'none', but high_noise_model 'wan_high_noise_fp16.safetensors' is an A14B expert")


@pytest.mark.parametrize("high, names, expected", [
    ("wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
     ["wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_t2v_low_noise_14B_fp16.safetensors", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"],
     "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"),
    ("wan/Wan2.2_HIGH_noise.safetensors", ["Wan2.2_LOW_noise.safetensors", "wan/Wan2.2_LOW_noise.safetensors"], "wan/Wan2.2_LOW_noise.safetensors"),
    ("wan/Wan2.2_High_noise.safetensors", ["wan/wan2.2_low_noise.safetensors"], "wan/wan2.2_low_noise.safetensors"),  # case differs
    ("wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", ["wan2.2_t2v_low_noise_14B_fp16.safetensors"], None),  # no same-named file
    ("wan2.2_ti2v_5B_fp16.safetensors", ["wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"], None),  # no 'high' word
    ("highway_high_noise.safetensors", ["highway_low_noise.safetensors"], "highway_low_noise.safetensors"),  # only the word
    ("high_to_low.safetensors", ["low_to_low.safetensors"], None),  # says 'low' too: ambiguous
])
def test_low_noise_partner_by_name(high, names, expected):
    assert low_noise_partner(high, names) == expected


def test_low_noise_default_is_used_only_for_an_a14b_expert_without_a_low_noise_model(tiny):
    low = tiny.transformer("low")
    session = load_comfy_files(tiny.transformer("high"), None, tiny.umt5(), tiny.vae("2.1"), dtype="fp32", device="cpu", low_noise_default=low)
    assert session.transformer_2 is not None and session.extras["low_noise_model_picked"] == low
    assert "wan_low_noise_fp16.safetensors (picked by name for low_noise_model 'none')" in session.source
    ti2v = load_comfy_files(tiny.transformer("ti2v"), None, tiny.umt5(), tiny.vae("2.2"), dtype="fp32", device="cpu", low_noise_default=low)
    assert ti2v.transformer_2 is None and ti2v.extras["low_noise_model_picked"] is None  # TI2V-5B: one model
