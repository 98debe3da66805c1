"""A prompt analysed for compression: its units, which are protected, clause numbers and token costs."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ... import tokens
from .. import protect, segment
from ..words import CJK, PUNCT, Unit, bracket_pairs, clause_ids, rebuild, tidy, units
from ..vocabulary import ARTICLES, BRACKETS, CJK_FUNCTION, CLAUSE_STARTERS, CONJUNCTIONS, PREPOSITIONS, STOPWORDS


@dataclass
class Candidate:
    """A piece that may be dropped: why, which units, and how much value it keeps per token saved."""

    reason: str
    indices: list[int]
    density: float = 0.0  # value kept per token saved; lowest goes first


_COSTS: dict[int, tuple[tokens.Tokenizer, dict[str, int]]] = {}


def _unit_costs(tokenizer: tokens.Tokenizer, items: list[Unit]) -> list[int]:
    """Tokens each unit adds on its own (cached by text); a rough, additive stand-in for the real
    count, which the loop below checks and corrects."""
    entry = _COSTS.get(id(tokenizer))
    if entry is None or entry[0] is not tokenizer:
        if len(_COSTS) > 8:
            _COSTS.clear()
        entry = _COSTS[id(tokenizer)] = (tokenizer, {})
    cache = entry[1]
    if len(cache) > 200_000:
        cache.clear()
    costs = []
    for unit in items:
        cost = cache.get(unit.text)
        if cost is None:
            cost = cache[unit.text] = max(tokenizer.count(unit.text) - 1, 0)
        costs.append(cost)
    return costs


class AnalysedPrompt:
    """The units of one prompt and what is known about each; `measure` counts a kept subset for real."""

    def __init__(self, text: str, keep, tokenizer: tokens.Tokenizer):
        self.text = text
        self.tokenizer = tokenizer
        self.items = units(text)
        self.lower = [u.text.lower() for u in self.items]
        self.starts = [u.start for u in self.items]
        self.spans, self.keep_absent = protect.find(text, keep)
        self.protected = [False] * len(self.items)
        for span in self.spans:
            for index in self._covered(span.start, span.end, partial=True):
                self.protected[index] = True
        self.pairs = bracket_pairs(self.items)
        self.clauses = clause_ids(text, self.items, CLAUSE_STARTERS)
        self.costs = _unit_costs(tokenizer, self.items)
        self.inside = segment.inner_bounds(text)  # positions inside a Chinese word: no piece may end there

    def _whole_word(self, first: int, end: int) -> bool:
        """Whether units [first, end) start and end on word boundaries (never half a Chinese word)."""
        return self.items[first].start not in self.inside and self.items[end - 1].end not in self.inside

    def word_ids(self) -> list[int]:
        """A word number for each unit: a Chinese word's characters share one."""
        ids: list[int] = []
        word = -1
        for unit in self.items:
            if not (unit.kind == CJK and unit.start in self.inside):
                word += 1
            ids.append(word)
        return ids

    def _covered(self, start: int, end: int, partial: bool = False) -> range:
        """Indices of units inside [start, end) (or overlapping it, with `partial`)."""
        first = bisect.bisect_left(self.starts, start)
        if partial and first > 0 and self.items[first - 1].end > start:
            first -= 1
        last = bisect.bisect_left(self.starts, end)
        if not partial:
            while last > first and self.items[last - 1].end > end:
                last -= 1
        return range(first, last)

    def _droppable(self, index: int, separators: bool = False) -> bool:
        """Not protected, and not punctuation that `tidy` looks after (separators may go with a
        duplicate: "big, big" loses ", big")."""
        unit = self.items[index]
        if self.protected[index]:
            return False
        if unit.kind == PUNCT:
            return (separators and unit.is_separator) or not (unit.is_separator or unit.text in BRACKETS)
        return True

    def _value(self, index: int) -> float:
        """How much a unit is worth keeping, in proportion to its tokens: articles least, then pronouns
        and auxiliaries, conjunctions, prepositions (they carry place and direction), content words."""
        word = self.lower[index]
        kind = self.items[index].kind
        tokens = max(self.costs[index], 1)
        if kind == PUNCT:
            return 0.1
        if kind == CJK:
            return (0.2 if word in CJK_FUNCTION else 1.0) * tokens
        if word in ARTICLES:
            return 0.05
        if word in PREPOSITIONS:
            return 0.5
        if word in CONJUNCTIONS:
            return 0.3
        if word in STOPWORDS:
            return 0.15
        return 1.0 * tokens

    def _measure(self, keep: list[bool]) -> tuple[str, int]:
        return self._measure_kept(keep)[1:]

    def _measure_kept(self, keep: list[bool]) -> tuple[list[bool], str, int]:
        """(the units kept once `tidy` has cleaned the punctuation, the text, its token count)."""
        kept = tidy(self.items, keep, self.pairs, self.protected)
        text = rebuild(self.text, self.items, kept)
        return kept, text, self.tokenizer.count(text)

    def _span_kept(self, span: protect.Span, keep: list[bool]) -> bool:
        return all(keep[i] for i in self._covered(span.start, span.end, partial=True))

    def _show(self, indices: list[int]) -> str:
        """The words of a dropped piece as they stood (separate stretches joined by a space)."""
        pieces: list[str] = []
        start = previous = None
        for index in sorted(indices) + [None]:
            if index is not None and previous is not None and index == previous + 1:
                previous = index
                continue
            if start is not None:
                pieces.append(self.text[self.items[start].start : self.items[previous].end])
            start = previous = index
        return " ".join(pieces)
