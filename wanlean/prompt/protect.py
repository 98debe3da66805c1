"""Spans of a prompt that no compression may drop.

The kinds, in the order they are reported: `keep` (the user's list, e.g. the template's keywords),
`negation` with the few words it governs ("does not look at", "不要看镜头"), `number` with its unit
("24mm", "3 horses", "两只"), `colour`, `camera` and `lighting` terms (Wan's aesthetic vocabulary in
English and Chinese plus common film terms), `quote` (text in quotation marks) and `weight` (ComfyUI
weight syntax such as ``(word:1.2)`` and ``<lora:name:0.8>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from . import template
from ..charsets import CJK_CHARS, LATIN_WORD_END, LATIN_WORD_START

KINDS = ("keep", "negation", "number", "colour", "camera", "lighting", "quote", "weight")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str
    text: str


_L, _R = LATIN_WORD_START, LATIN_WORD_END

_NEGATION_EN = re.compile(
    _L + r"(?:not|no|never|without|nor|neither|none|nothing|nobody|nowhere|cannot|\w+n['’]t)" + _R
    # ... and the words it governs: up to three more words in the same clause.
    + r"(?:[ \t]+[^\s,.;:!?，。；：！？、()\[\]]+){0,3}",
    re.IGNORECASE,
)
# 非 is a negation except in 非常 ("very").
_NEGATION_ZH = re.compile(rf"(?:不要|不能|不会|没有|无需|禁止|避免|[不没无别未勿莫]|非(?!常))[{CJK_CHARS}]{{0,4}}")

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
    + rf"|\d+(?:\.\d+)?\s?(?:毫米|厘米|公里|米|秒钟|秒|分钟|小时|帧|度|倍|岁|个|只|位|名|条|头|辆|座|棵|朵|张|层|年|天)"
    # Chinese numerals, but not a lone 一 ("一只猫" is "a cat", an article, not a count).
    + rf"|(?:[零〇二两三四五六七八九十百千万亿]|一(?=[零〇一二两三四五六七八九十百千万亿]))[零〇一二两三四五六七八九十百千万亿]*"
    + rf"[个只位名头条匹辆座棵朵张把件层米秒分帧度倍岁次群片对双]?",
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
# ... with the thing it colours when 色 ends it: "绿色的植物", "蓝色眼睛".
_COLOUR_ZH = re.compile(rf"[深浅淡暗亮嫩艳]?[红橙黄绿青蓝紫粉棕褐黑白灰金银赤彩]+(?:色(?:的?[{CJK_CHARS}]{{2}})?)?")

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
    "环绕 运镜 慢动作 慢镜头 延时 景深 浅景深 虚化 焦点 对焦 广角 长焦 鱼眼 微距 机位 视角 第一人称 构图 画幅 定场 手持 固定镜头"
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


# A colour or a count is kept with the word it qualifies ("white cup", "12 elephants"), unless that is a
# function word ("black against").
_NEXT_WORD = re.compile(rf"[ \t]+([^\W\d_{CJK_CHARS}][\w'’-]*)")
_FUNCTION_WORDS = set(
    """a an the of in on at to for from by with into onto over under above below behind beside between through
    across along around toward towards near up down out off about against among and or but as while when where
    which who that this these those it its is are was were be been has have had do does did will would can
    could may might must not no""".split()
)


_LATIN_END = re.compile(rf"[^\W{CJK_CHARS}]")


def _with_next_word(text: str, span: Span) -> Span:
    match = _NEXT_WORD.match(text, span.end)
    if match and match.group(1).lower() not in _FUNCTION_WORDS:
        return Span(span.start, match.end(), span.kind, text[span.start : match.end()])
    return span


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
    _index, camera_zh, lighting_zh = _vocabulary()
    for span in _latin_phrases(text):
        spans.append(_with_next_word(text, span) if span.kind == "colour" else span)
    for kind, patterns in (
        ("negation", (_NEGATION_EN, _NEGATION_ZH)),
        ("number", (_NUMBER,)),
        ("colour", (_COLOUR_ZH,)),
        ("camera", (camera_zh,)),
        ("lighting", (lighting_zh,)),
        ("quote", (_QUOTE,)),
        ("weight", (_WEIGHT,)),
    ):
        for pattern in patterns:
            for m in pattern.finditer(text):
                if not m.group().strip():
                    continue
                span = Span(m.start(), m.end(), kind, m.group())
                if kind == "number" and _LATIN_END.match(m.group()[-1]):
                    span = _with_next_word(text, span)
                spans.append(span)
    spans.sort(key=lambda s: (s.start, -s.end))
    return spans, absent


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
