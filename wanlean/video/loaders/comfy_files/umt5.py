"""The umT5 text encoder and its tokenizer, both from ComfyUI's one text-encoder file.

The tokenizer is the sentencepiece model stored in the file as the uint8 tensor `spiece_model` (read with
one seek, see `wanlean.tokens`); the encoder is `transformers.UMT5EncoderModel` built from the file's
shapes and streamed from its weights (scaled fp8 dequantized), only when a prompt is not in the embedding
cache. Its dtype follows the transformers' dtype (fp16 keeps `wo` in fp32, as transformers does).
"""

from __future__ import annotations

import torch

from ....errors import WanLeanError
from ...embedding_cache import RowSpec
from ...session import LazyTextEncoder
from ....tokens import SentencePieceTokenizer, load_tokenizer
from .build import empty_weights, load_module
from .detect import ModelFile, fingerprint
from .keymaps import umt5_map

TIED = {"encoder.embed_tokens.weight": "shared.weight"}


def tokenizer_of(file: ModelFile) -> SentencePieceTokenizer:
    tokenizer = load_tokenizer(file.path)
    if not isinstance(tokenizer, SentencePieceTokenizer):
        raise WanLeanError(f"text_encoder: '{file.name}' holds no sentencepiece tokenizer.")
    if len(tokenizer) > file.config["vocab_size"]:
        raise WanLeanError(
            f"text_encoder: the tokenizer in '{file.name}' has {len(tokenizer)} pieces but the encoder only "
            f"{file.config['vocab_size']} embeddings; the file is inconsistent."
        )
    return tokenizer


def fp8_linear_names(model) -> set[str]:
    """The encoder's Linear layers that may stay fp8. Not `wo`: T5's feed-forward casts its input to
    `wo.weight.dtype`, which must stay a compute dtype."""
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.startswith("encoder.block.") and not name.endswith(".wo")
    }


def build_encoder(file: ModelFile, dtype, weight_storage: str = "as_file", device=None):
    """The UMT5EncoderModel of `file`, on the CPU (or `device`)."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(**{**file.config, "is_encoder_decoder": False, "use_cache": False})
    with empty_weights():
        model = UMT5EncoderModel(config)
    fp8 = fp8_linear_names(model) if weight_storage == "fp8" else set()
    model = load_module(model, file, umt5_map(file.names()), dtype, "text_encoder", fp8_modules=fp8, tied=TIED)
    return model.to(device) if device is not None else model


def comfy_text_encoder(file: ModelFile, dtype, weight_storage: str = "as_file", device=None, pinned_device: str | None = None) -> LazyTextEncoder:
    """A `TextEncoderSource` for ComfyUI's umT5 file: tokenizer on first prompt, encoder on first cache miss.
    `pinned_device`: where the encoder always runs ("cpu"), or None to let the memory mode place it."""
    tokenizer_holder: list = []

    def token_ids(text: str) -> list[int]:
        if not tokenizer_holder:
            tokenizer_holder.append(tokenizer_of(file))
        tokenizer = tokenizer_holder[0]
        return tokenizer.ids(text) + [tokenizer.eos_id]

    def load_encoder():
        return build_encoder(file, dtype, weight_storage, device)

    storage = "" if weight_storage == "as_file" else f":{weight_storage}"
    identity = f"comfy:{file.name}:{str(dtype).removeprefix('torch.')}{storage}:{fingerprint(file)}"
    row_spec = RowSpec(int(file.config["d_model"]), str(dtype).removeprefix("torch."))
    return LazyTextEncoder(identity, token_ids, load_encoder, pinned_device=pinned_device, row_spec=row_spec)
