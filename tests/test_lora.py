"""LoRAs: strength 0 changes nothing, strength 1 changes the output, both experts take one, the three key
layouts give the same result, the input session is never changed (ComfyUI hands one object to every
branch), and a LoRA for another model is refused by name."""

import pytest
import torch

from wanlean.video.loaders.comfy_files.load import load_comfy_files
from wanlean.video.loaders.comfy_files.lora import LoRALinear, apply_loras, read_lora
from wanlean.errors import WanLeanError
from wltest.comfy_formats import lora_factors, original_transformer_names, tiny_set, tiny_transformer, write_lora_file


@pytest.fixture(scope="module")
def tiny():
    return tiny_set()


@pytest.fixture(scope="module")
def session(tiny):
    return load_comfy_files(tiny.transformer("high"), tiny.transformer("low"), tiny.umt5(), tiny.vae("2.1"), dtype="fp32", device="cpu")


INPUTS = dict(
    hidden_states=torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0)),
    timestep=torch.tensor([600.0]),
    encoder_hidden_states=torch.randn(1, 12, 32, generator=torch.Generator().manual_seed(1)),
)


def predict(transformer):
    with torch.no_grad():
        return transformer(**INPUTS, return_dict=False)[0]


def test_strength_zero_or_none_changes_nothing(tiny, session):
    assert apply_loras(session, (tiny.lora("high"), 0.0), None) is session
    assert apply_loras(session, None, None) is session


def test_strength_one_changes_the_expert_it_targets_only(tiny, session):
    before_high, before_low = predict(session.transformer), predict(session.transformer_2)
    with_lora = apply_loras(session, (tiny.lora("high"), 1.0), None)
    assert not torch.allclose(predict(with_lora.transformer), before_high)
    assert with_lora.transformer_2 is session.transformer_2
    assert torch.equal(predict(with_lora.transformer_2), before_low)
    assert with_lora.extras["loras"][0]["layers"] == 2 * 10


def test_both_experts_take_a_lora(tiny, session):
    both = apply_loras(session, (tiny.lora("high"), 1.0), (tiny.lora("low", seed=1), 0.5))
    assert not torch.allclose(predict(both.transformer), predict(session.transformer))
    assert not torch.allclose(predict(both.transformer_2), predict(session.transformer_2))
    assert [n["expert"] for n in both.extras["loras"]] == ["high", "low"]
    assert "LoRA (high: lora_high_comfy_0.safetensors @ 1, low: lora_low_comfy_1.safetensors @ 0.5)" in both.source


def test_input_session_never_changes(tiny, session):
    """No LoRA leaks into another branch using the same loader output, and no weight is copied."""
    before = predict(session.transformer)
    modules_before = [type(m) for m in session.transformer.modules()]
    with_lora = apply_loras(session, (tiny.lora("high"), 1.0), None)
    predict(with_lora.transformer)
    assert torch.equal(predict(session.transformer), before)
    assert [type(m) for m in session.transformer.modules()] == modules_before
    assert not any(isinstance(m, LoRALinear) for m in session.transformer.modules())
    shared = with_lora.transformer.blocks[0].attn1.to_q.base.weight
    assert shared is session.transformer.blocks[0].attn1.to_q.weight  # shared, not copied
    assert with_lora.text_encoder is session.text_encoder and with_lora.vae is session.vae
    assert "memory" not in with_lora.extras  # the new session is placed on its own


def test_the_math_is_base_plus_strength_times_up_down(tiny, session):
    layer = session.transformer.blocks[1].ffn.net[2]
    x = torch.randn(3, layer.in_features)
    factors = lora_factors(tiny.high)["blocks.1.ffn.2"]
    for strength in (1.0, 0.3, -1.0):
        wrapped = apply_loras(session, (tiny.lora("high"), strength), None).transformer.blocks[1].ffn.net[2]
        expected = layer(x) + strength * (x @ factors[0].T @ factors[1].T)
        assert torch.allclose(wrapped(x), expected, atol=1e-6)


@pytest.mark.parametrize("layout", ["kohya", "diffusers"])
def test_key_layouts_give_the_same_lora(tiny, session, layout):
    reference = predict(apply_loras(session, (tiny.lora("high", "comfy"), 1.0), None).transformer)
    other = predict(apply_loras(session, (tiny.lora("high", layout), 1.0), None).transformer)
    assert torch.allclose(reference, other, atol=1e-5)


def test_alpha_and_diff_b_are_honoured(tmp_path, tiny, session):
    half = write_lora_file(tmp_path / "alpha.safetensors", tiny.high, "comfy", rank=4, alpha=2.0)
    full = tiny.lora("high")
    layer = "blocks.0.self_attn.q"
    half_layers, full_layers = read_lora(str(half)).layers, read_lora(full).layers
    target = "blocks.0.attn1.to_q"
    half_delta = half_layers[target][1] @ half_layers[target][0]
    full_delta = full_layers[target][1] @ full_layers[target][0]
    assert torch.allclose(half_delta * 2, full_delta, atol=1e-7)  # alpha / rank folded in
    with_bias = read_lora(str(write_lora_file(tmp_path / "bias.safetensors", tiny.high, "comfy", bias_layer=layer)))
    (parameter, key, delta), = with_bias.deltas  # diff_b is a delta on the bias, read here, not by diffusers
    assert (parameter, key, tuple(delta.shape)) == (f"{target}.bias", f"diffusion_model.{layer}.diff_b", (256,))


def test_tiny_lora_files_are_cached_by_every_parameter(tiny):
    """The test fixtures' own cache: a LoRA asked for with another alpha is another file (asking in the
    other order once made four LoRA tests fail on good code)."""
    plain, halved = tiny.lora("high"), tiny.lora("high", alpha=2.0)
    assert plain != halved and tiny.lora("high") == plain and tiny.lora("high", alpha=2.0) == halved
    target = "blocks.0.attn1.to_q"
    (plain_down, plain_up, _), (half_down, half_up, _) = read_lora(plain).layers[target], read_lora(halved).layers[target]
    assert torch.allclose((half_up @ half_down) * 2, plain_up @ plain_down, atol=1e-7)
    with pytest.raises(ValueError, match="already holds"):
        tiny._once(("other",), "lora_high_comfy_0.safetensors", lambda: None)


def test_chaining_adds_up_and_keeps_the_first(tiny, session):
    first = apply_loras(session, (tiny.lora("high"), 1.0), None)
    first_out = predict(first.transformer)
    second = apply_loras(first, (tiny.lora("high", seed=2), 1.0), None)
    assert len(second.transformer.blocks[0].attn1.to_q.adapters) == 2
    assert len(first.transformer.blocks[0].attn1.to_q.adapters) == 1
    assert torch.equal(predict(first.transformer), first_out)
    assert len(second.extras["loras"]) == 2


def test_lora_on_fp8_stored_expert(tiny):
    stored = load_comfy_files(tiny.transformer("high", "fp8_scaled"), tiny.transformer("low", "fp8_scaled"), tiny.umt5(), tiny.vae("2.1"),
                              dtype="fp32", device="cpu", weight_storage="fp8")
    with_lora = apply_loras(stored, None, (tiny.lora("low"), 1.0))
    wrapped = with_lora.transformer_2.blocks[0].attn2.to_k
    assert type(wrapped.base).__name__ == "Fp8Linear" and wrapped.weight.dtype == torch.float8_e4m3fn
    assert not torch.allclose(predict(with_lora.transformer_2), predict(stored.transformer_2))


def test_wrong_loras_refused(tmp_path, tiny, session):
    wide = write_lora_file(tmp_path / "lora_for_wider_model.safetensors", tiny_transformer(16, dim=384), "comfy")
    with pytest.raises(WanLeanError, match="does not fit 'blocks.0.attn1.to_q'.*LoRA for another model size"):
        apply_loras(session, (str(wide), 1.0), None)
    deep = write_lora_file(tmp_path / "lora_6_blocks.safetensors", tiny_transformer(16, seed=0, num_layers=6), "comfy")
    with pytest.raises(WanLeanError, match="'lora_6_blocks.safetensors' does not match this model: only 20 of the 60 "
                                           "layers and tensors .*diffusion_model.blocks.2.self_attn.q.*LoRA for another model"):
        apply_loras(session, (str(deep), 1.0), None)
    with pytest.raises(WanLeanError, match="is a Wan VAE, not a LoRA"):
        apply_loras(session, (tiny.vae("2.1"), 1.0), None)
    with pytest.raises(WanLeanError, match="pickle-based file"):
        (tmp_path / "lora.pt").write_bytes(b"\x80\x04")
        apply_loras(session, (str(tmp_path / "lora.pt"), 1.0), None)


def test_low_noise_lora_on_ti2v_refused(tiny):
    ti2v = load_comfy_files(tiny.transformer("ti2v"), None, tiny.umt5(), tiny.vae("2.2"), dtype="fp32", device="cpu")
    with pytest.raises(WanLeanError, match="single transformer \\(TI2V-5B\\); put its LoRA in lora_high_noise"):
        apply_loras(ti2v, None, (tiny.lora("low"), 1.0))


def test_lora_on_a_diffusers_folder_session_with_hooks_attached(tiny):
    """A session whose experts carry diffusers hooks (as memory placement attaches: group offloading's
    hold streams and module references that cannot be copied) still gives a clean LoRA copy: the hooks
    stay with the input, and each session samples on its own."""
    from diffusers.hooks import HookRegistry, ModelHook

    from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
    from wanlean.video.sampler import VideoRequest, generate
    from wltest.comfy_formats import diffusers_folder
    from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH

    class PlacementLikeHook(ModelHook):
        def __init__(self):
            super().__init__()
            self.backend = torch  # a module object: deepcopy fails on it, as on group offloading's state

    folder = load_diffusers_folder(diffusers_folder(tiny, "A14B"), dtype="fp32", device="cpu")
    for expert in (folder.transformer, folder.transformer_2):
        for block in expert.blocks:
            HookRegistry.check_if_exists_or_initialize(block).register_hook(PlacementLikeHook(), "placement")
    request = VideoRequest(prompt="a red fox", negative="blurry", width=TINY_WIDTH, height=TINY_HEIGHT, frames=TINY_FRAMES,
                           steps=2, cfg_high=1.0, cfg_low=1.0, shift=12.0, seed=3)
    plain = generate(folder, request)
    with_lora = apply_loras(folder, (tiny.lora("high"), 1.0), (tiny.lora("low", seed=1), 1.0))
    assert not any("_diffusers_hook" in m.__dict__ for m in with_lora.transformer.modules())
    assert all("_diffusers_hook" in block.__dict__ for block in folder.transformer.blocks)  # put back
    changed = generate(with_lora, request)
    again = generate(folder, request)
    assert not torch.allclose(changed.frames, plain.frames)
    assert torch.equal(again.frames, plain.frames)


def test_keys_matching_nothing_are_applied_around_and_named(tmp_path, tiny, session, caplog):
    """A LoRA with one block more than the model: the rest applies, and every key of the extra block is named
    in the session's notes, the sampler's report and the log (a third of the file: not refused)."""
    import logging

    from wanlean.video.sampler import VideoRequest, generate
    from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH

    deep = write_lora_file(tmp_path / "lora_3_blocks.safetensors", tiny_transformer(16, seed=0, num_layers=3), "comfy")
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        with_lora = apply_loras(session, (str(deep), 1.0), None)
    missed = with_lora.extras["loras"][0]["not_applied"]
    expected = {f"diffusion_model.blocks.2.{layer}.{part}" for layer in ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")
                for part in ("lora_down.weight", "lora_up.weight", "alpha")}
    assert set(missed) == expected and len(missed) == 30
    assert not torch.allclose(predict(with_lora.transformer), predict(session.transformer))
    assert "30 key(s) not applied" in caplog.text and all(key in caplog.text for key in expected)
    request = VideoRequest(prompt="a red fox", negative="", width=TINY_WIDTH, height=TINY_HEIGHT, frames=TINY_FRAMES,
                           steps=1, cfg_high=1.0, cfg_low=1.0, shift=12.0, seed=3)
    report = generate(with_lora, request).report
    assert "note: LoRA lora_3_blocks.safetensors (high-noise expert): 30 key(s) not applied: " in report
    assert all(key in report for key in expected)


# --- every delta a file carries, against the same LoRA merged by hand --------------------------------------
def merged_by_hand(expert, model, lora_path, strength):
    """`expert` (a loaded session's) with the LoRA file merged into its weights here, from the file's tensors in
    original Wan names: weight + up·down·(alpha/rank)·strength, weight + diff·strength, bias + diff_b·strength,
    modulation + diff_m·strength. Names go through this test's own inverse map (checked against diffusers'
    converter), not the loader's."""
    import copy

    from safetensors.torch import load_file

    diffusers_name = {original: name for name, original in original_transformer_names(model).items()}
    tensors = {key[len("diffusion_model."):]: value.to(torch.float64) for key, value in load_file(lora_path).items()}
    state = {name: value.to(torch.float64) for name, value in expert.state_dict().items()}
    touched = set()
    for key, value in tensors.items():
        if key.endswith(".lora_down.weight"):
            layer = key[: -len(".lora_down.weight")]
            up, alpha = tensors[f"{layer}.lora_up.weight"], tensors.get(f"{layer}.alpha")
            scale = 1.0 if alpha is None else float(alpha) / value.shape[0]
            target, delta = f"{layer}.weight", up @ value * scale
        elif key.endswith(".diff"):
            target, delta = key[: -len(".diff")] + ".weight", value
        elif key.endswith(".diff_b"):
            target, delta = key[: -len(".diff_b")] + ".bias", value
        elif key.endswith(".diff_m"):
            target, delta = key[: -len(".diff_m")] + ".modulation", value
        else:
            continue
        state[diffusers_name[target]] += strength * delta
        touched.add(target)
    merged = copy.deepcopy(expert)
    merged.load_state_dict({name: value.to(torch.float32) for name, value in state.items()})
    return merged, touched


EXTRACTED_CASES = [
    ("extracted", {}, {}),
    ("extracted", {"head_diff_b": False}, {"head_diff_b": False}),  # diffusers' converter fails on this file
    ("lightx2v", {"alpha_dtype": "F64"}, {"alpha_dtype": "I64"}),
]


@pytest.mark.parametrize("strength", [1.0, 0.5])
@pytest.mark.parametrize("layout, high_options, low_options", EXTRACTED_CASES, ids=["extracted", "extracted_without_head_diff_b", "lightx2v"])
def test_every_delta_applies_like_the_lora_merged_by_hand(tiny, session, layout, high_options, low_options, strength):
    import dataclasses

    from wanlean.video.sampler import VideoRequest, generate
    from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH

    high, low = tiny.lora("high", layout, **high_options), tiny.lora("low", layout, seed=1, **low_options)
    merged_high, touched = merged_by_hand(session.transformer, tiny.high, high, strength)
    merged_low, _ = merged_by_hand(session.transformer_2, tiny.low, low, strength)
    if layout == "extracted":  # the file reaches every kind of tensor: norms, head, patch embedding, biases, modulation
        assert {"blocks.0.norm3.weight", "blocks.1.self_attn.norm_k.weight", "head.head.weight", "patch_embedding.weight",
                "patch_embedding.bias", "blocks.0.cross_attn.k.weight", "blocks.1.modulation", "head.modulation",
                "time_projection.1.bias"} <= touched
        assert ("head.head.bias" in touched) == high_options.get("head_diff_b", True)
    by_hand = dataclasses.replace(session, transformer=merged_high, transformer_2=merged_low)
    request = VideoRequest(prompt="a red fox runs through deep snow", negative="blurry", width=TINY_WIDTH, height=TINY_HEIGHT,
                           frames=TINY_FRAMES, steps=2, cfg_high=3.0, cfg_low=2.0, shift=12.0, seed=5)
    expected = generate(by_hand, request).latents
    plain = generate(session, request).latents
    got = generate(apply_loras(session, (high, strength), (low, strength)), request).latents
    tolerance = 2**-11 * expected.abs().max()  # fp16 rounding: the LoRA is computed beside the weights, not merged
    assert (expected - plain).abs().max() > 20 * tolerance  # the LoRA moves the result far more than that
    torch.testing.assert_close(got, expected, rtol=0, atol=float(tolerance))


def test_extracted_lora_on_an_fp8_stored_expert_computes_like_the_dequantized_one(tiny):
    """Weight deltas on Linears are computed beside the layer: an fp8-stored expert stays fp8 and gives what the
    same expert dequantized on load gives."""
    files = (tiny.transformer("high", "fp8_scaled"), tiny.transformer("low", "fp8_scaled"), tiny.umt5(), tiny.vae("2.1"))
    as_file = load_comfy_files(*files, dtype="fp32", device="cpu")
    stored = load_comfy_files(*files, dtype="fp32", device="cpu", weight_storage="fp8")
    lora = tiny.lora("low", "extracted", seed=1)
    a = apply_loras(as_file, None, (lora, 1.0)).transformer_2
    b = apply_loras(stored, None, (lora, 1.0)).transformer_2
    assert type(b.blocks[0].attn2.to_k.base).__name__ == "Fp8Linear" and b.blocks[0].attn2.to_k.weight.dtype == torch.float8_e4m3fn
    assert b.blocks[0].attn2.to_k.base.weight is stored.transformer_2.blocks[0].attn2.to_k.weight  # shared, not copied
    torch.testing.assert_close(predict(b), predict(a), rtol=0, atol=1e-5)
    assert not torch.allclose(predict(b), predict(stored.transformer_2), atol=1e-3)


def test_deltas_never_reach_the_input_session(tiny, session):
    """Merged deltas (norms, biases, modulation, patch embedding) get new tensors in the new tree only."""
    before = {name: value.clone() for name, value in session.transformer.state_dict().items()}
    out_before = predict(session.transformer)
    with_lora = apply_loras(session, (tiny.lora("high", "extracted", head_diff_b=False), 1.0), None)
    predict(with_lora.transformer)
    assert all(torch.equal(value, before[name]) for name, value in session.transformer.state_dict().items())
    assert torch.equal(predict(session.transformer), out_before)
    assert with_lora.transformer.blocks[0].norm2.weight is not session.transformer.blocks[0].norm2.weight
    assert with_lora.transformer.blocks[0].attn1.norm_q.weight is not session.transformer.blocks[0].attn1.norm_q.weight
    assert with_lora.extras["loras"][0]["not_applied"] == []
