"""Chinese words: jieba's segmentation with its part-of-speech tags, offline.

Chinese is written without spaces, so a pattern that looks at characters fires inside words: 黑 of 黑体
("bold type") is not a colour, 白 of 白人 not a colour, 二 of 二次元 not a count, 无 of 无人机 ("drone") not
a negation. The prompt tools therefore look at Chinese by words. jieba ships its dictionary inside its
package (nothing is downloaded); it runs here without its HMM guesser, which is twenty times faster and
keeps unknown names as single characters rather than inventing words.

Only runs of CJK characters are segmented; Latin text keeps its own word rules (`words.py`). Without jieba
installed, every CJK character is its own word (the behaviour before segmentation) and `available()`
says so.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache

from ..charsets import CJK_CHARS

_CJK_RUN = re.compile(f"[{CJK_CHARS}]+")


@dataclass(frozen=True)
class Word:
    start: int
    end: int
    text: str
    flag: str  # jieba's part of speech: n noun, v verb, a adjective, m numeral, d adverb, p preposition, ...


@lru_cache(maxsize=1)
def _tagger():
    """jieba's part-of-speech tagger on a private dictionary instance (other nodes' jieba settings stay
    untouched), or None when jieba is not installed."""
    try:
        import jieba
        import jieba.posseg
    except ImportError:
        return None
    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return jieba.posseg.POSTokenizer(tokenizer)


def available() -> bool:
    """True when jieba is installed (Chinese is then handled by words, not characters)."""
    return _tagger() is not None


@lru_cache(maxsize=512)
def words(text: str) -> tuple[Word, ...]:
    """The CJK words of `text` with their positions and part of speech, in order. Text outside CJK runs
    yields no words."""
    tagger = _tagger()
    found: list[Word] = []
    for run in _CJK_RUN.finditer(text):
        position = run.start()
        if tagger is None:
            found.extend(Word(position + i, position + i + 1, ch, "x") for i, ch in enumerate(run.group()))
            continue
        for pair in tagger.lcut(run.group(), HMM=False):
            found.append(Word(position, position + len(pair.word), pair.word, pair.flag))
            position += len(pair.word)
    return tuple(found)


def inner_bounds(text: str) -> frozenset[int]:
    """Positions strictly inside a CJK word (between two of its characters): no cut, pattern edge or
    dropped half may fall there."""
    return frozenset(i for w in words(text) for i in range(w.start + 1, w.end))


def word_at(text: str, position: int) -> Word | None:
    """The CJK word covering the character at `position`, if any."""
    for word in words(text):
        if word.start <= position < word.end:
            return word
        if word.start > position:
            break
    return None
