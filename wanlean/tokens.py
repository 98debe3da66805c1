"""umT5 token counts, exact from the user's own files, or a labelled estimate.

Where the tokenizer comes from, in order of preference:
1. a ComfyUI text-encoder ``.safetensors`` file: ComfyUI stores umT5's sentencepiece model inside it as
   the uint8 tensor ``spiece_model``. Only that tensor is read (header + one seek), never the weights.
2. a Hugging Face tokenizer folder holding ``spiece.model`` or ``tokenizer.json`` (local files only).
3. nothing: an estimate by script (Latin, CJK, other), labelled as an estimate wherever it is shown.

A count is the sentencepiece pieces plus one for ``</s>``, which is what every Wan runtime feeds umT5.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from .errors import WanLeanError, missing_package
from .safetensors_header import read_header, read_tensor_bytes

# Official Wan, diffusers and WanVideoWrapper keep this many tokens, `</s>` included.
WAN_TEXT_LEN = 512
ESTIMATE = "estimate"
SPIECE_TENSOR = "spiece_model"


class Tokenizer:
    """Counts umT5 tokens. Subclasses are exact (a real vocabulary) or an estimate."""

    exact: bool = False
    label: str = ""  # shown to users: "exact (…)" or "estimate (…)"

    def count(self, text: str) -> int:
        """Tokens umT5 sees for `text`: pieces + 1 for `</s>`."""
        raise NotImplementedError

    def split_at(self, text: str, max_tokens: int = WAN_TEXT_LEN) -> tuple[str, str]:
        """Split `text` into (kept, lost) where `kept` is the longest prefix, ending at a word or CJK
        character boundary, whose count is at most `max_tokens`. This is what a runtime that cuts at
        `max_tokens` keeps, up to the last partial word."""
        if self.count(text) <= max_tokens:
            return text, ""
        bounds = boundaries(text)
        lo, hi = 0, len(bounds) - 1  # invariant: bounds[lo] fits (0 chars always does if max_tokens >= 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count(text[: bounds[mid]]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        cut = bounds[lo]
        return text[:cut], text[cut:]


class SentencePieceTokenizer(Tokenizer):
    exact = True

    def __init__(self, model_bytes: bytes, source: str):
        try:
            import sentencepiece
        except ImportError:
            raise missing_package("sentencepiece", "Exact umT5 token counts") from None
        try:
            self.processor = sentencepiece.SentencePieceProcessor(model_proto=model_bytes)
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError on a bad model proto
            raise WanLeanError(
                f"tokenizer: the sentencepiece model in '{source}' cannot be read ({exc}); "
                "the file may be corrupt. Download it again or choose 'estimate'."
            ) from None
        self.source = source
        self.label = f"exact (umT5 sentencepiece from {source})"
        self.eos_id = self.processor.eos_id()
        self.pad_id = self.processor.pad_id()

    def ids(self, text: str) -> list[int]:
        """Token ids without `</s>`."""
        return self.processor.encode(text)

    def count(self, text: str) -> int:
        return len(self.processor.encode(text)) + 1

    def __len__(self) -> int:
        return self.processor.get_piece_size()


class JsonTokenizer(Tokenizer):
    """A Hugging Face `tokenizer.json` (fast tokenizer) read with the `tokenizers` package."""

    exact = True

    def __init__(self, path: str):
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:
            raise missing_package("tokenizers", "Reading tokenizer.json") from None
        try:
            self.backend = HFTokenizer.from_file(path)
        except Exception as exc:
            raise WanLeanError(f"tokenizer: '{path}' is not a readable tokenizer.json ({exc}).") from None
        self.source = path
        self.label = f"exact (tokenizer.json in {os.path.basename(os.path.dirname(path))})"

    def ids(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def count(self, text: str) -> int:
        return len(self.ids(text)) + 1

    def __len__(self) -> int:
        return self.backend.get_vocab_size()


# Character classes for the estimate and for word boundaries.
_CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_ESTIMATE_RUNS = re.compile(
    rf"(?P<cjk>[{_CJK_CHARS}]+)|(?P<latin>[A-Za-z\u00c0-\u024f']+)|(?P<digits>\d+)|(?P<other>[^\W\d_]+)|(?P<punct>[^\s\w])",
    re.UNICODE,
)


class EstimateTokenizer(Tokenizer):
    """A rough count by script when no tokenizer file is available. Rules of thumb for a 256k-piece
    multilingual sentencepiece vocabulary: a common Latin-script word is one piece, long words split
    every ~6 characters; digits about two per piece; CJK about 0.75 pieces per character; other scripts
    one piece per ~4 characters; punctuation one piece each."""

    exact = False
    label = "estimate (no tokenizer file chosen; typically within ±25% for English)"

    def count(self, text: str) -> int:
        pieces = 0.0
        for match in _ESTIMATE_RUNS.finditer(text):
            run = match.group()
            kind = match.lastgroup
            if kind == "latin":
                pieces += 1 + (len(run) - 1) // 6
            elif kind == "cjk":
                pieces += max(1.0, 0.75 * len(run))
            elif kind == "digits":
                pieces += (len(run) + 1) // 2
            elif kind == "other":
                pieces += 1 + len(run) // 4
            else:
                pieces += 1
        return round(pieces) + 1


def boundaries(text: str) -> list[int]:
    """Character positions where a cut never splits a word or a CJK character: 0, after each run of
    whitespace, before and after each CJK character, and the end."""
    cuts = {0, len(text)}
    for match in re.finditer(r"\s+", text):
        cuts.add(match.start())
    for match in _CJK.finditer(text):
        cuts.add(match.start())
        cuts.add(match.end())
    return sorted(cuts)


def is_estimate_name(name: str | None) -> bool:
    return name is None or name == "" or name == ESTIMATE


# Loaded tokenizers, keyed by (real path, size, mtime): a replaced file is read again.
_CACHE: OrderedDict[tuple, Tokenizer] = OrderedDict()
_CACHE_SIZE = 8
_CACHE_LOCK = threading.Lock()
_ESTIMATOR = EstimateTokenizer()


def load_tokenizer(source: str | os.PathLike | None) -> Tokenizer:
    """The tokenizer for `source`: a text-encoder .safetensors file, a tokenizer folder, or
    None/"estimate". Raises WanLeanError with a message that names the file and the fix."""
    if source is None or is_estimate_name(os.fspath(source)):
        return _ESTIMATOR
    path = os.path.realpath(os.fspath(source))
    try:
        stat = os.stat(path)
    except OSError:
        raise WanLeanError(
            f"tokenizer: '{source}' does not exist. Choose a text-encoder file from models/text_encoders "
            "or 'estimate'."
        ) from None
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    tokenizer = _load_uncached(path)
    with _CACHE_LOCK:
        _CACHE[key] = tokenizer
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return tokenizer


def _load_uncached(path: str) -> Tokenizer:
    name = os.path.basename(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "spiece.model")):
            with open(os.path.join(path, "spiece.model"), "rb") as f:
                return SentencePieceTokenizer(f.read(), name)
        if os.path.isfile(os.path.join(path, "tokenizer.json")):
            return JsonTokenizer(os.path.join(path, "tokenizer.json"))
        raise WanLeanError(
            f"tokenizer: folder '{name}' holds neither spiece.model nor tokenizer.json. "
            "Point at a tokenizer folder or choose 'estimate'."
        )
    if not path.lower().endswith(".safetensors"):
        raise WanLeanError(
            f"tokenizer: '{name}' is not a .safetensors file. Choose the umT5 text-encoder .safetensors "
            "(e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors) or 'estimate'."
        )
    header = read_header(path, what="tokenizer")
    if SPIECE_TENSOR not in header.tensors:
        raise WanLeanError(
            f"tokenizer: '{name}' has no '{SPIECE_TENSOR}' tensor, so it holds no umT5 tokenizer "
            f"({_describe_contents(header.tensors)}). Choose ComfyUI's umT5 text-encoder file "
            "(e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors) or 'estimate'."
        )
    info = header.tensors[SPIECE_TENSOR]
    if info.dtype != "U8" or len(info.shape) != 1:
        raise WanLeanError(f"tokenizer: '{name}' has a '{SPIECE_TENSOR}' tensor of an unexpected kind ({info.dtype}).")
    return SentencePieceTokenizer(read_tensor_bytes(header, SPIECE_TENSOR), name)


def _describe_contents(tensors) -> str:
    """A few words on what a file without a tokenizer seems to be, for error messages."""
    names = list(tensors)
    if any(n.startswith(("decoder.", "encoder.conv", "conv1.")) or ".downsamples." in n for n in names):
        return "it looks like a VAE"
    if any("blocks." in n and ("self_attn" in n or "attn1" in n) for n in names):
        return "it looks like a diffusion model"
    if any(n.startswith(("text_model.", "transformer.resblocks")) for n in names):
        return "it looks like a CLIP text encoder"
    if any(n.startswith(("encoder.block.", "shared.")) for n in names):
        return "it looks like a T5 encoder saved without its tokenizer"
    return f"{len(names)} tensors, none of them a tokenizer"
