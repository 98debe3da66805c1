"""Fit a prompt into a token budget by keeping its head and its tail and cutting the middle.

Wan runtimes cut a prompt at 512 tokens (``</s>`` included) and lose its end, where style and camera
words usually sit. Keeping the head (subject, scene) and the tail (style, camera) and dropping the middle
keeps more of what matters. Cuts fall at clause or sentence boundaries when that costs little, never inside
a word, a CJK character or a Chinese word (jieba's segmentation, `segment.py`), and never inside an atom: a
weight group `(…:1.2)`, a `<lora:…>` tag or a quoted span is kept whole or dropped whole (`protect.atoms`). The result is counted again with the same tokenizer:
it never exceeds the budget. Work is linear in the text (one pass for boundaries, O(log n) real counts).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from ..errors import WanLeanError
from ..tokens import WAN_TEXT_LEN, Tokenizer, boundaries, check_text_size, clean_text, load_tokenizer
from ..charsets import CJK_CHARS
from . import segment
from .protect import atoms
from .words import SEPARATORS

TAIL_SHARE = 3 / 8  # the default tail: 3/8 of the budget (192 of 512; the seed's 24 of 64)
AUTO_TAIL = -1
# A clause boundary is preferred to the word boundary nearest the limit when it keeps at least this share
# of the tokens the word boundary would keep.
CLAUSE_PREFERENCE = 0.75


@dataclass
class TruncateResult:
    text: str
    dropped: str
    tokenizer: str
    tokens_before: int
    tokens_after: int
    max_tokens: int
    tail_budget: int
    head_tokens: int = 0
    tail_tokens: int = 0
    head_cut: str = ""  # "clause", "word" or "" when nothing was cut
    tail_cut: str = ""
    notes: list[str] | None = None

    @property
    def changed(self) -> bool:
        return bool(self.dropped)

    @property
    def headline(self) -> str:
        """The one line a node shows while it runs: the token count and whether anything was cut."""
        if not self.changed:
            return f"tokens: {self.tokens_before} <= max_tokens {self.max_tokens}: passed through unchanged"
        return f"tokens: {self.tokens_before} -> {self.tokens_after} (max_tokens {self.max_tokens}, </s> included)"

    def report(self) -> str:
        lines = [f"WanLeanTruncate; tokens {self.tokenizer}", self.headline]
        if self.changed:
            lines.append(f"kept head: {self.head_tokens} tokens (cut at a {self.head_cut} boundary)")
            lines.append(f"kept tail: {self.tail_tokens} tokens of a {self.tail_budget}-token tail budget (cut at a {self.tail_cut} boundary)")
            lines.append(f"dropped middle: {len(self.dropped)} characters")
        lines.extend(f"note: {n}" for n in self.notes or [])
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "max_tokens": self.max_tokens,
            "tail_budget": self.tail_budget,
            "truncated": self.changed,
            "dropped_middle": self.dropped,
            "notes": list(self.notes or []),
        }


def tail_budget(max_tokens: int, tail_tokens: int = AUTO_TAIL) -> int:
    """Tokens kept for the tail: `tail_tokens`, or 3/8 of `max_tokens` when it is -1."""
    if tail_tokens is None or tail_tokens < 0:
        return int(max_tokens * TAIL_SHARE)
    return tail_tokens


def truncate(
    text: str,
    max_tokens: int = WAN_TEXT_LEN,
    tail_tokens: int = AUTO_TAIL,
    tokenizer: Tokenizer | str | None = None,
) -> TruncateResult:
    """Keep the head and the tail of `text` so that it counts at most `max_tokens` (``</s>`` included).

    `tail_tokens`: tokens for the tail; -1 (default) means 3/8 of `max_tokens`, 0 keeps the head only.
    The head gets the rest. Text within the budget passes through unchanged.
    """
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = load_tokenizer(tokenizer)
    if not isinstance(max_tokens, int) or max_tokens < 2:
        raise WanLeanError(f"max_tokens must be a whole number of at least 2 (one token plus </s>), e.g. 512; got {max_tokens!r}.")
    if not isinstance(tail_tokens, int) or tail_tokens < AUTO_TAIL:
        raise WanLeanError(f"tail_tokens must be -1 (3/8 of max_tokens), 0 (head only) or a positive number; got {tail_tokens!r}.")
    tail = tail_budget(max_tokens, tail_tokens)
    if tail > max_tokens - 1:
        raise WanLeanError(
            f"tail_tokens ({tail}) must leave room for </s> within max_tokens ({max_tokens}): use at most "
            f"{max_tokens - 1}, or -1 for 3/8 of max_tokens."
        )
    text = clean_text(text) if isinstance(text, str) else ""
    check_text_size(text, "text")
    before = tokenizer.count(text)
    result = TruncateResult(text, "", tokenizer.label, before, before, max_tokens, tail, notes=[])
    if before <= max_tokens:
        if not text.strip():
            result.notes.append("empty text: passed through")
        return result
    return _Cutter(text, tokenizer).cut(result)


class _Cutter:
    """Finds the cut points with additive per-piece estimates, then checks every answer with a real
    count, so the result is exact however rough the estimates are."""

    def __init__(self, text: str, tokenizer: Tokenizer):
        self.text = text
        self.tokenizer = tokenizer
        inside_words = segment.inner_bounds(text)  # no cut inside a Chinese word: 合興百貨 never becomes 興百貨
        self.bounds = [b for b in _outside_atoms(boundaries(text), atoms(text)) if b not in inside_words]
        # Estimated pieces before each boundary: prefix sums over the stretches between boundaries.
        self.prefix = [0]
        cache: dict[str, int] = {}
        for a, b in zip(self.bounds, self.bounds[1:]):
            stretch = text[a:b]
            cost = cache.get(stretch)
            if cost is None:
                cost = cache[stretch] = tokenizer.count(stretch) - 1
            self.prefix.append(self.prefix[-1] + cost)
        self.clause_bounds = set(self._clause_boundaries())

    def _clause_boundaries(self):
        """Boundaries right after a separator (and the whitespace after it) or at a line start. One look
        back over whitespace per boundary: the whitespace runs are disjoint, so this is linear."""
        text = self.text
        for index, position in enumerate(self.bounds):
            if position == 0 or position == len(text):
                continue
            before = position
            while before > 0 and text[before - 1].isspace():
                before -= 1
            if before and (text[before - 1] in SEPARATORS or "\n" in text[before : position + 1]):
                yield index

    def pieces(self, start: int, end: int) -> int:
        """Real pieces (no </s>) of text[start:end], stripped the way it will appear."""
        return self.tokenizer.count(self.text[start:end].strip()) - 1

    def _head_end(self, budget: int) -> int:
        """Index of the last boundary whose head fits `budget` pieces (real count)."""
        if budget <= 0:
            return 0
        prefix, bounds = self.prefix, self.bounds
        guess = bisect.bisect_right(prefix, budget) - 1
        guess = max(0, min(guess, len(bounds) - 1))
        return self._largest_fitting(guess, lambda i: self.pieces(0, bounds[i]) <= budget, len(bounds) - 1)

    def _tail_start(self, budget: int) -> int:
        """Index of the first boundary whose tail fits `budget` pieces (real count)."""
        last = len(self.bounds) - 1
        if budget <= 0:
            return last
        total = self.prefix[-1]
        # prefix[last] - prefix[i] <= budget  <=>  prefix[i] >= total - budget
        guess = bisect.bisect_left(self.prefix, total - budget)
        guess = max(0, min(guess, last))
        # Search in mirrored indices so "largest fitting" means "longest tail".
        found = self._largest_fitting(last - guess, lambda j: self.pieces(self.bounds[last - j], len(self.text)) <= budget, last)
        return last - found

    @staticmethod
    def _largest_fitting(guess: int, fits, top: int) -> int:
        """Largest i in [0, top] with fits(i), assuming fits is monotone (true then false), starting
        from a guess: gallop to bracket the answer, then bisect. Index 0 always fits (empty)."""
        if fits(guess):
            lo, step = guess, 1
            hi = top + 1
            while lo + step <= top:
                if fits(lo + step):
                    lo += step
                    step *= 2
                else:
                    hi = lo + step
                    break
        else:
            hi, step = guess, 1
            lo = 0
            while hi - step > 0:
                if fits(hi - step):
                    lo = hi - step
                    break
                hi -= step
                step *= 2
        while hi - lo > 1:  # invariant: fits(lo), not fits(hi) (hi may be top + 1)
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        return lo

    def _prefer_clause(self, index: int, head: bool) -> tuple[int, str]:
        """Move a cut to a clause boundary when that keeps most of what the word boundary keeps."""
        if index in self.clause_bounds:
            return index, "clause"
        prefix = self.prefix
        last = len(self.bounds) - 1
        kept = prefix[index] if head else prefix[last] - prefix[index]
        candidates = [c for c in self.clause_bounds if (c < index if head else c > index)]
        if candidates and kept > 0:
            best = max(candidates) if head else min(candidates)
            kept_there = prefix[best] if head else prefix[last] - prefix[best]
            if kept_there >= CLAUSE_PREFERENCE * kept:
                return best, "clause"
        return index, "word"

    def cut(self, result: TruncateResult) -> TruncateResult:
        text, bounds, tokenizer = self.text, self.bounds, self.tokenizer
        max_pieces = result.max_tokens - 1
        tail_index = self._tail_start(result.tail_budget) if result.tail_budget > 0 else len(bounds) - 1
        tail_index, tail_cut = self._prefer_clause(tail_index, head=False) if tail_index < len(bounds) - 1 else (tail_index, "word")
        tail_text = text[bounds[tail_index] :].strip()
        tail_pieces = tokenizer.count(tail_text) - 1 if tail_text else 0

        head_index = self._head_end(max_pieces - tail_pieces)
        head_index = min(head_index, tail_index)
        head_index, head_cut = self._prefer_clause(head_index, head=True) if head_index > 0 else (0, "word")
        # Joining can tokenize differently from the parts: check the whole, give back head words if needed.
        while True:
            joined = _join(text[: bounds[head_index]].strip(), tail_text)
            count = tokenizer.count(joined)
            if count <= result.max_tokens or head_index == 0:
                break
            head_index -= 1
            head_cut = "word"
        if count > result.max_tokens:  # the tail alone did not fit once joined: shrink it the same way
            while tail_index < len(bounds) - 1 and count > result.max_tokens:
                tail_index += 1
                tail_text = text[bounds[tail_index] :].strip()
                joined = tail_text
                count = tokenizer.count(joined)
            tail_cut = "word"

        head_text = text[: bounds[head_index]].strip()
        result.text = joined
        result.dropped = text[bounds[head_index] : bounds[tail_index]].strip()
        result.tokens_after = count
        result.head_tokens = tokenizer.count(head_text) - 1 if head_text else 0
        result.tail_tokens = tokenizer.count(tail_text) - 1 if tail_text else 0
        result.head_cut, result.tail_cut = head_cut, tail_cut
        if not head_text and not tail_text:
            result.notes.append("no word boundary to cut at within the budget (one very long word?): nothing was kept")
        return result


def _outside_atoms(bounds: list[int], spans: list[tuple[int, int]]) -> list[int]:
    """The boundaries that do not fall strictly inside an atom span (both lists sorted)."""
    kept, span_index = [], 0
    for position in bounds:
        while span_index < len(spans) and spans[span_index][1] <= position:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] < position < spans[span_index][1]:
            continue
        kept.append(position)
    return kept


def _join(head: str, tail: str) -> str:
    """Head and tail with one space between them (none between two CJK characters): whitespace only,
    and the joined text is what gets counted."""
    if not head or not tail:
        return head or tail
    if _CJK_EDGE.match(head[-1]) and _CJK_EDGE.match(tail[0]):
        return head + tail
    return head + " " + tail


_CJK_EDGE = re.compile(f"[{CJK_CHARS}，。；：！？、]")
