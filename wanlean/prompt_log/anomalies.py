"""Anomaly detectors for prompts: each flag comes with a plain reason a user can act on.

Flags (the names are part of the routes' and the log's interface):
- `repetition`: a phrase repeated many times, or one word making up a large share of the prompt (token stuffing).
- `filler`: most words carry no content (politeness, hedges, intensifiers, padding, function words).
- `gibberish`: random strings, runs of single letters, or many symbols no prompt needs.
- `invisible`: zero-width or control characters (they cost tokens and can hide text).
- `weight_syntax`: ComfyUI weights far outside the usual range, e.g. `(word:9)`, or parentheses nested 4 deep.
- `over_512`: more tokens than diffusers, official Wan and WanVideoWrapper keep.
- `unusual_length`: far outside the usual length of the prompts in the log (needs `MIN_USUAL_ROWS` rows).

Thresholds were chosen so that none fires on the official-style prompts of benchmarks/corpus/prompts.jsonl
or on Wan's official negative prompt (tests check both). Pure Python, well under 0.5 ms for 200 words.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from ..charsets import CJK_CHARS
from ..prompt.vocabulary import CJK_FUNCTION, FILLER, FILLER_WORDS_EN, STOPWORDS
from ..tokens import WAN_TEXT_LEN

FLAGS = ("repetition", "filler", "gibberish", "invisible", "weight_syntax", "over_512", "unusual_length")
# Short labels for a readout ("⚠ repeated phrase").
LABELS = {
    "repetition": "repeated phrase",
    "filler": "filler words",
    "gibberish": "gibberish",
    "invisible": "invisible characters",
    "weight_syntax": "extreme weights",
    "over_512": "over 512 tokens",
    "unusual_length": "unusual length",
}

PHRASE_MIN_REPEATS = 3  # a 2- or 3-word phrase seen this often ...
PHRASE_MIN_SHARE = 0.25  # ... covering this share of the prompt's words
WORD_MIN_COUNT = 4  # one content word seen this often ...
WORD_MIN_SHARE = 0.2  # ... making up this share of the words
FILLER_MIN_WORDS = 8  # below this a prompt is too short to call padded
FILLER_PHRASE_SHARE = 0.3  # words inside filler phrases (please, very, in the background, ...)
NO_CONTENT_SHARE = 0.7  # filler phrases plus function words
RANDOM_WORD_SHARE = 0.1
RANDOM_LONG_WORD = 12  # one random-looking string this long is enough
SINGLE_LETTER_SHARE = 0.3
SINGLE_LETTER_MIN = 5
SYMBOL_SHARE = 0.15
SYMBOL_MIN = 5
WEIGHT_MAX = 2.0  # ComfyUI weights are usually 0.5-1.5; beyond this one word swamps the rest
NESTING_MAX = 3  # ((x)) is 1.21, (((x))) 1.33; four levels and more is abuse
MIN_USUAL_ROWS = 30  # unusual_length needs this many logged prompts
UNUSUAL_FACTOR = 4.0  # above 4 x the log's upper quartile, or below a quarter of its lower quartile
UNUSUAL_MIN_GAP = 20  # tokens: short prompts differing by a handful are not unusual

_LATIN = "A-Za-z\u00c0-\u024f"
_UNITS = re.compile(f"[{_LATIN}][{_LATIN}'\u2019]*|[0-9]+(?:[.,][0-9]+)?|[{CJK_CHARS}]")
# A random-looking string: 6+ letters and digits with three letter/digit switches (a7k9x2) or six consonants
# in a row (xkcdqz), which no English or pinyin word has.
_CONSONANTS = "bcdfghjklmnpqrstvwxzBCDFGHJKLMNPQRSTVWXZ"
_ALNUM_WORD = re.compile(f"[{_LATIN}0-9]{{6,}}")
_MIXED = re.compile(f"[0-9][{_LATIN}]+[0-9]+[{_LATIN}]|[{_LATIN}][0-9]+[{_LATIN}]+[0-9]")
_CONSONANT_RUN = re.compile(f"[{_CONSONANTS}]{{6}}")
_DIGIT = re.compile("[0-9]")
_PAREN = re.compile(r"[()]")
_CJK = re.compile(f"[{CJK_CHARS}]")
_CJK_ANY = _CJK
FILLER_ZH = [(reason, pattern) for reason, pattern in FILLER if not pattern.pattern.startswith("(?<!")]
_INVISIBLE = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u206a-\u206f\ufeff\u00ad\u180e]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
)
_WEIGHT = re.compile(r"\(([^():]{1,80}):\s*(-?\d+(?:\.\d*)?)\s*\)")
_SINGLE_LETTER_WORDS = {"a", "i", "o"}
_ORDINARY_PUNCT = ",.;:!?'\"()[]{}<>-_/&%+=*#@~`|\\，。；：！？、（）【】《》〈〉「」『』“”‘’—…·"
_UNUSUAL_CHAR = re.compile(f"[^\\s{_LATIN}0-9{CJK_CHARS}{re.escape(_ORDINARY_PUNCT)}]")


@dataclass(frozen=True)
class Anomaly:
    flag: str
    reason: str

    @property
    def label(self) -> str:
        return LABELS[self.flag]

    def as_dict(self) -> dict:
        return {"flag": self.flag, "label": self.label, "reason": self.reason}


@dataclass(frozen=True)
class UsualLength:
    """What the log holds: how many prompts, and the lower and upper quartiles of their tokens."""

    rows: int
    q1: float
    q3: float


def detect(text: str, tokens: int | None = None, usual: UsualLength | None = None) -> list[Anomaly]:
    """The anomalies of `text`, in FLAGS order. `tokens` (</s> included) enables `over_512` and, with
    `usual` from the log, `unusual_length`; without them only the text detectors run."""
    units = _UNITS.findall(text.lower())
    found = [
        _repetition(units),
        _filler(text, units),
        _gibberish(text, units),
        _invisible(text),
        _weight_syntax(text),
        _over_512(tokens),
        _unusual_length(tokens, usual),
    ]
    return [a for a in found if a is not None]


def _is_content(unit: str) -> bool:
    return unit not in STOPWORDS and unit not in CJK_FUNCTION and not unit.isdigit()


def _repetition(units: list[str]) -> Anomaly | None:
    total = len(units)
    if total < PHRASE_MIN_REPEATS * 2:
        return None
    counts = Counter(u for u in units if _is_content(u))
    if not counts:
        return None
    word, count = counts.most_common(1)[0]
    # A phrase of n <= 3 words repeated c times needs each of its words c times: most prompts stop here.
    if count >= PHRASE_MIN_REPEATS and count * 3 / total >= PHRASE_MIN_SHARE:
        phrase = _repeated_phrase(units)
        if phrase is not None:
            gram, repeats, share = phrase
            return Anomaly(
                "repetition",
                f'"{_join(gram)}" is repeated {repeats} times ({share:.0%} of the words); once is enough for Wan.',
            )
    if count >= WORD_MIN_COUNT and count / total >= WORD_MIN_SHARE:
        return Anomaly("repetition", f'"{word}" makes up {count} of {total} words ({count / total:.0%}): token stuffing adds no meaning.')
    return None


def _repeated_phrase(units: list[str]):
    """(phrase, repeats, share of the words) of the most repeated 3- or 2-word phrase over the limits, or None."""
    total = len(units)
    for n in (3, 2):
        best = None
        for gram, count in Counter(zip(*(units[i:] for i in range(n)))).most_common(3):
            if count < PHRASE_MIN_REPEATS or not any(_is_content(u) for u in gram):
                continue
            share = count * n / total
            if share >= PHRASE_MIN_SHARE and (best is None or share > best[2]):
                best = (gram, count, share)
        if best is not None:
            return best
    return None


def _join(units) -> str:
    if all(_CJK.fullmatch(u) for u in units):
        return "".join(units)
    return " ".join(units)


def _filler(text: str, units: list[str]) -> Anomaly | None:
    total = len(units)
    if total < FILLER_MIN_WORDS:
        return None
    filler = [u for u in units if u in FILLER_WORDS_EN]
    filler_units = len(filler)
    if _CJK_ANY.search(text):  # Chinese filler is matched as phrases (no spaces to split words at)
        for _reason, pattern in FILLER_ZH:
            for match in pattern.finditer(text):
                filler.append(match.group(0))
                filler_units += len(match.group(0))
    no_content = filler_units + sum(1 for u in units if not _is_content(u) and u not in FILLER_WORDS_EN)
    filler_share, empty_share = filler_units / total, min(1.0, no_content / total)
    if filler_share < FILLER_PHRASE_SHARE and empty_share < NO_CONTENT_SHARE:
        return None
    examples = ", ".join(list(dict.fromkeys(filler))[:4])
    shown = f" (e.g. {examples})" if examples else ""
    return Anomaly(
        "filler",
        f"{empty_share:.0%} of the words carry no content{shown}; filler costs tokens and dilutes the prompt.",
    )


def _gibberish(text: str, units: list[str]) -> Anomaly | None:
    random_words = []
    mixed = _DIGIT.search(text) is not None and _MIXED.search(text) is not None
    if mixed or _CONSONANT_RUN.search(text):  # clean prompts stop here
        random_words = [w for w in _ALNUM_WORD.findall(text) if _CONSONANT_RUN.search(w) or _MIXED.search(w)]
    latin_words = [u for u in units if len(u) > 1 or u.isascii()]  # CJK units are single non-ASCII characters
    if random_words and (
        max(len(w) for w in random_words) >= RANDOM_LONG_WORD
        or (len(random_words) >= 2 and len(random_words) / max(1, len(text.split())) >= RANDOM_WORD_SHARE)
    ):
        shown = ", ".join(dict.fromkeys(w[:24] for w in random_words[:3]))
        return Anomaly("gibberish", f"random-looking strings ({shown}): umT5 splits them into meaningless pieces.")
    singles = [u for u in latin_words if len(u) == 1 and u.isalpha() and u not in _SINGLE_LETTER_WORDS]
    if len(singles) >= SINGLE_LETTER_MIN and len(singles) / len(latin_words) >= SINGLE_LETTER_SHARE:
        return Anomaly("gibberish", f"{len(singles)} of {len(latin_words)} words are single letters: they read as noise.")
    symbols = [c for c in _UNUSUAL_CHAR.findall(text) if _is_symbol(c)]
    visible = len("".join(text.split()))
    if len(symbols) >= SYMBOL_MIN and len(symbols) / max(1, visible) >= SYMBOL_SHARE:
        shown = "".join(dict.fromkeys(symbols))[:10]
        return Anomaly("gibberish", f"{len(symbols)} of {visible} characters are symbols or unknown characters ({shown}).")
    return None


def _is_symbol(char: str) -> bool:
    if char.isalnum() or char in _ORDINARY_PUNCT:
        return False
    category = unicodedata.category(char)
    return category[0] in "SC" or char == "\ufffd"  # symbols, private use, unassigned, replacement


def _invisible(text: str) -> Anomaly | None:
    found = _INVISIBLE.findall(text)
    if not found:
        return None
    names = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(found))
    return Anomaly(
        "invisible",
        f"{len(found)} invisible or control characters ({names}): they cost tokens and can hide text; remove them.",
    )


def _weight_syntax(text: str) -> Anomaly | None:
    for match in _WEIGHT.finditer(text):
        weight = float(match.group(2))
        if weight > WEIGHT_MAX or weight < 0:
            return Anomaly(
                "weight_syntax",
                f"({match.group(1).strip()}:{match.group(2)}) is far outside the usual 0.5-1.5 (at most {WEIGHT_MAX:g}); "
                "one word then swamps the prompt. Note that only ComfyUI's own text encoder reads weights.",
            )
    depth = deepest = 0
    if text.count("(") <= NESTING_MAX:
        return None
    for char in _PAREN.findall(text):
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(0, depth - 1)
    if deepest > NESTING_MAX:
        weight = f"about {1.1 ** deepest:.2f}x" if deepest <= 50 else "over 100x"
        return Anomaly(
            "weight_syntax",
            f"parentheses nested {deepest} deep ({weight} weight); write (word:1.3) instead.",
        )
    return None


def _over_512(tokens: int | None) -> Anomaly | None:
    if tokens is None or tokens <= WAN_TEXT_LEN:
        return None
    return Anomaly(
        "over_512",
        f"{tokens} tokens: diffusers, official Wan and WanVideoWrapper keep the first {WAN_TEXT_LEN} and drop "
        f"{tokens - WAN_TEXT_LEN}. Compress or truncate it.",
    )


def _unusual_length(tokens: int | None, usual: UsualLength | None) -> Anomaly | None:
    if tokens is None or usual is None or usual.rows < MIN_USUAL_ROWS:
        return None
    high, low = usual.q3 * UNUSUAL_FACTOR, usual.q1 / UNUSUAL_FACTOR
    if tokens > high and tokens - usual.q3 >= UNUSUAL_MIN_GAP:
        side = "longer"
    elif tokens < low and usual.q1 - tokens >= UNUSUAL_MIN_GAP:
        side = "shorter"
    else:
        return None
    return Anomaly(
        "unusual_length",
        f"{tokens} tokens, far {side} than usual: the middle half of the {usual.rows} logged prompts has "
        f"{usual.q1:g}-{usual.q3:g} tokens.",
    )
