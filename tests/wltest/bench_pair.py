"""Random-weight Wan2.2 A14B-style expert pairs of any width in ComfyUI's file format, for
benchmarks/bench_vs_native.py (speed does not depend on the weights' values).

ComfyUI's Wan loader fixes `text_dim` 4096 and `freq_dim` 256 and reads the rest from the file's shapes,
so the experts keep those and vary only width, feed-forward width and depth (heads of 128, as every Wan
model). The text encoder is a umT5 4096 wide but thin (ComfyUI's own loader only builds the full XXL
model, so the benchmark hands ComfyUI the embeddings WanLean's encoder makes of the same texts).
"""

from __future__ import annotations

from pathlib import Path


def expert_config(dim: int, ffn_dim: int, num_layers: int) -> dict:
    """diffusers `WanTransformer3DModel` arguments of an A14B-style expert (A14B: 5120, 13824, 40)."""
    return {
        "patch_size": (1, 2, 2), "num_attention_heads": dim // 128, "attention_head_dim": 128, "in_channels": 16,
        "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": ffn_dim, "num_layers": num_layers,
        "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024,
    }


def expert_tensors(config: dict, seed: int, device: str = "cpu", dtype=None) -> dict:
    """{original Wan name: random tensor (normal, std 0.02)} on the CPU, drawn on `device` (a full-size pair
    on the GPU), without building a real module."""
    import torch
    from diffusers import WanTransformer3DModel

    from .comfy_formats import original_transformer_names

    with torch.device("meta"):
        model = WanTransformer3DModel(**config)
    names = original_transformer_names(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    tensors = {}
    for key, meta in model.state_dict().items():
        value = torch.empty(meta.shape, device=device, dtype=dtype or torch.float32).normal_(0.0, 0.02, generator=generator)
        tensors[names[key]] = value.cpu()
    return tensors


def thin_text_encoder(vocab_size: int):
    """A umT5 encoder 4096 wide (what the experts' `text_embedding` reads), 1 layer of 2 heads of 16."""
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    config = UMT5Config(
        vocab_size=vocab_size, d_model=4096, d_kv=16, d_ff=64, num_layers=1, num_heads=2, relative_attention_num_buckets=32,
        feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1,
    )
    return UMT5EncoderModel(config).eval()


def write_pair(config: dict, formats, folder: Path, texts: list[str], device: str = "cpu", dtype=None) -> dict:
    """Writes the pair in each of `formats` (comfy_formats names: "bf16", "fp8_scaled", ...), a tiny Wan2.1 VAE
    and the thin umT5 (with the tiny tokenizer inside). Returns {format: {"high", "low": path}, "vae": path,
    "text_encoder": path, "embeds": path}; "embeds" holds `texts` as WanLean encodes them ([n, 512, 4096]
    float32, zero-padded rows), which is ComfyUI's conditioning in the benchmark."""
    import sentencepiece as spm
    import torch
    from safetensors.torch import save_file

    from wanlean.video.loaders.comfy_files.detect import inspect_text_encoder
    from wanlean.video.loaders.comfy_files.umt5 import comfy_text_encoder
    from wanlean.video.text_encoding import encode_texts, padded_batch

    from .comfy_formats import (
        QUANTIZABLE_TRANSFORMER,
        encode_format,
        round_to_fp16,
        save,
        tiny_vae,
        write_umt5_file,
        write_vae_file,
    )
    from .tiny import train_spiece

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict = {fmt: {} for fmt in formats}
    for which, seed in (("high", 1), ("low", 2)):
        state = expert_tensors(config, seed, device, dtype)
        for fmt in formats:
            tensors, metadata = encode_format(state, fmt, QUANTIZABLE_TRANSFORMER)
            files[fmt][which] = str(save(folder / f"wan2.2_t2v_{which}_noise_bench_{fmt}.safetensors", tensors, metadata))
            del tensors
        del state
    files["vae"] = str(write_vae_file(folder / "wan_2.1_vae_bench.safetensors", round_to_fp16(tiny_vae("2.1")), "2.1"))
    spiece = train_spiece()
    vocab = spm.SentencePieceProcessor(model_proto=spiece).get_piece_size()
    files["text_encoder"] = str(write_umt5_file(folder / "umt5_bench.safetensors", round_to_fp16(thin_text_encoder(vocab)), spiece))
    encoder = comfy_text_encoder(inspect_text_encoder(files["text_encoder"]), torch.float32)
    encoded, _ = encode_texts(encoder, list(texts), None)
    files["embeds"] = str(folder / "embeds.safetensors")
    save_file({"embeds": padded_batch(encoded, device="cpu", dtype=torch.float32).contiguous()}, files["embeds"])
    return files
