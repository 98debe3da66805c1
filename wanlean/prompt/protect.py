"""Spans of a prompt that no compression may drop.

The kinds, in the order they are reported: `keep` (the user's list, e.g. the template's keywords),
`subject` and `action` (the first content noun phrase of the description and its main verb, `roles.py`),
`negation` with the rest of its clause ("does not look at the camera", "不要出现人物"), `number` and
`colour` with the noun they qualify ("3 horses", "two anthropomorphic cats", "black leather shoes",
"两个外国男人", "红色汉服"), `camera` and `lighting` terms (Wan's aesthetic vocabulary in English and Chinese
plus common film terms) and the camera's move ("camera pulls back", "镜头后拉"), `quote` (text in
quotation marks) and `weight` (ComfyUI weight syntax such as ``(word:1.2)`` and ``<lora:name:0.8>``).
Chinese spans start and end on jieba word boundaries (`segment.py`, `roles_zh.py`): no half-word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from . import roles, roles_zh, segment, template
from ..charsets import CJK_CHARS, LATIN_WORD_END, LATIN_WORD_START

KINDS = ("keep", "subject", "action", "negation", "number", "colour", "camera", "lighting", "quote", "weight")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str
    text: str


_L, _R = LATIN_WORD_START, LATIN_WORD_END

_CLAUSE_STARTERS = "and|but|while|whilst|as|which|who|where|when|then|so|because|although|though|until|before|after"
_NEGATION_EN = re.compile(
    _L + r"(?:(?:do|does|did|should|must|will|would|can|could|is|are|was|were|has|have)[ \t]+(?=not\b))?"
    + r"(?:not|no|never|without|nor|neither|none|nothing|nobody|nowhere|cannot|\w+n['’]t)" + _R
    # ... and the rest of its clause: "DO NOT generate the grid with any visible borders".
    + rf"(?:[ \t]+(?!(?:{_CLAUSE_STARTERS})" + _R + r")[^\s,.;:!?，。；：！？、()\[\]]+){0,12}",
    re.IGNORECASE,
)

_NUMBER_WORDS = (
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
    "million dozen dozens half first second third fourth fifth sixth seventh eighth ninth tenth twice"
).split()
_UNITS_EN = (
    r"mm|cm|km|m|kg|g|fps|k|p|s|sec|secs|seconds?|minutes?|mins?|hours?|hrs?|h|%|°|degrees?|x|×|px|"
    r"frames?|years?|yrs?|ft|feet|foot|meters?|metres?|inch(?:es)?|mph|km/h|kmh|mp|bit|stops?"
)
_NUMBER = re.compile(
    _L + r"(?:f/\d+(?:\.\d+)?|\d+(?:[.,:/×x]\d+)*(?:\s?(?:" + _UNITS_EN + r")" + _R + r")?|"
    + "|".join(_NUMBER_WORDS) + r")" + _R
    + r"|\d+(?:\.\d+)?\s?(?:毫米|厘米|公里|米|秒钟|秒|分钟|小时|帧|度|倍|岁|个|只|位|名|条|头|辆|座|棵|朵|张|层|年|天)",
    re.IGNORECASE,
)

_COLOURS_EN = (
    "red orange yellow green blue purple violet pink brown black white grey gray gold golden silver "
    "crimson scarlet teal turquoise cyan magenta beige ivory amber navy emerald maroon indigo lavender "
    "lilac olive coral peach tan bronze copper cream khaki jade ruby sapphire azure ochre rust charcoal "
    "reddish orangey yellowish greenish bluish purplish pinkish brownish blackish whitish greyish grayish "
    "monochrome sepia pastel neon rainbow multicoloured multicolored"
).split()
_COLOUR_MODIFIERS = "dark light pale deep bright dusty hot baby sky navy blood jet off".split()
_CAMERA_EN = """
close-up|close up|closeup|extreme close-up|medium close-up|medium shot|mid shot|wide shot|long shot|full shot|
establishing shot|two-shot|point of view|pov|first-person|over-the-shoulder|bird's-eye view|bird's eye view|
worm's-eye view|low angle|high angle|dutch angle|eye level|eye-level|aerial|aerial shot|drone|drone shot|
top-down|overhead shot|pan|pans|panning|tilt|tilts|tilting|dolly|dolly zoom|dollies|zoom|zooms|zoom in|
zoom out|push in|pushes in|pull back|pulls back|pull out|tracking|tracking shot|tracks|follow shot|orbit|
orbits|orbiting|arc shot|crane|crane shot|handheld|steadicam|gimbal|static camera|locked-off|fixed camera|
slow motion|slow-motion|time-lapse|timelapse|rack focus|shallow depth of field|depth of field|bokeh|focus|
in focus|out of focus|wide-angle|wide angle|telephoto|fisheye|macro|anamorphic|lens|lens flare|camera|
shot|footage|frame|framing|composition|centered|symmetrical|cinematic|film grain|35mm film|16mm film
"""
_LIGHTING_EN = """
light|lights|lighting|lit|backlight|backlit|backlighting|rim light|key light|fill light|soft light|hard light|
side light|sidelight|top light|natural light|sunlight|sunlit|moonlight|moonlit|candlelight|candlelit|
firelight|lamplight|torchlight|starlight|daylight|neon|golden hour|blue hour|magic hour|volumetric|
god rays|light rays|sunbeams|chiaroscuro|high-key|low-key|silhouette|silhouetted|glow|glows|glowing|
shadow|shadows|overcast|spotlight|studio lighting|ambient light|diffused light|harsh light|warm light|
cool light|contrast|high contrast|low contrast|exposure|sunset|sunrise|dusk|dawn|twilight|night|daytime
"""
_CAMERA_ZH = (
    "镜头 特写 大特写 近景 中景 中近景 全景 远景 大远景 航拍 俯拍 仰拍 俯视 仰视 平视 跟拍 跟随 推进 拉远 推镜 拉镜 摇镜 移镜 "
    "后拉 前推 左移 右移 上移 下移 横移 左摇 右摇 上摇 下摇 推近 拉近 升起 下降 上升 俯冲 环绕 运镜 慢动作 慢镜头 延时 景深 浅景深 虚化 焦点 对焦 广角 长焦 鱼眼 微距 机位 视角 第一人称 构图 画幅 定场 手持 固定镜头"
).split()
_LIGHTING_ZH = (
    "光 光线 光影 逆光 侧光 顶光 底光 柔光 硬光 背光 轮廓光 自然光 阳光 月光 烛光 灯光 霓虹 黄金时刻 丁达尔 阴影 剪影 "
    "对比度 曝光 日落 日出 黄昏 黎明 夜晚 白天 夜景 色调 暖色调 冷色调"
).split()

_QUOTE = re.compile(
    r"\"[^\"\n]{1,300}\"|“[^”\n]{1,300}”|「[^」\n]{1,300}」|『[^』\n]{1,300}』|(?<!\w)‘[^’\n]{1,300}’"
    r"|(?<![\w'])'[^'\n]{1,300}'(?![\w'])"
)
_WEIGHT = re.compile(r"\((?:[^()\n]|\([^()\n]*\))*:\s*-?\d+(?:\.\d+)?\s*\)|<(?:lora|lyco|embedding|hypernet):[^<>\n]+>", re.I)


_LATIN_TOKEN = re.compile(r"[0-9A-Za-z\u00c0-\u024f]+(?:['’][A-Za-z]+)?")


def _latin_key(term: str) -> tuple[str, ...]:
    """A term as lower-case tokens: "Close-up" and "close up" are both ("close", "up")."""
    return tuple(t.lower() for t in _LATIN_TOKEN.findall(term))


@lru_cache(maxsize=1)
def _vocabulary():
    """Latin-script colour, camera and lighting phrases as a token index (first token -> phrases,
    longest first), and the Chinese camera and lighting terms as two patterns. Camera and lighting
    include every aesthetic preset of the template except style."""
    camera_en = set(filter(None, (t.strip() for t in _CAMERA_EN.split("|"))))
    lighting_en = set(filter(None, (t.strip() for t in _LIGHTING_EN.split("|"))))
    camera_zh, lighting_zh = set(_CAMERA_ZH), set(_LIGHTING_ZH)
    for slot, pairs in template.presets().items():
        if slot == "style":
            continue
        to_lighting = slot in ("lighting", "time_of_day", "colour_tone")
        for english, chinese in pairs:
            (lighting_en if to_lighting else camera_en).add(english.lower())
            (lighting_zh if to_lighting else camera_zh).add(chinese)
    phrases: dict[tuple[str, ...], str] = {}
    for kind, terms in (("lighting", lighting_en), ("camera", camera_en)):
        for term in terms:
            phrases[_latin_key(term)] = kind
    for colour in _COLOURS_EN:
        phrases[(colour,)] = "colour"
        for modifier in _COLOUR_MODIFIERS:
            phrases[(modifier, colour)] = "colour"
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for key, kind in phrases.items():
        if key:
            index.setdefault(key[0], []).append((key, kind))
    for entries in index.values():
        entries.sort(key=lambda entry: len(entry[0]), reverse=True)

    def chinese(terms):
        return re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)))

    return index, chinese(camera_zh), chinese(lighting_zh)


@lru_cache(maxsize=1)
def _tag_words() -> frozenset[str]:
    """Every word of the camera, lighting and colour vocabulary ("slow", "motion", "dolly", "golden")."""
    return frozenset(word for entries in _vocabulary()[0].values() for key, _kind in entries for word in key)


def _latin_phrases(text: str) -> list[Span]:
    """Colour, camera and lighting phrases among the Latin-script words of `text`; the words of a
    phrase may be joined by spaces or a hyphen."""
    index = _vocabulary()[0]
    tokens = [(m.start(), m.end(), m.group().lower()) for m in _LATIN_TOKEN.finditer(text)]
    spans = []
    i = 0
    while i < len(tokens):
        start, word = tokens[i][0], tokens[i][2]
        step = 1
        for key, kind in index.get(word, ()):
            n = len(key)
            if i + n > len(tokens):
                continue
            if all(tokens[i + k][2] == key[k] and _joined(text, tokens[i + k - 1][1], tokens[i + k][0]) for k in range(1, n)):
                spans.append(Span(start, tokens[i + n - 1][1], kind, text[start : tokens[i + n - 1][1]]))
                step = n  # like a regex: no match inside a longer one ("depth of field" in "shallow depth of field")
                break
        i += step
    return spans


def _joined(text: str, end: int, start: int) -> bool:
    gap = text[end:start]
    return gap == "-" or (gap.strip() == "" and 0 < len(gap) <= 3 and "\n" not in gap)


# A colour or a count is kept with the noun it qualifies, across the adjectives between them ("two
# anthropomorphic cats", "black leather shoes"), unless a function word follows ("black against").
_FUNCTION_WORDS = set(
    """a an the of in on at to for from by with into onto over under above below behind beside between through
    across along around toward towards near up down out off about against among and or but as while when where
    which who that this these those it its is are was were be been has have had do does did will would can
    could may might must not no""".split()
)
_LATIN_END = re.compile(rf"[^\W{CJK_CHARS}]")
_HEAD_REACH = 3  # words between a count or colour and its noun, at most


def _bind_to_head(text: str, span: Span, latin: list, starts: dict[int, int]) -> Span:
    """`span` extended over the following words of its clause up to the head noun: content words that are
    not verbs ("bright gloves | fight"), at most `_HEAD_REACH` of them."""
    index = None
    for k in range(span.end - 1, span.start - 1, -1):
        if k in starts:
            index = starts[k]
            break
    if index is None:
        return span
    last = index
    while last - index < _HEAD_REACH and last + 1 < len(latin):
        nxt = latin[last + 1]
        if nxt.clause != latin[last].clause or nxt.lower in _FUNCTION_WORDS or roles.is_verb(latin, last + 1):
            break
        if text[latin[last].end : nxt.start].strip():
            break
        last += 1
    if latin[last].end <= span.end:
        return span
    return Span(span.start, latin[last].end, span.kind, text[span.start : latin[last].end])


_KEEP_SPLIT = re.compile(r"[,，、;；\n]+")


def parse_keep(keep: str | list[str] | None) -> list[str]:
    """The `keep` list: comma-separated (`,` `，` `、` `;` or new lines), as the template's `keywords`
    output gives it. Blank entries and repeats are ignored."""
    if not keep:
        return []
    parts = keep if isinstance(keep, list) else _KEEP_SPLIT.split(keep)
    seen: dict[str, str] = {}
    for part in parts:
        term = " ".join(str(part).split()).strip(" .。")
        if term and term.lower() not in seen:
            seen[term.lower()] = term
    return list(seen.values())


def _keep_pattern(term: str) -> re.Pattern:
    body = re.escape(term).replace(r"\ ", r"\s+")
    left = _L if re.match(rf"[^\W{CJK_CHARS}]", term) else ""
    right = _R if re.search(rf"[^\W{CJK_CHARS}]$", term) else ""
    return re.compile(left + body + right, re.IGNORECASE)


def find(text: str, keep: str | list[str] | None = None) -> tuple[list[Span], list[str]]:
    """Protected spans of `text` (sorted by position, overlaps allowed) and the `keep` terms that do not
    occur in it."""
    spans: list[Span] = []
    absent: list[str] = []
    for term in parse_keep(keep):
        found = [Span(m.start(), m.end(), "keep", m.group()) for m in _keep_pattern(term).finditer(text)]
        if found:
            spans.extend(found)
        else:
            absent.append(term)
    index, camera_zh, lighting_zh = _vocabulary()
    latin = roles.tokens(text)
    starts = {t.start: i for i, t in enumerate(latin)}
    for span in _latin_phrases(text):
        spans.append(_bind_to_head(text, span, latin, starts) if span.kind == "colour" else span)
    for kind, pattern in (("negation", _NEGATION_EN), ("number", _NUMBER), ("quote", _QUOTE), ("weight", _WEIGHT)):
        for m in pattern.finditer(text):
            if not m.group().strip():
                continue
            span = Span(m.start(), m.end(), kind, m.group())
            if kind == "number" and _LATIN_END.match(m.group()[-1]):
                span = _bind_to_head(text, span, latin, starts)
            spans.append(span)
    for role in roles.find(text, _tag_words(), latin):
        spans.append(Span(role.start, role.end, role.kind, text[role.start : role.end]))
    if segment.words(text):
        inside = segment.inner_bounds(text)
        for kind, pattern in (("camera", camera_zh), ("lighting", lighting_zh)):
            for m in pattern.finditer(text):
                span = _whole_words(text, m.start(), m.end(), kind, inside)
                if span is not None:
                    spans.append(span)
        for kind, start, end in roles_zh.spans(text, camera_zh):
            spans.append(Span(start, end, kind, text[start:end]))
    spans.sort(key=lambda s: (s.start, -s.end))
    return spans, absent


def _whole_words(text: str, start: int, end: int, kind: str, inside: frozenset[int]) -> Span | None:
    """A Chinese term widened to the words it touches ("景深" in "浅景深"), or None for a single
    character inside a longer word (光 of 光滑)."""
    if start not in inside and end not in inside:
        return Span(start, end, kind, text[start:end])
    if end - start < 2:
        return None
    while start in inside:
        start -= 1
    while end in inside:
        end += 1
    return Span(start, end, kind, text[start:end])


def atoms(text: str) -> list[tuple[int, int]]:
    """(start, end) of the spans a cut must keep whole or drop whole: ComfyUI weight groups `(…:1.2)`,
    `<lora:…>` style tags and quoted text. Sorted; an atom inside another is covered by the outer one."""
    found = sorted((m.start(), m.end()) for pattern in (_WEIGHT, _QUOTE) for m in pattern.finditer(text))
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
