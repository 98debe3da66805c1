"""umT5 text encoding that costs what the prompt costs.

diffusers pads every prompt to 512 tokens before the encoder runs, then keeps the real rows and pads
back with zeros. The encoder's real-token outputs do not depend on masked padding, so we run it on the
real tokens only (prompt and negative batched together, padded to the longer of the two, with the
attention mask), then zero-pad each to 512 rows exactly as diffusers and official Wan do: the DiT still
sees 512 rows. Prompts over 512 tokens keep the first 511 pieces and `</s>`, like official Wan, and the
result says so.
"""

from __future__ import annotations

import functools
import html
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

from .embedding_cache import CachedEmbedding, EmbeddingCache, cache_key
from ..tokens import WAN_TEXT_LEN


def clean_prompt(text: str) -> str:
    """What diffusers (`prompt_clean`) and official Wan (`clean='whitespace'`) do to a prompt before
    tokenizing: ftfy if installed, HTML unescape twice, whitespace collapsed and stripped."""
    ftfy = _ftfy()
    if ftfy is not None:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


@functools.lru_cache(maxsize=1)
def _ftfy():
    """ftfy if installed (diffusers uses it when it is), looked up once."""
    try:
        import ftfy
    except ImportError:
        return None
    return ftfy


@dataclass
class EncodedText:
    rows: object  # torch.Tensor [kept_tokens, d_model]: the real rows only, on the CPU
    total_tokens: int  # tokens before the cut, `</s>` included
    cache: str  # "memory", "disk", "miss" (encoded now) or "off"

    @property
    def kept_tokens(self) -> int:
        return int(self.rows.shape[0])

    @property
    def cut_tokens(self) -> int:
        return self.total_tokens - self.kept_tokens


@dataclass
class EncodeStats:
    encoder_forwards: int = 0
    encoder_loaded_now: bool = False
    seconds: float = 0.0
    texts: list = field(default_factory=list)  # EncodedText per input text


def truncate(ids: list[int], max_tokens: int = WAN_TEXT_LEN) -> list[int]:
    """The first `max_tokens` ids with the final `</s>` kept, as tokenizers truncate with special tokens."""
    if len(ids) <= max_tokens:
        return list(ids)
    return list(ids[: max_tokens - 1]) + [ids[-1]]


def encode_texts(source, texts: list[str], cache: EmbeddingCache | None = None, place=None) -> tuple[list[EncodedText], EncodeStats]:
    """Encode each of `texts` with the `TextEncoderSource` `source`, using `cache` when given.

    Texts missing from the cache are tokenized, cut to 512 and encoded in ONE batched forward. `place`
    is a context-manager factory `place(encoder) -> device` that puts the encoder where it should run
    (memory modes); by default it runs where it is. On an all-hit call the encoder is not loaded."""
    started = time.perf_counter()
    stats = EncodeStats()
    cleaned = [clean_prompt(text) for text in texts]
    results: list[EncodedText | None] = [None] * len(texts)
    keys = [cache_key(source.identity, text) for text in cleaned]

    to_encode: dict[str, list[int]] = {}  # cleaned text → positions, so a text given twice runs once
    for position, (text, key) in enumerate(zip(cleaned, keys)):
        if cache is not None:
            entry, where = cache.get(key, getattr(source, "row_spec", None))
            if entry is not None:
                results[position] = EncodedText(entry.rows, entry.total_tokens, where)
                continue
        to_encode.setdefault(text, []).append(position)

    if to_encode:
        unique_texts = list(to_encode)
        all_ids = [source.token_ids(text) for text in unique_texts]
        kept_ids = [truncate(ids) for ids in all_ids]
        was_loaded = bool(getattr(source, "loaded", True))
        encoder = source.encoder()
        stats.encoder_loaded_now = not was_loaded
        rows = _run_encoder(encoder, kept_ids, getattr(source, "pad_id", 0), place)
        stats.encoder_forwards += 1
        for text, ids, text_rows in zip(unique_texts, all_ids, rows):
            positions = to_encode[text]
            if cache is not None:
                cache.put(keys[positions[0]], CachedEmbedding(text_rows, len(ids)), source.identity)
            for position in positions:
                results[position] = EncodedText(text_rows, len(ids), "miss" if cache is not None else "off")

    stats.seconds = time.perf_counter() - started
    stats.texts = results
    return results, stats


def _run_encoder(encoder, batch_ids: list[list[int]], pad_id: int, place) -> list:
    """One forward over the real tokens: pad to the longest text in the batch, mask the padding, return
    each text's real rows on the CPU."""
    import torch

    longest = max(len(ids) for ids in batch_ids)
    input_ids = torch.full((len(batch_ids), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch_ids), longest), dtype=torch.long)
    for row, ids in enumerate(batch_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    with (place(encoder) if place is not None else nullcontext(_module_device(encoder))) as device, torch.no_grad():
        hidden = encoder(input_ids.to(device), attention_mask.to(device)).last_hidden_state
        return [hidden[row, : len(ids)].detach().to("cpu") for row, ids in enumerate(batch_ids)]


def _module_device(module):
    import torch

    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def pad_rows(rows, text_len: int = WAN_TEXT_LEN):
    """`[tokens, d]` → `[text_len, d]` with zero rows after the real ones (diffusers/official Wan)."""
    import torch

    return torch.cat([rows, rows.new_zeros(text_len - rows.shape[0], rows.shape[1])])


def padded_batch(encoded: list[EncodedText], device=None, dtype=None, text_len: int = WAN_TEXT_LEN):
    """A `[B, 512, d]` tensor of the encoded texts, as `WanPipeline.encode_prompt` returns them."""
    import torch

    batch = torch.stack([pad_rows(item.rows, text_len) for item in encoded])
    return batch.to(device=device, dtype=dtype) if (device is not None or dtype is not None) else batch
