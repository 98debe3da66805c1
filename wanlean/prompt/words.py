"""Words, clauses and faithful rebuilding, shared by the compressor and the truncator.

A text is split into units: a Latin-script word (``close-up``, ``24mm``, ``don't``, ``f/2.8``), a single
CJK character, or a single punctuation mark. The compressor keeps or drops whole units and rebuilds the
text from the kept ones in their original order, with the original whitespace between them, so its output
is always a subsequence of its input's units: nothing is added and nothing moves.
"""

from __future__ import annotations

import bisect
import re
from functools import lru_cache
from typing import NamedTuple

from ..charsets import CJK_CHARS

_UNIT = re.compile(
    rf"(?P<cjk>[{CJK_CHARS}])"
    # A word: word characters (not CJK), with inner ' ’ - . / : % ° × + joining pieces ("close-up", "1.5x").
    rf"|(?P<word>[^\W{CJK_CHARS}](?:[^\W{CJK_CHARS}]|['’\-./:×+](?=[^\W{CJK_CHARS}]))*[%°]?)"
    r"|(?P<punct>[^\s])"
)

WORD, CJK, PUNCT = "word", "cjk", "punct"

# Marks that separate clauses; the value is its strength (a sentence end beats a comma when two meet).
SEPARATORS = {
    ",": 1, "，": 1, "、": 1, ";": 2, "；": 2, ":": 2, "：": 2, "-": 1, "–": 1, "—": 1, "…": 3,
    ".": 3, "。": 3, "!": 3, "！": 3, "?": 3, "？": 3,
}
OPENERS = {"(": ")", "[": "]", "{": "}", "（": "）", "【": "】", "《": "》", "〈": "〉", "<": ">"}
CLOSERS = {v: k for k, v in OPENERS.items()}


class Unit(NamedTuple):
    """One unit of a text. A named tuple, not a dataclass: a long prompt makes thousands, and the compressor
    reads `is_separator` hundreds of thousands of times, so it is computed once, when the unit is made."""

    text: str
    start: int
    end: int
    kind: str  # WORD, CJK or PUNCT
    is_separator: bool = False  # a clause mark (`SEPARATORS`); set by `units`


def units(text: str) -> list[Unit]:
    """The units of `text`, in order. Whitespace belongs to no unit. (A fresh list; the split is cached,
    as the compressor and the protection finder ask for the same text several times.)"""
    return list(_units(text))


@lru_cache(maxsize=256)
def _units(text: str) -> tuple[Unit, ...]:
    return tuple(
        Unit(m.group(), m.start(), m.end(), m.lastgroup, m.lastgroup == PUNCT and m.group() in SEPARATORS)
        for m in _UNIT.finditer(text)
    )


def words(text: str) -> list[str]:
    """The words of `text` (Latin words and CJK characters; punctuation left out)."""
    return [u.text for u in units(text) if u.kind != PUNCT]


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(item == other for other in it) for item in needle)


def added_words(source: str, result: str) -> list[str]:
    """Words of `result` that `source` does not contain (compared case-insensitively), in order. (The
    result is split by the regex alone: it is seen once, so caching its units would only push the
    source's out of the cache.)"""
    known = {u.text.lower() for u in _units(source) if u.kind != PUNCT}
    found = (m.group() for m in _UNIT.finditer(result) if m.lastgroup != PUNCT)
    return [w for w in found if w.lower() not in known]


def clause_ids(text: str, items: list[Unit], starters: frozenset[str] = frozenset()) -> list[int]:
    """A clause number for each unit. Clauses end at separators and line breaks; a word in `starters`
    (lower case, e.g. "and", "while", "with") also opens a new clause."""
    ids: list[int] = []
    clause = 0
    previous_end = 0
    for unit in items:
        if "\n" in text[previous_end : unit.start]:
            clause += 1
        if unit.kind == WORD and unit.text.lower() in starters and ids and ids[-1] == clause:
            clause += 1
        ids.append(clause)
        if unit.is_separator:
            clause += 1
        previous_end = unit.end
    return ids


def bracket_pairs(items: list[Unit]) -> list[tuple[int, int]]:
    """Index pairs of matching brackets ((), [], （）, 《》 ...)."""
    pairs = []
    stack: list[int] = []
    for index, unit in enumerate(items):
        if unit.kind != PUNCT:
            continue
        if unit.text in OPENERS:
            stack.append(index)
        elif unit.text in CLOSERS:
            for depth in range(len(stack) - 1, -1, -1):
                if items[stack[depth]].text == CLOSERS[unit.text]:
                    pairs.append((stack[depth], index))
                    del stack[depth:]
                    break
    return pairs


def tidy(
    items: list[Unit], keep: list[bool], pairs: list[tuple[int, int]] | None = None, locked: list[bool] | None = None
) -> list[bool]:
    """Drop punctuation that dropping words left dangling: separators at the start, runs of separators
    (the strongest one stays, so ", ." becomes "."), and brackets that now enclose nothing. Only removes
    units, never adds one, and never removes a `locked` one (punctuation inside a protected span)."""
    keep = list(keep)
    locked = locked or [False] * len(items)
    for opener, closer in pairs if pairs is not None else bracket_pairs(items):
        if (keep[opener] or keep[closer]) and not (locked[opener] or locked[closer]):
            inside = range(opener + 1, closer)
            if not any(keep[i] for i in inside):
                keep[opener] = keep[closer] = False
    run: list[int] = []  # kept separators since the last kept non-separator unit
    seen_content = False
    for index, unit in enumerate(items):
        if not keep[index]:
            continue
        if unit.is_separator and not locked[index]:
            if not seen_content:
                keep[index] = False  # nothing before it to separate
                continue
            run.append(index)
            continue
        _collapse(items, keep, run)
        run = []
        seen_content = True
    if run and run[-1] != len(items) - 1:
        # Separators left at the end by dropping what followed them: a comma or a dash there dangles.
        for index in run:
            if SEPARATORS[items[index].text] < 2:
                keep[index] = False
        run = [i for i in run if keep[i]]
    _collapse(items, keep, run)
    return keep


def _collapse(items: list[Unit], keep: list[bool], run: list[int]) -> None:
    if len(run) < 2:
        return
    best = max(run, key=lambda i: (SEPARATORS[items[i].text], -i))
    for index in run:
        if index != best:
            keep[index] = False


def rebuild(text: str, items: list[Unit], keep: list[bool]) -> str:
    """The kept units in their order, joined by the whitespace that preceded them in `text`. Where two
    units that were apart now meet without whitespace and could fuse into a new word ("single'" + "aa"),
    a space goes between them: the result always splits into exactly the kept units."""
    joined, starts, junctions = _join(text, items, keep, spaced=False)
    if junctions and not _splits_as_kept(joined, starts, junctions):
        joined, _, _ = _join(text, items, keep, spaced=True)
    return joined


def _splits_as_kept(joined: str, starts: list[tuple[int, str]], junctions: list[int]) -> bool:
    """True when the whitespace-free stretch around each junction splits into exactly the kept units placed
    there. No unit spans whitespace, so a stretch splits alone as it does inside the whole text: checking
    the stretches is checking the text, without splitting all of it again."""
    offsets = [offset for offset, _ in starts]
    for junction in junctions:
        low = junction
        while low > 0 and not joined[low - 1].isspace():
            low -= 1
        high = junction
        while high < len(joined) and not joined[high].isspace():
            high += 1
        first, last = bisect.bisect_left(offsets, low), bisect.bisect_left(offsets, high)
        expected = [unit_text for _, unit_text in starts[first:last]]
        if [m.group() for m in _UNIT.finditer(joined, low, high)] != expected:
            return False
    return True


def _join(text: str, items: list[Unit], keep: list[bool], spaced: bool) -> tuple[str, list[tuple[int, str]], list[int]]:
    """(joined text, (offset, text) of each kept unit in it, offsets where two units meet unspaced that
    could fuse; always empty when `spaced`)."""
    out: list[str] = []
    starts: list[tuple[int, str]] = []
    junctions: list[int] = []
    length = 0
    previous = -1
    for index, unit in enumerate(items):
        if not keep[index]:
            continue
        gap = ""
        if previous >= 0:
            gap_before = text[items[index - 1].end : unit.start]
            if previous == index - 1:
                gap = gap_before
            else:
                gap_after_previous = text[items[previous].end : items[previous + 1].start]
                if gap_before:
                    gap = gap_before
                elif gap_after_previous and unit.kind != PUNCT:
                    gap = gap_after_previous
                elif items[previous].kind == WORD and unit.kind == WORD:
                    gap = " "
                elif CJK not in (items[previous].kind, unit.kind):
                    if spaced:
                        gap = gap_after_previous or " "
                    else:
                        junctions.append(length)
        if gap:
            out.append(gap)
            length += len(gap)
        starts.append((length, unit.text))
        out.append(unit.text)
        length += len(unit.text)
        previous = index
    return "".join(out), starts, junctions
