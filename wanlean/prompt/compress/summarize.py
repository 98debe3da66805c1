"""The `summarize` method: a seq2seq model rewrites the prompt; protected spans it left out come back."""

from __future__ import annotations

import re

from ... import tokens
from ...charsets import CJK_CHARS
from .. import protect
from ..words import added_words, words
from .result import LOW_RATIO, TOLERANCE, CompressResult, Dropped


def summarize(text: str, ratio: float, keep, tokenizer: tokens.Tokenizer, model) -> CompressResult:
    """A seq2seq model rewrites the prompt. Protected spans it left out are appended at the end (and
    reported), so numbers, negations and the keep list survive even a careless summary."""
    from .. import text_models

    before = tokenizer.count(text)
    summary = text_models.summarize(model, text, ratio)
    summary = " ".join(summary.split())
    spans, absent = protect.find(text, keep)
    restored: list[str] = []
    lowered = summary.lower()
    for span in _outermost(spans):
        if span.text.lower() not in lowered and span.text not in restored:
            restored.append(span.text)
    if restored:
        joiner = "，" if re.search(f"[{CJK_CHARS}]", text) and not re.search(r"[A-Za-z]", text) else ", "
        summary = (summary.rstrip(" ,.;，。") + joiner if summary else "") + joiner.join(restored)
    after = tokenizer.count(summary)
    result = CompressResult(
        text=summary,
        method=f"summarize ({text_models.describe(model)})",
        tokenizer=tokenizer.label,
        tokens_before=before,
        tokens_after=after,
        target_ratio=ratio,
        protected=spans,
        protected_kept=[span.text.lower() in summary.lower() for span in spans],
        keep_absent=absent,
        words_added=added_words(text, summary),
    )
    source_words = {w.lower() for w in words(text)}
    summary_words = {w.lower() for w in words(summary)}
    result.dropped = [Dropped("left out", w) for w in dict.fromkeys(words(text)) if w.lower() not in summary_words and w.lower() in source_words]
    if restored:
        result.notes.append("the model left out protected spans; appended at the end: " + ", ".join(f'"{r}"' for r in restored))
    if result.words_added:
        result.warnings.append(f"the model added {len(result.words_added)} words that are not in the prompt (listed above)")
    if after > ratio * before + TOLERANCE * before:
        result.notes.append(f"above the target {ratio:.2f}: the model's summary plus the protected spans are longer")
    if result.achieved_ratio < LOW_RATIO:
        result.warnings.append(f"ratio {result.achieved_ratio:.2f} is below {LOW_RATIO}: most of the prompt is gone")
    return result


def _outermost(spans: list[protect.Span]) -> list[protect.Span]:
    """Spans not inside another span (sorted by start, longest first)."""
    out: list[protect.Span] = []
    reach = -1
    for span in spans:
        if span.end <= reach:
            continue
        out.append(span)
        reach = max(reach, span.end)
    return out
