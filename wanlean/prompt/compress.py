"""Shorten a prompt to a target share of its umT5 tokens, faithfully by default.

Three methods:

- ``extractive`` (default, no model, English and Chinese): keeps or drops whole words and never adds or
  moves one. It drops filler first (politeness, hedges, intensifiers, "in the background"-style padding,
  duplicate adjectives, repeated phrases, then articles), then the lowest-value clauses, then, only to
  land on the target, single low-value words.
- ``token-classifier``: a token-classification model (LLMLingua-2 checkpoints are this kind) scores each
  word; the lowest-scoring words go first. Never adds words.
- ``summarize``: a seq2seq model rewrites the prompt. It may add words; the report lists every one.

Every method keeps the protected spans (`protect.py`): the `keep` list, negations, numbers and units,
colours, camera and lighting terms, quoted text and ComfyUI weight syntax. The ratio is measured in umT5
tokens (``</s>`` included) with the tokenizer given, exact from a text-encoder file or the estimate.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from . import protect
from ..errors import WanLeanError
from ..tokens import Tokenizer, clean_text, load_tokenizer
from .words import CJK, CJK_CHARS, PUNCT, SEPARATORS, WORD, Unit, added_words, bracket_pairs, clause_ids, rebuild, tidy, units

METHODS = ("extractive", "token-classifier", "summarize")
RATIO_MIN, RATIO_MAX, RATIO_DEFAULT = 0.3, 1.0, 0.7
TOLERANCE = 0.05  # how close to the target the ratio should land
LOW_RATIO = 0.5  # below this the report warns

# --- what counts as filler ------------------------------------------------------------------------
_FILLER_EN = {
    "politeness": (
        "so basically what i want is|what i want is|what i would like is|please make sure that|please make sure|make sure that|make sure|be sure to|please ensure that|"
        "please|kindly|thank you|thanks|i would like to see|i would like|i'd like|i want to see|i want|"
        "can you|could you|would you|generate a video of|create a video of|make a video of|"
        "generate a video showing|a video of|a video showing|a clip of|show me"
    ),
    "hedge": (
        "maybe|perhaps|possibly|probably|somewhat|kind of|sort of|a little bit|a bit|more or less|"
        "seems to be|appears to be|it seems|rather|fairly|basically|essentially|just|actually|literally|"
        "i think|i guess"
    ),
    "intensifier": (
        "very|really|extremely|super|incredibly|highly|truly|totally|absolutely|utterly|exceptionally|"
        "remarkably|insanely|amazingly|especially|particularly|quite|unbelievably|tremendously"
    ),
    "padding": (
        "in the background|in the foreground|in the scene|in the frame|in the shot|in this video|"
        "in the video|in the image|in the picture|this video shows|the video shows|the scene shows|"
        "the scene depicts|the shot shows|we see|we can see|you can see|can be seen|is visible|are visible|"
        "there is|there are|at the same time|as well|overall|all in all|in order"
    ),
}
_FILLER_ZH = {
    "politeness": "请你|请|麻烦|帮我|帮忙|谢谢|我想要|我想看|我希望|给我生成|生成",
    "hedge": "好像|似乎|可能|也许|大概|或许|有点|有些|稍微|略微|感觉",
    "intensifier": "非常|十分|特别|极其|极为|极度|超级|相当|格外|真的|真是|实在|尤其|更加|越发|很",
    "padding": "一个视频|一段视频|在画面中|画面中|画面里|在视频中|视频中|视频里|场景中|在背景中|在背景里|背景中|背景里|可以看到|能看到|我们看到|整个画面|的话",
}
_L = r"(?<![0-9A-Za-z_\u00c0-\u024f])"  # Latin-script word edges (a plain class: fast under IGNORECASE)
_R = r"(?![0-9A-Za-z_\u00c0-\u024f])"


def _alternation(words: str, latin: bool) -> str:
    terms = sorted(words.split("|"), key=len, reverse=True)
    body = "|".join(re.escape(t).replace(r"\ ", r"[ \t]+") for t in terms)
    return _L + f"(?:{body})" + _R if latin else f"(?:{body})"


_FILLER = [
    (reason, re.compile(_alternation(_FILLER_EN[reason], True), re.IGNORECASE)) for reason in _FILLER_EN
] + [(reason, re.compile(_alternation(_FILLER_ZH[reason], False))) for reason in _FILLER_ZH]

# Synonyms: the second of two neighbouring words from one group adds nothing ("huge, enormous").
_SYNONYMS_EN = [
    "big large huge enormous giant gigantic massive colossal immense vast",
    "small tiny little miniature minuscule petite",
    "beautiful gorgeous stunning pretty lovely breathtaking magnificent exquisite spectacular amazing "
    "wonderful incredible awesome fantastic",
    "fast quick rapid swift speedy",
    "slow sluggish leisurely unhurried",
    "old ancient aged elderly",
    "bright vivid brilliant radiant luminous",
    "dim gloomy shadowy murky",
    "detailed intricate elaborate",
    "realistic lifelike photorealistic",
    "calm peaceful serene tranquil quiet still",
    "happy joyful cheerful glad",
    "sad sorrowful melancholy mournful",
    "scary creepy eerie spooky terrifying frightening",
    "shiny glossy gleaming glistening shimmering sparkling",
    "wet damp soaked drenched",
    "mysterious enigmatic",
]
_SYNONYMS_ZH = [
    "美丽 漂亮 好看 绚丽 壮观 迷人 唯美",
    "巨大 庞大 宏大 硕大",
    "微小 细小 小小",
    "快速 迅速 飞快",
    "安静 宁静 平静 静谧",
    "明亮 光亮 闪亮",
    "古老 古旧 陈旧",
    "神秘 神奇",
]
_SYNONYM_GROUP = {w: i for i, line in enumerate(_SYNONYMS_EN) for w in line.split()}
_SYNONYM_ZH = re.compile("|".join(sorted((w for line in _SYNONYMS_ZH for w in line.split()), key=len, reverse=True)))
_SYNONYM_ZH_GROUP = {w: i for i, line in enumerate(_SYNONYMS_ZH) for w in line.split()}
_LIST_JOINERS = {",", "，", "、", "and", "&", "or", "和", "与", "又", "且"}

_ARTICLES = {"a", "an", "the"}
_ARTICLE_ZH = re.compile("一[个只位名头条匹辆座棵朵张把件]")  # "一只猫": "a cat"
_STOPWORDS = set(
    """
    a an the of in on at to for from by with into onto over under above below behind beside between
    through across along around toward towards near up down out off about against among upon within
    and or but nor so yet as while whilst when where which who whom whose that this these those there
    it its it's he she they them their his her him we us our you your i me my is are was were be been
    being am has have had do does did will would shall should can could may might must also then than
    too very just some any each every all both either such own same other another more most less few
    one's itself himself herself themselves
    """.split()
)
# Words that open a new sub-clause, so one long sentence offers several pieces to drop.
_CLAUSE_STARTERS = frozenset(
    "and but while whilst as which who whose where when then before after until because".split()
)
_PREPOSITIONS = set(
    """of in on at to for from by with into onto over under above below behind beside between through across
    along around toward towards near up down out off about against among upon within without""".split()
)
_CONJUNCTIONS = {"and", "or", "but", "nor", "yet", "so", "then", "while", "whilst", "as", "when", "where"}
_CJK_SINGLE = set("的了着")  # CJK characters that may go one by one
_BRACKETS = set("()[]{}（）【】《》〈〉<>")
_CJK_FUNCTION = set("的了着地得在是和与及并也又都就还把被将从向对于而且或这那其")


@dataclass
class Dropped:
    reason: str
    text: str


@dataclass
class CompressResult:
    """What a compression did; `report()` is the text the node shows."""

    text: str
    method: str
    tokenizer: str
    tokens_before: int
    tokens_after: int
    target_ratio: float
    protected: list[protect.Span] = field(default_factory=list)
    protected_kept: list[bool] = field(default_factory=list)
    keep_absent: list[str] = field(default_factory=list)
    words_added: list[str] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def achieved_ratio(self) -> float:
        return self.tokens_after / self.tokens_before if self.tokens_before else 1.0

    @property
    def protected_missing(self) -> list[protect.Span]:
        return [span for span, kept in zip(self.protected, self.protected_kept) if not kept]

    def report(self) -> str:
        lines = [
            f"WanLeanCompress ({self.method}); tokens {self.tokenizer}",
            f"tokens: {self.tokens_before} -> {self.tokens_after} (ratio {self.achieved_ratio:.2f}, target {self.target_ratio:.2f})",
            f"protected spans kept: {sum(self.protected_kept)}/{len(self.protected)}" + _kinds(self.protected),
            f"words added: {len(self.words_added)}" + (f" ({', '.join(self.words_added)})" if self.words_added else ""),
        ]
        if self.dropped:
            shown = "; ".join(f'{d.reason} "{d.text}"' for d in self.dropped[:40])
            more = f"; ... {len(self.dropped) - 40} more" if len(self.dropped) > 40 else ""
            lines.append(f"dropped ({len(self.dropped)}): {shown}{more}")
        else:
            lines.append("dropped: nothing")
        missing = self.protected_missing
        if missing:
            lines.append("protected spans missing: " + ", ".join(f'"{s.text}"' for s in missing))
        if self.keep_absent:
            lines.append("keep terms not in the text: " + ", ".join(f"'{t}'" for t in self.keep_absent))
        lines.extend(f"note: {n}" for n in self.notes)
        lines.extend(f"WARNING: {w}" for w in self.warnings)
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "tokenizer": self.tokenizer,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "target_ratio": self.target_ratio,
            "achieved_ratio": round(self.achieved_ratio, 4),
            "protected_total": len(self.protected),
            "protected_kept": sum(self.protected_kept),
            "protected_missing": [s.text for s in self.protected_missing],
            "keep_absent": list(self.keep_absent),
            "words_added": list(self.words_added),
            "dropped": [{"reason": d.reason, "text": d.text} for d in self.dropped],
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def _kinds(spans: list[protect.Span]) -> str:
    if not spans:
        return ""
    counts: dict[str, int] = {}
    for span in spans:
        counts[span.kind] = counts.get(span.kind, 0) + 1
    return " (" + ", ".join(f"{k} {counts[k]}" for k in protect.KINDS if k in counts) + ")"


# --- entry point ----------------------------------------------------------------------------------
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
    tokenizer: Tokenizer | str | None = None,
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
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = load_tokenizer(tokenizer)
    text = clean_text(text) if isinstance(text, str) else ""
    if not text.strip():
        result = CompressResult(text, method, tokenizer.label, tokenizer.count(text), tokenizer.count(text), ratio)
        result.notes.append("empty text: nothing to compress, passed through")
        return result
    if method == "summarize":
        return _summarize(text, ratio, keep, tokenizer, model)
    plan = _Plan(text, keep, tokenizer)
    if method == "token-classifier":
        from . import text_models

        scores = text_models.keep_scores(model, [u.text for u in plan.items])
        tiers = [plan.model_candidates(scores)]
        label = f"token-classifier ({text_models.describe(model)})"
    else:
        tiers = plan.extractive_tiers()
        label = "extractive"
    result = plan.run(tiers, ratio, label, filler_only_if_unreachable=(method == "extractive"))
    if model and method == "extractive":
        result.notes.append("the model input is not used by the extractive method")
    return result


# --- the extractive machinery ---------------------------------------------------------------------
@dataclass
class _Candidate:
    reason: str
    indices: list[int]
    density: float = 0.0  # value kept per token saved; lowest goes first


_COSTS: dict[int, tuple[Tokenizer, dict[str, int]]] = {}


def _unit_costs(tokenizer: Tokenizer, items: list[Unit]) -> list[int]:
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


class _Plan:
    def __init__(self, text: str, keep, tokenizer: Tokenizer):
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
        self.clauses = clause_ids(text, self.items, _CLAUSE_STARTERS)
        self.costs = _unit_costs(tokenizer, self.items)

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
            return (separators and unit.is_separator) or not (unit.is_separator or unit.text in _BRACKETS)
        return True

    # --- candidates -------------------------------------------------------------------------------
    def extractive_tiers(self) -> list[list[_Candidate]]:
        filler = self._filler()
        taken = {i for c in filler for i in c.indices}
        articles = [
            _Candidate("article", [i])
            for i, word in enumerate(self.lower)
            if i not in taken and self._droppable(i) and self.items[i].kind == WORD and word in _ARTICLES
        ]
        articles += [
            _Candidate("particle", [i])
            for i, word in enumerate(self.lower)
            if word == "的" and i not in taken and self._droppable(i)
            and 0 < i < len(self.items) - 1 and self.items[i - 1].kind == CJK and self.items[i + 1].kind == CJK
        ]
        for match in _ARTICLE_ZH.finditer(self.text):
            indices = list(self._covered(match.start(), match.end()))
            if indices and not any(i in taken for i in indices) and all(self._droppable(i) for i in indices):
                articles.append(_Candidate("article", indices))
        articles.sort(key=lambda c: c.indices[0])
        taken |= {i for c in articles for i in c.indices}
        clauses = self._clauses(taken)
        light_words, prepositions, content_words = [], [], []
        for i, unit in enumerate(self.items):
            if i in taken or not self._droppable(i) or unit.kind == PUNCT:
                continue
            if unit.kind == CJK and unit.text not in _CJK_SINGLE:
                continue  # a lone CJK character out of a word would leave a broken word
            density = self._value(i) / max(self.costs[i], 1) + 0.001 * (len(self.items) - i) / len(self.items)
            word = self.lower[i]
            group = prepositions if word in _PREPOSITIONS else light_words if word in _STOPWORDS or unit.kind == CJK else content_words
            group.append(_Candidate("word", [i], density))
        for group in (light_words, prepositions, content_words):
            group.sort(key=lambda c: c.density)
        # Filler and articles first, with pronouns, auxiliaries and conjunctions; then the lowest-value
        # clauses; then prepositions; then, only to land on the target, single content words.
        return [filler + articles + light_words, clauses, prepositions, content_words]

    def _filler(self) -> list[_Candidate]:
        found: list[_Candidate] = []
        used: set[int] = set()

        def add(reason: str, indices) -> None:
            indices = [i for i in indices if i not in used]
            if indices and all(self._droppable(i, separators=True) for i in indices) and any(self.items[i].kind != PUNCT for i in indices):
                found.append(_Candidate(reason, indices))
                used.update(indices)

        for reason, pattern in _FILLER:
            for match in pattern.finditer(self.text):
                add(reason, self._covered(match.start(), match.end()))
        for reason, indices in self._duplicates():
            add(reason, indices)
        for indices in self._repeats(used):
            add("repeated phrase", indices)
        found.sort(key=lambda c: c.indices[0])
        return found

    def _duplicates(self):
        """("duplicate", indices) for a word that repeats its neighbour or a synonym of it: "big, big",
        "beautiful and stunning", "美丽、漂亮"."""
        previous_word = None
        for index, unit in enumerate(self.items):
            if unit.kind != WORD:
                continue
            word = self.lower[index]
            if word in _LIST_JOINERS:
                continue
            if previous_word is not None and index - previous_word <= 3:
                between = range(previous_word + 1, index)
                if all(self.lower[i] in _LIST_JOINERS for i in between):
                    earlier = self.lower[previous_word]
                    same = word == earlier or (word in _SYNONYM_GROUP and _SYNONYM_GROUP.get(earlier) == _SYNONYM_GROUP[word])
                    if same and word not in _STOPWORDS:
                        yield "duplicate", list(between) + [index]
            previous_word = index
        matches = list(_SYNONYM_ZH.finditer(self.text))
        for first, second in zip(matches, matches[1:]):
            gap = self.text[first.end() : second.start()]
            if len(gap) <= 1 and all(ch in _LIST_JOINERS for ch in gap):
                if _SYNONYM_ZH_GROUP[first.group()] == _SYNONYM_ZH_GROUP[second.group()]:
                    yield "duplicate", list(self._covered(first.end(), second.end()))

    def _repeats(self, used: set[int]):
        """Index lists of phrases that repeat an earlier phrase word for word (3+ words, 4+ CJK chars)."""
        n_items = len(self.items)
        run = [0] * (n_items + 1)  # how many non-punctuation units start at each index
        for index in range(n_items - 1, -1, -1):
            run[index] = 0 if self.items[index].kind == PUNCT else run[index + 1] + 1
        taken = set(used)
        for size in (8, 7, 6, 5, 4, 3):
            seen: dict[tuple, int] = {}
            for start in range(n_items - size + 1):
                if run[start] < size:
                    continue
                cjk = self.items[start].kind == CJK
                if (cjk and size < 4) or (not cjk and size > 6):
                    continue
                key = tuple(self.lower[start : start + size])
                first_end = seen.get(key)
                if first_end is None:
                    seen[key] = start + size
                    continue
                window = range(start, start + size)
                if first_end > start or any(i in taken for i in window):
                    continue
                if all(w in _STOPWORDS or w in _CJK_FUNCTION for w in key):
                    continue
                taken.update(window)
                yield list(window)

    def _value(self, index: int) -> float:
        """How much a unit is worth keeping, in proportion to its tokens: articles least, then pronouns
        and auxiliaries, conjunctions, prepositions (they carry place and direction), content words."""
        word = self.lower[index]
        kind = self.items[index].kind
        tokens = max(self.costs[index], 1)
        if kind == PUNCT:
            return 0.1
        if kind == CJK:
            return (0.2 if word in _CJK_FUNCTION else 1.0) * tokens
        if word in _ARTICLES:
            return 0.05
        if word in _PREPOSITIONS:
            return 0.5
        if word in _CONJUNCTIONS:
            return 0.3
        if word in _STOPWORDS:
            return 0.15
        return 1.0 * tokens

    def _clauses(self, taken: set[int]) -> list[_Candidate]:
        """Clause candidates (their unprotected units), lowest value per token first."""
        by_clause: dict[int, list[int]] = {}
        protected_in: dict[int, int] = {}
        words_in: dict[int, int] = {}
        sentence_of: dict[int, int] = {}
        sentence = 0
        for index, clause in enumerate(self.clauses):
            unit = self.items[index]
            sentence_of.setdefault(clause, sentence)
            if unit.kind != PUNCT:
                words_in[clause] = words_in.get(clause, 0) + 1
            if unit.is_separator and SEPARATORS[unit.text] >= 3:
                sentence += 1
            if self.protected[index]:
                protected_in[clause] = protected_in.get(clause, 0) + 1
            elif index not in taken and self._droppable(index):
                by_clause.setdefault(clause, []).append(index)
        first = min(self.clauses, default=0)
        last_sentence = max((sentence_of[c] for c in words_in), default=0)
        candidates = []
        for clause, indices in by_clause.items():
            if not any(self.items[i].kind != PUNCT for i in indices):
                continue
            if len(indices) < protected_in.get(clause, 0):
                continue  # mostly protected: its few other words are left to the single-word passes
            cost = sum(self.costs[i] for i in indices)
            value = sum(self._value(i) for i in indices)
            # Wan's order puts the subject in the first sentence and style tags ("lo-fi anime style") in the last sentence.
            if clause == first:
                position = 3.0
            elif sentence_of[clause] == 0:
                position = 2.5
            elif sentence_of[clause] == last_sentence and words_in.get(clause, 0) <= 4:
                position = 2.0
            else:
                position = 1.0 + 0.2 / (1 + clause - first)
            # Dropping part of a clause strands its protected words ("pink light white"): do it later.
            stranded = 2.0 if protected_in.get(clause) else 1.0
            candidates.append(_Candidate("clause", indices, position * stranded * value / max(cost, 1)))
        candidates.sort(key=lambda c: c.density)
        return candidates

    def model_candidates(self, scores: list[float]) -> list[_Candidate]:
        candidates = [
            _Candidate("low score", [i], scores[i])
            for i in range(len(self.items))
            if self._droppable(i) and self.items[i].kind != PUNCT
        ]
        candidates.sort(key=lambda c: c.density)
        return candidates

    # --- choosing what to drop --------------------------------------------------------------------
    def _measure(self, keep: list[bool]) -> tuple[str, int]:
        kept = tidy(self.items, keep, self.pairs, self.protected)
        text = rebuild(self.text, self.items, kept)
        return text, self.tokenizer.count(text)

    def run(self, tiers: list[list[_Candidate]], ratio: float, method: str, filler_only_if_unreachable: bool = False) -> CompressResult:
        """Drop candidates in order until the count reaches `ratio` of the original. With
        `filler_only_if_unreachable`, a target that the protected spans rule out drops only the first
        tier (filler): stripping every other word to get near it would leave a list of fragments."""
        before = self.tokenizer.count(self.text)
        target = ratio * before
        slack = TOLERANCE * before
        keep = [True] * len(self.items)
        applied: list[_Candidate] = []
        only_protected = [self.protected[i] or self.items[i].kind == PUNCT for i in range(len(self.items))]
        self.floor = self._measure(only_protected)[1] if ratio < 1.0 else before
        reachable = self.floor <= target + slack
        ordered = [c for tier in (tiers if reachable or not filler_only_if_unreachable else tiers[:1]) for c in tier]

        # Pass 1 on additive estimates (scaled to the real total), then correct against real counts.
        estimated_total = sum(self.costs) or 1
        scale = (before - 1) / estimated_total
        current_text, current = self.text, before
        for _round in range(6):
            if current <= target:
                break
            estimate = current
            deferred: list[_Candidate] = []
            progressed = False
            for candidate in ordered:
                if estimate <= target:
                    break
                live = [i for i in candidate.indices if keep[i]]
                if not live:
                    continue
                saving = scale * sum(self.costs[i] for i in live)
                if estimate - saving < target - slack:
                    deferred.append(candidate)  # too big a piece: try smaller ones first
                    continue
                for i in live:
                    keep[i] = False
                applied.append(candidate)
                estimate -= saving
                progressed = True
            if estimate > target + slack and deferred:
                # Nothing small enough is left: take the piece that lands closest to the target.
                best = min(deferred, key=lambda c: abs(estimate - scale * sum(self.costs[i] for i in c.indices if keep[i]) - target))
                for i in best.indices:
                    keep[i] = False
                applied.append(best)
                progressed = True
            new_text, new_count = self._measure(keep)
            if not progressed:
                current_text, current = new_text, new_count
                break
            # Re-scale so the next round's estimates match what the tokenizer really said.
            estimated_drop = current - estimate
            real_drop = current - new_count
            if estimated_drop > 0 and real_drop > 0:
                scale *= real_drop / estimated_drop
            current_text, current = new_text, new_count

        if current < target - slack:
            # The last piece overshot: give back recent pieces while that lands closer to the target.
            for candidate in list(reversed(applied))[:6]:
                trial = list(keep)
                for i in candidate.indices:
                    trial[i] = True
                trial_text, trial_count = self._measure(trial)
                if trial_count <= target + slack and abs(trial_count - target) < abs(current - target):
                    keep, current_text, current = trial, trial_text, trial_count
                    applied.remove(candidate)
                if current >= target - slack:
                    break

        final_keep = tidy(self.items, keep, self.pairs, self.protected)
        result = CompressResult(
            text=current_text,
            method=method,
            tokenizer=self.tokenizer.label,
            tokens_before=before,
            tokens_after=current,
            target_ratio=ratio,
            protected=self.spans,
            protected_kept=[self._span_kept(span, final_keep) for span in self.spans],
            keep_absent=self.keep_absent,
        )
        result.words_added = added_words(self.text, current_text)
        for candidate in sorted(applied, key=lambda c: c.indices[0]):
            result.dropped.append(Dropped(candidate.reason, self._show(candidate.indices)))
        self._explain(result, before, target, slack, final_keep)
        return result

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

    def _explain(self, result: CompressResult, before: int, target: float, slack: float, keep: list[bool]) -> None:
        ratio = result.target_ratio
        if result.tokens_after > target + slack:
            floor = self.floor
            what = "only filler was dropped" if floor > target + slack else "dropped all it could"
            result.notes.append(
                f"could not reach {ratio:.2f}: the protected spans alone take {floor} of {before} tokens "
                f"(ratio {floor / before:.2f}){_kinds(self.spans)}, so {what}; shorten the keep list or the prompt by hand"
            )
        elif result.tokens_after < target - slack:
            result.notes.append(
                f"landed below {ratio:.2f} - {TOLERANCE}: the smallest piece left to drop was larger than the gap"
            )
        if result.achieved_ratio < LOW_RATIO:
            result.warnings.append(
                f"ratio {result.achieved_ratio:.2f} is below {LOW_RATIO}: most of the prompt is gone; read the result before using it"
            )


# --- summarize ------------------------------------------------------------------------------------
def _summarize(text: str, ratio: float, keep, tokenizer: Tokenizer, model) -> CompressResult:
    """A seq2seq model rewrites the prompt. Protected spans it left out are appended at the end (and
    reported), so numbers, negations and the keep list survive even a careless summary."""
    from . import text_models

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
    source_words = {w.lower() for w in _word_list(text)}
    summary_words = {w.lower() for w in _word_list(summary)}
    result.dropped = [Dropped("left out", w) for w in dict.fromkeys(_word_list(text)) if w.lower() not in summary_words and w.lower() in source_words]
    if restored:
        result.notes.append("the model left out protected spans; appended at the end: " + ", ".join(f'"{r}"' for r in restored))
    if result.words_added:
        result.warnings.append(f"the model added {len(result.words_added)} words that are not in the prompt (listed above)")
    if after > ratio * before + TOLERANCE * before:
        result.notes.append(f"above the target {ratio:.2f}: the model's summary plus the protected spans are longer")
    if result.achieved_ratio < LOW_RATIO:
        result.warnings.append(f"ratio {result.achieved_ratio:.2f} is below {LOW_RATIO}: most of the prompt is gone")
    return result


def _word_list(text: str) -> list[str]:
    return [u.text for u in units(text) if u.kind != PUNCT]


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
