"""Chinese protection by words: colours, counts and negations that are whole words, and the subject, its
action and the camera move.

Patterns over characters fire inside words (黑 of 黑体, 白 of 白人, 二 of 二次元, 无 of 无人机). Here every
span starts and ends on a jieba word boundary (`segment.py`): a colour is a word made of colour characters
("红色", "金黄色"), a count a numeral word ("两个", "三只"), a negation a negating word ("不要", "没有",
"禁止"). A colour or count binds to the noun it qualifies ("红色汉服", "两个外国男人"); a negation covers
its clause ("不要出现任何文字"); the camera keeps its move ("镜头后拉", "镜头缓慢推进").
"""

from __future__ import annotations

import re

from . import segment
from .roles import Role
from .segment import Word

_SEPARATORS = set("，。；：！？、,.;:!?\n…（）()【】「」『』“”\"")
_COLOUR_WORD = re.compile(r"[深浅淡暗亮嫩艳鲜纯]?[红橙黄绿青蓝紫粉棕褐黑白灰金银赤彩橘]+色?|[红橙黄绿青蓝紫粉棕褐黑白灰金银赤橘]+[红橙黄绿青蓝紫粉棕褐黑白灰金银赤]*色")
_NUMERAL_WORD = re.compile(
    r"(?:[零〇二两三四五六七八九十百千万亿几数]|一(?=[零〇一二两三四五六七八九十百千万亿]))[零〇一二两三四五六七八九十百千万亿]*"
    r"[个只位名头条匹辆座棵朵张把件层米秒分帧度倍岁次群片对双株盏艘架颗根块幅间栋排队]?"
)
_NEGATION_WORDS = frozenset(
    "不 不要 不能 不会 不得 不可 不许 不准 不用 不带 不含 没 没有 无 无需 无须 禁止 避免 别 未 勿 莫 非 切勿 请勿 杜绝 拒绝 去除 不出现 无任何".split()
)
_NOT_NEGATION = frozenset(
    "不断 不同 不久 不少 不停 不仅 不禁 不时 不远 不过 不错 不然 不管 不论 不如 不住 不已 不一 不觉 无人机 无数 无限 无论 无边 无尽 "
    "无比 无垠 非常 非洲 未来 别人 别墅 别致 莫名".split()
)
_CAMERA_NOUNS = frozenset("镜头 摄像机 相机 机位 无人机 航拍 视角".split())
# Words that open a clause by announcing what is filmed: "拍摄两个外国男人" -> the men are the subject.
_FRAMING = frozenset("请 帮我 我想要 我想 生成 制作 拍摄 展现 展示 呈现 描绘 描述 画面 视频 讲述 记录 特写 出现 是 有 一段 一个 中".split())
_NOT_SUBJECT = frozenset("视频 画面 场景 镜头 影片 短片 动画 图片 风格".split())
_STYLE_ENDS = ("风格", "画风", "风", "感", "质感", "效果", "色调", "氛围", "画质", "光", "调", "构图", "景深", "镜头", "视角")


def _is_noun(word: Word) -> bool:
    return word.flag.startswith("n") or word.flag in ("vn", "ng")


def _is_verb(word: Word) -> bool:
    return word.flag.startswith("v") and word.flag != "vn"


def _clauses(text: str, words: tuple[Word, ...]) -> list[list[Word]]:
    """Words grouped by clause: a separator, a line break or non-CJK text between two words ends one."""
    clauses: list[list[Word]] = []
    previous_end = None
    for word in words:
        gap = text[previous_end : word.start] if previous_end is not None else ""
        if previous_end is None or gap:
            clauses.append([])
        clauses[-1].append(word)
        previous_end = word.end
    return clauses


def _bind_noun(clause: list[Word], k: int, limit: int = 2) -> int:
    """Index of the last noun the word clause[k] qualifies: past one 的, up to `limit` nouns."""
    j = k + 1
    if j < len(clause) and clause[j].text in ("的", "之"):
        j += 1
    last = k
    while j < len(clause) and _is_noun(clause[j]) and j - k <= limit + 1:
        last = j
        j += 1
    return last


def spans(text: str, camera_terms: re.Pattern) -> list[tuple[str, int, int]]:
    """(kind, start, end) for colours, counts, negations, and the subject, action and camera move."""
    words = segment.words(text)
    if not words:
        return []
    found: list[tuple[str, int, int]] = []
    clauses = _clauses(text, words)
    for clause in clauses:
        for k, word in enumerate(clause):
            if _COLOUR_WORD.fullmatch(word.text) and not _is_verb(word):
                last = _bind_noun(clause, k) if word.text.endswith("色") or len(word.text) == 1 else k
                found.append(("colour", word.start, clause[last].end))
            elif _NUMERAL_WORD.fullmatch(word.text):
                found.append(("number", word.start, clause[_bind_noun(clause, k, 3)].end))
            elif _is_negation(word.text):
                last = min(len(clause) - 1, k + 8)
                found.append(("negation", word.start, clause[last].end))
    found.extend((role.kind, role.start, role.end) for role in roles(text, clauses, camera_terms))
    return found


def _is_negation(word: str) -> bool:
    if word in _NEGATION_WORDS:
        return True
    return len(word) <= 3 and word[0] in "不没无禁" and word not in _NOT_NEGATION


def roles(text: str, clauses: list[list[Word]], camera_terms: re.Pattern) -> list[Role]:
    found: list[Role] = []
    for index, clause in enumerate(clauses):
        if _is_tag(clause, camera_terms):
            continue
        subject = _subject(clause)
        if subject is not None:
            first, head = subject
            found.append(Role("subject", clause[first].start, clause[head].end))
            action = _action(clauses, index, head)
            if action is not None:
                found.append(Role("action", action[0].start, action[1].end))
            break
    for clause in clauses:
        for k, word in enumerate(clause):
            if word.text in _CAMERA_NOUNS and k + 1 < len(clause):
                last = _camera_move_end(clause, k)
                if last > k:
                    found.append(Role("camera", word.start, clause[last].end))
    return found


def _is_tag(clause: list[Word], camera_terms: re.Pattern) -> bool:
    """A clause of style, camera or lighting terms only ("特写", "纪实风格", "镜头后拉", "电影感")."""
    text = "".join(w.text for w in clause)
    if clause[0].text in _CAMERA_NOUNS or all(w.text in _FRAMING or w.text in _NOT_SUBJECT for w in clause):
        return True
    if not any(_is_verb(w) for w in clause) and text.endswith(_STYLE_ENDS):
        return True
    rest = camera_terms.sub("", text)
    return not rest.strip("的和与")


def _subject(clause: list[Word]) -> tuple[int, int] | None:
    """(first, head) of the first noun phrase: the last noun before the clause's first verb, adverb or
    preposition that follows a noun; framing verbs ("拍摄", "展现") before it are skipped."""
    start = 0
    while start < len(clause) and (clause[start].text in _FRAMING and start + 1 < len(clause)) and not _NUMERAL_WORD.fullmatch(clause[start].text):
        start += 1
    head = None
    for k in range(start, len(clause)):
        word = clause[k]
        if _is_noun(word) and word.text not in _CAMERA_NOUNS and word.text not in _NOT_SUBJECT:
            head = k
        elif head is not None and (_is_verb(word) or word.flag in ("d", "p", "c", "f")):
            break
    if head is None:
        return None
    first = head
    # Modifiers back to the start, but not past a 的 more than a few words away: "两个外国男人",
    # "年轻女子" of "一位穿着红色汉服的年轻女子".
    while first > start and clause[first - 1].text not in ("的",) and head - first < 3:
        first -= 1
    return first, head


def _action(clauses: list[list[Word]], index: int, head: int) -> tuple[Word, Word] | None:
    """The first verb after the subject, in its clause or the next two; a verb that ends in a
    preposition ("坐在", "走向") keeps its place ("坐在木质窗台上"), up to four words."""
    for offset, clause in enumerate(clauses[index : index + 3]):
        first = head + 1 if offset == 0 else 0
        for k in range(first, len(clause)):
            word = clause[k]
            if _is_verb(word) and word.text not in ("是", "有", "在"):
                if word.text[-1] in "在到向于进入" and len(word.text) > 1:
                    return word, clause[min(len(clause) - 1, k + 4)]
                return word, word
    return None


def _camera_move_end(clause: list[Word], k: int) -> int:
    """The camera noun's move: the rest of a short clause ("镜头缓慢推进"), or up to the first verb and its
    direction word in a long one ("镜头从远景慢慢推进")."""
    if len(clause) - k <= 5:
        return len(clause) - 1
    for j in range(k + 1, len(clause)):
        if _is_verb(clause[j]):
            return j + 1 if j + 1 < len(clause) and clause[j + 1].flag in ("f", "v") else j
    return k
