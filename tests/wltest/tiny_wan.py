"""Tiny random Wan2.2 pipelines built in code and saved as diffusers folders (no downloads).

- A14B-style: two `WanTransformer3DModel` experts (in/out 16) + `boundary_ratio` 0.875, Wan2.1-style VAE
  (z_dim 16, spatial ×8).
- TI2V-style: one transformer (in/out 48), `expand_timesteps`, Wan2.2-style VAE (z_dim 48, residual,
  patchified, spatial ×16).
Both use a tiny umT5 (`UMT5EncoderModel`) and a tokenizer built from `tiny.train_spiece()`'s sentencepiece
model, written as a `tokenizer.json` Unigram model so the same bytes give the same ids both ways.
Sizes are tiny on purpose: a 5-frame 32×32 video runs a step in milliseconds on one CPU core.
"""

from __future__ import annotations

import json
from pathlib import Path

TEXT_DIM = 32  # tiny umT5 d_model == the transformers' text_dim
TINY_WIDTH = TINY_HEIGHT = 32
TINY_FRAMES = 5


def tokenizer_folder(path: Path, spiece_bytes: bytes | None = None) -> Path:
    """A Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json) from a sentencepiece model,
    loadable with AutoTokenizer (transformers 5: T5Tokenizer backed by tokenizers)."""
    import sentencepiece as spm
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from .tiny import train_spiece

    processor = spm.SentencePieceProcessor(model_proto=spiece_bytes or train_spiece())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=processor.unk_id(), byte_fallback=False))
    # sentencepiece normalises with NFKC (nmt_nfkc: full-width "，" becomes ",") and drops repeated spaces
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", processor.eos_id())]
    )
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path / "tokenizer.json"))
    config = {
        # Loaded verbatim (transformers 5 rebuilds a T5Tokenizer from the vocabulary and drops the normaliser).
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "extra_ids": 0,
        "model_max_length": 512,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


def tiny_text_encoder(vocab_size: int, d_model: int = TEXT_DIM, num_layers: int = 2, num_heads: int = 2, d_ff: int = 64, seed: int = 0):
    """A random UMT5EncoderModel (gated-gelu, relative attention bias in every layer, like umT5)."""
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=d_ff,
        num_layers=num_layers,
        num_heads=num_heads,
        relative_attention_num_buckets=32,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
    )
    return UMT5EncoderModel(config).eval()


def base_like_text_encoder(vocab_size: int = 512, seed: int = 0):
    """About umT5-base size (d_model 768, 12 layers, 12 heads, d_ff 2048, gated-gelu): for benchmarks."""
    return tiny_text_encoder(vocab_size, d_model=768, num_layers=12, num_heads=12, d_ff=2048, seed=seed)


def tiny_transformer(channels: int = 16, seed: int = 0):
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=channels,
        out_channels=channels,
        text_dim=TEXT_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    ).eval()


def tiny_vae(z_dim: int = 16, seed: int = 0):
    """Wan2.1-style (z_dim 16, ×8) or Wan2.2-style (z_dim 48, residual, patch 2, ×16), with latents_mean/std
    that are not 0/1 so the LATENT denormalisation is really tested."""
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    latents_mean = [round(float(v), 4) for v in torch.randn(z_dim, generator=generator) * 0.5]
    latents_std = [round(float(v), 4) for v in torch.rand(z_dim, generator=generator) * 2 + 0.5]
    common = dict(
        base_dim=3, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=latents_mean, latents_std=latents_std,
    )
    if z_dim == 48:
        return AutoencoderKLWan(
            **common, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
            scale_factor_spatial=16, scale_factor_temporal=4,
        ).eval()
    return AutoencoderKLWan(**common).eval()


def build_pipeline(kind: str = "A14B", spiece_bytes: bytes | None = None, tokenizer_dir: Path | None = None, seed: int = 0):
    """A tiny random WanPipeline of `kind` "A14B" or "TI2V-5B" (in memory)."""
    import tempfile

    from diffusers import UniPCMultistepScheduler, WanPipeline
    from transformers import AutoTokenizer

    if tokenizer_dir is None:
        tokenizer_dir = tokenizer_folder(Path(tempfile.mkdtemp(prefix="wanlean-tok-")), spiece_bytes)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    # The published Diffusers repositories ship UniPC with flow_shift 3.0 (official: 12.0); the sampler
    # must not depend on it, so the tiny folders carry it too.
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0)
    text_encoder = tiny_text_encoder(len(tokenizer), seed=seed)
    if kind == "A14B":
        return WanPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=tiny_vae(16, seed), scheduler=scheduler,
            transformer=tiny_transformer(16, seed + 10), transformer_2=tiny_transformer(16, seed + 20),
            boundary_ratio=0.875,
        )
    if kind == "TI2V-5B":
        return WanPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=tiny_vae(48, seed), scheduler=scheduler,
            transformer=tiny_transformer(48, seed + 30), expand_timesteps=True,
        )
    if kind == "Wan2.1":
        return WanPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=tiny_vae(16, seed), scheduler=scheduler,
            transformer=tiny_transformer(16, seed + 10),
        )
    raise ValueError(kind)


def save_tiny_folder(path: Path, kind: str = "A14B", spiece_bytes: bytes | None = None, seed: int = 0) -> Path:
    """Build a tiny pipeline and save it as a diffusers folder at `path` (safetensors)."""
    pipe = build_pipeline(kind, spiece_bytes=spiece_bytes, seed=seed)
    pipe.save_pretrained(str(path), safe_serialization=True)
    return path


_FOLDERS: dict = {}


def tiny_folder(kind: str = "A14B") -> Path:
    """The tiny `kind` folder, built once per test process (a session-wide cache without a conftest)."""
    import tempfile

    if kind not in _FOLDERS:
        root = Path(tempfile.mkdtemp(prefix=f"wanlean-tiny-{kind}-"))
        _FOLDERS[kind] = save_tiny_folder(root / f"wan22-tiny-{kind.lower()}", kind)
    return _FOLDERS[kind]


def reference_pipeline(kind: str = "A14B"):
    """diffusers' own `WanPipeline` for the tiny `kind` folder, to compare against. Without accelerate (as
    in ComfyUI's environment) diffusers cannot load a Wan transformer, so the pipeline is then assembled
    from modules loaded by the pack's fallback loader (whose equality with from_pretrained is tested
    where accelerate is installed)."""
    import importlib.util

    from diffusers import WanPipeline

    folder = str(tiny_folder(kind))
    if importlib.util.find_spec("accelerate") is not None:
        return WanPipeline.from_pretrained(folder, local_files_only=True)
    from diffusers import UniPCMultistepScheduler
    from transformers import AutoTokenizer

    from wanlean.video.loaders.diffusers_folder import load_diffusers_folder

    session = load_diffusers_folder(folder, device="cpu")
    return WanPipeline(
        tokenizer=AutoTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        text_encoder=session.text_encoder.encoder(),
        vae=session.vae,
        scheduler=UniPCMultistepScheduler.from_pretrained(folder, subfolder="scheduler"),
        transformer=session.transformer,
        transformer_2=session.transformer_2,
        boundary_ratio=session.boundary_ratio,
        expand_timesteps=session.expand_timesteps,
    )


def tiny_session(kind: str = "A14B", memory_mode: str = "gpu"):
    """A fresh session on the tiny diffusers folder of `kind`, on the CPU."""
    from wanlean.video.loaders.diffusers_folder import load_diffusers_folder

    return load_diffusers_folder(str(tiny_folder(kind)), device="cpu", memory_mode=memory_mode)


def tiny_request(**overrides):
    """A VideoRequest at the tiny size (4 steps, CFG 4 / 3, shift 12, seed 7); `overrides` change any field."""
    from wanlean.video.sampler import VideoRequest

    values = dict(prompt="a red fox runs through deep snow", negative="blurry, static", width=TINY_WIDTH, height=TINY_HEIGHT,
                  frames=TINY_FRAMES, steps=4, cfg_high=4.0, cfg_low=3.0, shift=12.0, seed=7)
    values.update(overrides)
    return VideoRequest(**values)
