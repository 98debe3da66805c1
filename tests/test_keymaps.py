"""Key maps: original Wan / ComfyUI names → diffusers names.

Without ComfyUI the maps are checked against diffusers' models (every name lands on a parameter of the
right shape, nothing twice). With COMFYUI_PATH (and ComfyUI's requirements in this Python) they are also
checked against ComfyUI's own Wan modules: the names ComfyUI's WanModel / Wan2.1 VAE / Wan2.2 VAE
state dicts hold are exactly what the maps take, and ComfyUI's Wan2.2 VAE decodes the same latents to the
same video as diffusers' after the mapping.
"""

import pytest
import torch

from wanlean.video.loaders.comfy_files.keymaps import transformer_map, umt5_map, vae_map
from wanlean.video.loaders.comfy_files.vae22 import vae22_to_diffusers
from wltest.comfy_formats import original_transformer_names, original_vae_names, tiny_set, tiny_transformer, tiny_vae


def _comfy_modules():
    try:
        import comfy.ldm.wan.model
        import comfy.ldm.wan.vae
        import comfy.ldm.wan.vae2_2
        import comfy.ops
    except Exception as exc:  # no ComfyUI on the path, or its requirements missing from this Python
        pytest.skip(f"ComfyUI's Wan modules are not importable here ({type(exc).__name__}); set COMFYUI_PATH and use ComfyUI's Python")
    return comfy


@pytest.mark.parametrize("channels", [16, 48])
def test_transformer_map_lands_on_every_parameter_once(channels):
    model = tiny_transformer(channels)
    originals = original_transformer_names(model)  # asserts the inverse against diffusers' converter
    mapping = transformer_map(list(originals.values()))
    assert sorted(mapping.values()) == sorted(model.state_dict())
    # the traps: two original names for one diffusers name, and norm2/norm3 swapped
    assert mapping["head.modulation"] == "scale_shift_table"
    assert mapping["blocks.0.modulation"] == "blocks.0.scale_shift_table"
    assert mapping["head.head.weight"] == "proj_out.weight"
    assert mapping["blocks.1.norm3.weight"] == "blocks.1.norm2.weight"


def test_transformer_map_does_not_consume_its_input():
    names = ["blocks.0.self_attn.q.weight", "head.head.bias"]
    kept = list(names)
    transformer_map(names)
    assert names == kept
    assert transformer_map(names, layout="diffusers") == {n: n for n in names}


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_vae_map_lands_on_every_parameter_once(version):
    model = tiny_vae(version)
    originals = original_vae_names(model, version)
    mapping = vae_map(list(originals.values()), version)
    assert sorted(mapping.values()) == sorted(model.state_dict())


def test_vae22_map_examples():
    assert vae22_to_diffusers("encoder.downsamples.1.downsamples.0.shortcut.weight") == "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"
    assert vae22_to_diffusers("encoder.downsamples.1.downsamples.2.time_conv.bias") == "encoder.down_blocks.1.downsampler.time_conv.bias"
    assert vae22_to_diffusers("decoder.upsamples.0.upsamples.3.resample.1.weight") == "decoder.up_blocks.0.upsampler.resample.1.weight"
    assert vae22_to_diffusers("decoder.upsamples.2.upsamples.1.residual.3.gamma") == "decoder.up_blocks.2.resnets.1.norm2.gamma"
    assert vae22_to_diffusers("decoder.middle.2.residual.6.bias") == "decoder.mid_block.resnets.1.conv2.bias"
    assert vae22_to_diffusers("encoder.middle.1.to_qkv.weight") == "encoder.mid_block.attentions.0.to_qkv.weight"
    assert vae22_to_diffusers("conv1.weight") == "quant_conv.weight"
    assert vae22_to_diffusers("something.else") == "something.else"  # unknown names surface as unexpected


def test_umt5_map_drops_tied_embedding_tokenizer_and_decoder():
    names = ["shared.weight", "encoder.embed_tokens.weight", "spiece_model", "decoder.block.0.x", "encoder.final_layer_norm.weight"]
    assert umt5_map(names) == {"shared.weight": "shared.weight", "encoder.final_layer_norm.weight": "encoder.final_layer_norm.weight"}


# --- against ComfyUI's own modules ------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [16, 48])
def test_comfyui_wan_model_names_map_onto_diffusers(channels):
    comfy = _comfy_modules()
    original = comfy.ldm.wan.model.WanModel(
        model_type="t2v", in_dim=channels, out_dim=channels, dim=256, ffn_dim=64, freq_dim=32, text_dim=32,
        num_heads=2, num_layers=2, operations=comfy.ops.disable_weight_init,
    ).state_dict()
    model = tiny_transformer(channels)
    mapping = transformer_map(list(original))
    target = model.state_dict()
    assert sorted(mapping.values()) == sorted(target)
    assert all(tuple(original[k].shape) == tuple(target[v].shape) for k, v in mapping.items())
    assert set(original) == set(original_transformer_names(model).values())  # the test writer writes ComfyUI's names


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_comfyui_vae_names_map_onto_diffusers(version):
    comfy = _comfy_modules()
    common = dict(z_dim=16 if version == "2.1" else 48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                  temperal_downsample=[False, True, True], dropout=0.0)
    if version == "2.1":
        original = comfy.ldm.wan.vae.WanVAE(dim=8, **common).state_dict()
    else:
        original = comfy.ldm.wan.vae2_2.WanVAE(dim=8, dec_dim=12, **common).state_dict()
    model = tiny_vae(version)
    mapping = vae_map(list(original), version)
    target = model.state_dict()
    assert sorted(mapping.values()) == sorted(target)
    assert all(tuple(original[k].shape) == tuple(target[v].shape) for k, v in mapping.items())
    assert set(original) == set(original_vae_names(model, version).values())


def test_wan22_vae_decodes_identically_in_comfyui_and_diffusers():
    """The Wan2.2 VAE map is right where it matters: ComfyUI's module loaded with the original names and
    diffusers' module loaded through the map turn the same latents into the same video."""
    comfy = _comfy_modules()
    from wanlean.video.loaders.comfy_files.load import load_comfy_files

    tiny = tiny_set()
    comfy_vae = comfy.ldm.wan.vae2_2.WanVAE(
        dim=8, dec_dim=12, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
        temperal_downsample=[False, True, True], dropout=0.0,
    ).eval()
    from safetensors.torch import load_file

    comfy_vae.load_state_dict(load_file(tiny.vae("2.2")), strict=True)
    session = load_comfy_files(tiny.transformer("ti2v"), None, tiny.umt5(), tiny.vae("2.2"), dtype="fp32", device="cpu")
    latents = torch.randn(1, 48, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = session.vae.decode(latents, return_dict=False)[0]
        theirs = comfy_vae.decode(latents)
    assert ours.shape == theirs.shape == (1, 3, 5, 64, 64)
    # diffusers clamps the decoded video to [-1, 1]; ComfyUI's module leaves that to its VAE wrapper, so
    # the two agree inside the range a video can hold.
    assert torch.allclose(ours, theirs.clamp(-1, 1).to(ours.dtype), atol=1e-5, rtol=1e-4)
