"""Shorten a prompt to a target share of its umT5 tokens, faithfully by default.

Three methods:

- ``extractive`` (default, no model, English and Chinese): keeps or drops whole words (Chinese words as
  jieba segments them) and never adds or moves one. It drops filler first (politeness, hedges,
  intensifiers, "in the background"-style padding, duplicate adjectives, repeated phrases), then the
  lowest-value clauses, then pronouns and auxiliaries, articles and prepositions. A content word never
  goes alone, and no piece goes that would leave a one-word clause. A prompt under 20 tokens is kept.
- ``token-classifier``: a token-classification model (LLMLingua-2 checkpoints are this kind) scores each
  word; the lowest-scoring words go first. Never adds words.
- ``summarize``: a seq2seq model rewrites the prompt. It may add words; the report lists every one.

Every method keeps the protected spans (`protect.py`): the `keep` list, the subject, its action and the
camera move, negations, numbers and units, colours, camera and lighting terms, quoted text and ComfyUI
weight syntax. The fit is monotone: a lower target never gives a longer result (`fit.py`). The ratio is measured in umT5
tokens (``</s>`` included) with the tokenizer given, exact from a text-encoder file or the estimate.

The package (word tables in `..vocabulary`): `analysed` (the prompt's units, protection and token costs),
`candidates` and `clauses` (what may go, in order), `fit` (the drop loop and its notes), `summarize`
(the model rewrite) and `result` (`CompressResult` and its report).
"""

from __future__ import annotations

from ... import tokens
from ...errors import WanLeanError
from .. import protect
from ..words import words
from .. import vocabulary
from ..vocabulary import CJK_FUNCTION, STOPWORDS
from .candidates import Plan
from .fit import Fit
from .result import LOW_RATIO, TOLERANCE, CompressResult, Dropped
from .summarize import summarize

__all__ = ["METHODS", "RATIO_MIN", "RATIO_MAX", "RATIO_DEFAULT", "TOLERANCE", "LOW_RATIO", "CompressResult", "Dropped",
           "check_ratio", "compress"]

METHODS = ("extractive", "token-classifier", "summarize")
RATIO_MIN, RATIO_MAX, RATIO_DEFAULT = 0.3, 1.0, 0.7
SHORT_PROMPT = 20  # tokens: a shorter prompt is mostly its subject, and is kept whole


def check_ratio(target_ratio) -> float:
    try:
        ratio = float(target_ratio)
    except (TypeError, ValueError):
        raise WanLeanError(f"target_ratio must be a number between {RATIO_MIN} and {RATIO_MAX}; got {target_ratio!r}.") from None
    if not RATIO_MIN <= ratio <= RATIO_MAX:
        raise WanLeanError(
            f"target_ratio must be between {RATIO_MIN} and {RATIO_MAX} (the share of umT5 tokens to keep, "
            f"e.g. 0.7); got {ratio:g}."
        )
    return ratio


def compress(
    text: str,
    method: str = "extractive",
    target_ratio: float = RATIO_DEFAULT,
    keep: str | list[str] | None = "",
    tokenizer: tokens.Tokenizer | str | None = None,
    model: str | None = None,
) -> CompressResult:
    """Shorten `text` to about `target_ratio` of its umT5 tokens.

    `keep`: terms never to drop, comma-separated (the template's `keywords` fit as they are).
    `tokenizer`: a Tokenizer, a text-encoder file / tokenizer folder, or None for the estimate.
    `model`: for the model methods, a local model folder or a Hugging Face id.
    """
    if method not in METHODS:
        raise WanLeanError(f"method must be one of {', '.join(METHODS)}; got '{method}'.")
    ratio = check_ratio(target_ratio)
    if not isinstance(tokenizer, tokens.Tokenizer):
        tokenizer = tokens.load_tokenizer(tokenizer)
    text = tokens.clean_text(text) if isinstance(text, str) else ""
    tokens.check_text_size(text, "text")
    if not text.strip():
        result = CompressResult(text, method, tokenizer.label, tokenizer.count(text), tokenizer.count(text), ratio)
        result.notes.append("empty text: nothing to compress, passed through")
        return result
    if method == "summarize":
        return summarize(text, ratio, keep, tokenizer, model)
    before = tokenizer.count(text)
    plan = Plan(text, keep, tokenizer)
    if method == "token-classifier":
        from .. import text_models

        scores = text_models.keep_scores(model, [u.text for u in plan.items])
        ordered = plan.model_candidates(scores)
        label = f"token-classifier ({text_models.describe(model)})"
    else:
        ordered = plan.extractive_order()
        label = "extractive"
    if before < SHORT_PROMPT and ratio < RATIO_MAX:
        result = _short(text, label, ratio, keep, tokenizer, before)
    else:
        result = Fit(plan, ratio, before).run(ordered, label)
        if not content_words(result.text) and content_words(text):
            result = _short(text, label, ratio, keep, tokenizer, before)  # never a prompt of function words only
    if model and method == "extractive":
        result.notes.append("the model input is not used by the extractive method")
    return result


def _short(text: str, method: str, ratio: float, keep, tokenizer: tokens.Tokenizer, before: int) -> CompressResult:
    """A prompt too short to shorten without losing what it shows: passed through, and said so."""
    spans, absent = protect.find(text, keep)
    result = CompressResult(text, method, tokenizer.label, before, before, ratio, spans, [True] * len(spans), absent)
    result.notes.append(
        f"could not reach {ratio:.2f} (target not reachable): a prompt of {before} tokens (under {SHORT_PROMPT}) is "
        "kept whole; shortening it would drop what it shows"
    )
    return result


def content_words(text: str) -> list[str]:
    """The words of `text` that are not articles, pronouns, auxiliaries, prepositions or particles."""
    return [w for w in words(text) if w.lower() not in STOPWORDS and w not in CJK_FUNCTION]

