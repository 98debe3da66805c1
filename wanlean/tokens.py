"""umT5 token counts, exact from the user's own files, or a labelled estimate.

Where the tokenizer comes from, in order of preference:
1. a ComfyUI text-encoder ``.safetensors`` file: ComfyUI stores umT5's sentencepiece model inside it as
   the uint8 tensor ``spiece_model``. Only that tensor is read (header + one seek), never the weights.
2. a Hugging Face tokenizer folder holding ``spiece.model`` or ``tokenizer.json`` (local files only).
3. nothing: an estimate by script (Latin, CJK, other), labelled as an estimate wherever it is shown.

A count is the sentencepiece pieces plus one for ``</s>``, which is what every Wan runtime feeds umT5.
`wanlean.token_report.analyze` turns counts into what each runtime does with the prompt.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict

from .charsets import CJK_CHARS
from .errors import WanLeanError, missing_package
from .safetensors_header import read_header, read_tensor_bytes

# Official Wan, diffusers and WanVideoWrapper keep this many tokens, `</s>` included.
WAN_TEXT_LEN = 512
# Hosted Wan APIs limit characters, not tokens (published API specs).
API_PROMPT_CHARS = 800
API_NEGATIVE_CHARS = 500
ESTIMATE = "estimate"
SPIECE_TENSOR = "spiece_model"
# umT5's real sentencepiece model is about 4.5 MB; anything far larger is not a tokenizer.
MAX_SPIECE_BYTES = 64 * 1024 * 1024

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with lone UTF-16 surrogates (which no encoder can take) replaced by U+FFFD. Browsers can
    send them (a half-deleted emoji); sentencepiece refuses the whole string otherwise."""
    if not isinstance(text, str):
        raise WanLeanError(f"text must be a string; got {type(text).__name__}.")
    return _LONE_SURROGATE.sub("\ufffd", text)


MAX_TEXT_CHARS = 200_000  # Wan reads 512 tokens (a few thousand characters); far more is a mistake or an attack


def check_text_size(text: str, what: str = "text") -> None:
    """Refuse a text input over MAX_TEXT_CHARS with a message naming the input and the fix."""
    if len(text) > MAX_TEXT_CHARS:
        raise WanLeanError(
            f"{what}: {len(text):,} characters is over the {MAX_TEXT_CHARS:,}-character limit for a prompt "
            f"(Wan reads at most {WAN_TEXT_LEN} tokens, a few thousand characters). Shorten the text or split it."
        )


def lone_surrogates(text: str) -> int:
    """How many lone UTF-16 surrogates `clean_text` would replace."""
    return len(_LONE_SURROGATE.findall(text))


class Tokenizer:
    """Counts umT5 tokens. Subclasses are exact (a real vocabulary) or an estimate."""

    exact: bool = False
    label: str = ""  # shown to users: "exact (…)" or "estimate (…)"
    source: str = ESTIMATE  # the file or folder name it came from

    def count(self, text: str) -> int:
        """Tokens umT5 sees for `text`: pieces + 1 for `</s>`."""
        raise NotImplementedError

    def split_at(self, text: str, max_tokens: int = WAN_TEXT_LEN) -> tuple[str, str]:
        """Split `text` into (kept, lost) where `kept` is the longest prefix, ending at a word or CJK
        character boundary, whose count is at most `max_tokens`. This is what a runtime that cuts at
        `max_tokens` keeps, up to the last partial word."""
        if max_tokens < 1:
            raise WanLeanError(f"max_tokens must be at least 1 (umT5 always adds </s>); got {max_tokens}.")
        text = clean_text(text)
        if self.count(text) <= max_tokens:
            return text, ""
        bounds = boundaries(text)
        lo, hi = 0, len(bounds) - 1  # invariant: bounds[lo] fits (0 chars count 1), bounds[hi] does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.count(text[: bounds[mid]]) <= max_tokens:
                lo = mid
            else:
                hi = mid
        cut = bounds[lo]
        return text[:cut], text[cut:]


class SentencePieceTokenizer(Tokenizer):
    exact = True

    def __init__(self, model_bytes: bytes, source: str):
        try:
            import sentencepiece
        except ImportError:
            raise missing_package("sentencepiece", "Exact umT5 token counts") from None
        unreadable = WanLeanError(
            f"tokenizer: the sentencepiece model in '{source}' cannot be read; the file may be corrupt. "
            "Download it again or choose 'estimate'."
        )
        if not model_bytes:
            raise unreadable  # sentencepiece accepts b"" and fails later, on the first encode
        try:
            self.processor = sentencepiece.SentencePieceProcessor(model_proto=model_bytes)
        except Exception:  # sentencepiece raises RuntimeError/OSError on a bad model proto
            raise unreadable from None
        if self.processor.get_piece_size() < 3:
            raise unreadable
        self.source = source
        self.label = f"exact (umT5 sentencepiece from {source})"
        self.eos_id = self.processor.eos_id()
        self.pad_id = self.processor.pad_id()

    def ids(self, text: str) -> list[int]:
        """Token ids without `</s>`."""
        try:
            return self.processor.encode(text)
        except RuntimeError:  # lone surrogates; cleaning costs a regex pass, so only on failure
            return self.processor.encode(clean_text(text))

    def count(self, text: str) -> int:
        return len(self.ids(text)) + 1

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
        folder = os.path.basename(os.path.dirname(path))
        try:
            self.backend = HFTokenizer.from_file(path)
        except Exception as exc:
            raise WanLeanError(
                f"tokenizer: the tokenizer.json in '{folder}' cannot be read ({str(exc)[:200]}); "
                "it may be corrupt or from a newer 'tokenizers'. Choose the text-encoder file or 'estimate'."
            ) from None
        self.source = folder
        self.label = f"exact (tokenizer.json in {folder})"

    def ids(self, text: str) -> list[int]:
        return self.backend.encode(clean_text(text), add_special_tokens=False).ids

    def count(self, text: str) -> int:
        return len(self.ids(text)) + 1

    def __len__(self) -> int:
        return self.backend.get_vocab_size()


# Character classes for the estimate and for word boundaries.
_CJK = re.compile(f"[{CJK_CHARS}]")
_ESTIMATE_RUNS = re.compile(
    rf"(?P<cjk>[{CJK_CHARS}]+)|(?P<latin>[A-Za-z\u00c0-\u024f']+)|(?P<digits>\d+)|(?P<other>[^\W\d_]+)|(?P<punct>[^\s\w])",
    re.UNICODE,
)


class EstimateTokenizer(Tokenizer):
    """A rough count by script when no tokenizer file is available. Rules of thumb for a 256k-piece
    multilingual sentencepiece vocabulary: a common Latin-script word is one piece, long words split
    every ~6 characters; digits about two per piece; CJK about 0.75 pieces per character; other scripts
    one piece per ~4 characters; punctuation one piece each. Not calibrated against umT5's vocabulary
    (none ships offline), so it is only ever shown as an estimate."""

    exact = False
    label = "estimate (no tokenizer file chosen: counted by script, not exact)"

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
    """Character positions where a cut never splits a word or a CJK character: 0, the start of each run
    of whitespace, before and after each CJK character, and the end."""
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


def file_identity(source: str | os.PathLike | None) -> str:
    """A string that changes when the tokenizer file is replaced (for ComfyUI's IS_CHANGED)."""
    if source is None or is_estimate_name(os.fspath(source)):
        return ESTIMATE
    try:
        stat = os.stat(os.fspath(source))
    except OSError:
        return f"missing:{os.fspath(source)}"
    return f"{os.path.realpath(os.fspath(source))}:{stat.st_size}:{stat.st_mtime_ns}"


def load_tokenizer(source: str | os.PathLike | None) -> Tokenizer:
    """The tokenizer for `source`: a text-encoder .safetensors file, a tokenizer folder, or
    None/"estimate". Raises WanLeanError with a message that names the file and the fix."""
    if source is None or is_estimate_name(os.fspath(source)):
        return _ESTIMATOR
    try:
        path = os.path.realpath(os.fspath(source))
        stat = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL byte in the name
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


# umT5's vocabulary: 256,000 sentencepiece pieces, 256,300 with the extra ids, 256,384 in the model's embedding.
UMT5_VOCABULARY = range(256_000, 256_385)


def _umt5_or_named(tokenizer: Tokenizer, name: str) -> Tokenizer:
    """A tokenizer folder is called exact only when its vocabulary is umT5's size; any other counts
    exactly for its own vocabulary, not umT5's, and is named so."""
    size = len(tokenizer)
    if size not in UMT5_VOCABULARY:
        tokenizer.exact = False
        tokenizer.label = f"tokenizer {name} (not umT5: {size:,} pieces, umT5 has 256,384)"
    return tokenizer


def _load_uncached(path: str) -> Tokenizer:
    name = os.path.basename(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "spiece.model")):
            try:
                with open(os.path.join(path, "spiece.model"), "rb") as f:
                    model_bytes = f.read(MAX_SPIECE_BYTES + 1)
            except OSError as exc:
                raise WanLeanError(f"tokenizer: cannot read spiece.model in '{name}' ({exc.strerror}).") from None
            if len(model_bytes) > MAX_SPIECE_BYTES:
                raise WanLeanError(f"tokenizer: spiece.model in '{name}' is too large to be a sentencepiece model.")
            return _umt5_or_named(SentencePieceTokenizer(model_bytes, name), name)
        if os.path.isfile(os.path.join(path, "tokenizer.json")):
            return _umt5_or_named(JsonTokenizer(os.path.join(path, "tokenizer.json")), name)
        raise WanLeanError(
            f"tokenizer: folder '{name}' holds neither spiece.model nor tokenizer.json. "
            "Point at a tokenizer folder or choose 'estimate'."
        )
    if not path.lower().endswith(".safetensors"):
        raise WanLeanError(
            f"tokenizer: '{name}' is not a .safetensors file. Choose the umT5 text-encoder .safetensors "
            "(e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors) or 'estimate'."
        )
    try:
        header = read_header(path, what="tokenizer")
    except OSError as exc:  # unreadable (permissions, I/O error)
        raise WanLeanError(f"tokenizer: cannot read '{name}' ({exc.strerror}).") from None
    if SPIECE_TENSOR not in header.tensors:
        raise WanLeanError(
            f"tokenizer: '{name}' has no '{SPIECE_TENSOR}' tensor, so it holds no umT5 tokenizer "
            f"({_describe_contents(header.tensors)}). Choose ComfyUI's umT5 text-encoder file "
            "(e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors) or 'estimate'."
        )
    info = header.tensors[SPIECE_TENSOR]
    if info.dtype != "U8" or len(info.shape) != 1 or info.end - info.start > MAX_SPIECE_BYTES:
        raise WanLeanError(
            f"tokenizer: '{name}' has a '{SPIECE_TENSOR}' tensor of an unexpected kind "
            f"({info.dtype}, shape {list(info.shape)}); it is not a sentencepiece model. Choose 'estimate'."
        )
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
