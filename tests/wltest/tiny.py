"""Tiny tokenizers and files in the exact formats users have, built in milliseconds, no downloads."""

from __future__ import annotations

import io
from pathlib import Path

# Enough English, Chinese and mixed text for sentencepiece to learn a small vocabulary in milliseconds.
CORPUS = [
    "a red fox runs through deep snow at dawn, the camera tracks it from a low angle",
    "close-up of an old man smiling, warm colour tone, soft light from a window",
    "a cyberpunk city at night, neon signs reflect on wet streets, aerial shot",
    "the girl does not look at the camera; she walks slowly to the left",
    "wide shot of 3 horses galloping across a green field under a blue sky",
    "一只红色的狐狸在雪地里奔跑，镜头从低角度跟随",
    "夜晚的赛博朋克城市，霓虹灯倒映在潮湿的街道上，航拍",
    "特写，一位老人微笑，暖色调，窗户透进柔光",
    "mixed 中文 and English: 小猫 sits on a wooden table, 暖色调, cinematic",
    "(golden hour:1.2) sunset over the ocean, waves crash on black rocks, 24mm lens",
]


def train_spiece(vocab_size: int = 300, corpus=None) -> bytes:
    """A sentencepiece model with umT5's conventions: pad 0, eos 1, unk 2, no BOS."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(corpus or CORPUS) * 20),
        model_writer=model,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        model_type="unigram",
        minloglevel=2,
    )
    return model.getvalue()


def write_text_encoder_file(path: Path, spiece_bytes: bytes | None, extra_mb: int = 0) -> Path:
    """A ComfyUI-style umT5 text-encoder file: a few T5-named tensors plus `spiece_model` (uint8).
    `extra_mb` pads it with that many MB of other tensors (for size-independence checks)."""
    import numpy as np
    from safetensors.numpy import save_file

    tensors = {
        "shared.weight": np.zeros((32, 8), dtype=np.float16),
        "encoder.block.0.layer.0.SelfAttention.q.weight": np.zeros((8, 8), dtype=np.float16),
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": np.zeros((32, 2), dtype=np.float16),
        "encoder.final_layer_norm.weight": np.ones((8,), dtype=np.float16),
    }
    for i in range(extra_mb):
        tensors[f"encoder.block.{i + 1}.layer.1.DenseReluDense.wi_0.weight"] = np.ones((512, 1024), dtype=np.float16)
    if spiece_bytes is not None:
        tensors["spiece_model"] = np.frombuffer(spiece_bytes, dtype=np.uint8).copy()
    save_file(tensors, str(path))
    return path
