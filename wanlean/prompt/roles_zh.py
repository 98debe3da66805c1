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

_ASIDE = re.compile(r"[（(][^（）()\n]*[）)]|“[^”\n]*”|「[^」\n]*」|『[^』\n]*』|\"[^\"\n]*\"")
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
    asides = [(m.start(), m.end()) for m in _ASIDE.finditer(text)]
    subject_sentence = None
    for index, clause in enumerate(clauses):
        if subject_sentence is not None and _sentence(text, clause[0].start) != subject_sentence:
            break
        if any(a <= clause[0].start < b for a, b in asides) or _is_tag(clause, camera_terms):
            continue
        if _is_verb(clause[0]) and clause[0].text not in _FRAMING and not any(w.text == "的" for w in clause):
            continue  # "走在楼梯上", "穿过一片麦田": the subject is elsewhere (but "撑着伞的女子" has one)
        subject = _subject(clause)
        if subject is None:
            continue
        first, head = subject
        found.append(Role("subject", clause[first].start, clause[head].end))
        action = _action(clauses, index, head)
        if action is not None:
            found.append(Role("action", action[0].start, action[1].end))
        has_verb = any(_is_verb(w) for w in clause[head + 1 :])
        if has_verb or subject_sentence is not None:
            break
        subject_sentence = _sentence(text, clause[0].start)  # a verbless setting ("清晨的菜市场"): look on
    for clause in clauses:
        for k, word in enumerate(clause):
            if word.text in _CAMERA_NOUNS and k + 1 < len(clause):
                last = _camera_move_end(clause, k)
                if last > k:
                    found.append(Role("camera", word.start, clause[last].end))
    return found


def _sentence(text: str, position: int) -> int:
    return sum(text.count(mark, 0, position) for mark in "。！？.!?\n")


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
        counted = k > start and clause[k - 1].flag == "m" and word.flag in ("i", "l", "j", "x")
        if (_is_noun(word) or counted) and word.text not in _CAMERA_NOUNS and word.text not in _NOT_SUBJECT:
            head = k  # a counted word is a noun whatever its tag ("一群火烈鸟")
        elif head is not None and word.flag == "f" and k + 1 < len(clause) and not _is_verb(clause[k + 1]):
            head, start = None, k + 1  # "沙漠中一支驼队": a place, then the subject
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
    """The subject's verb: past a place phrase ("在清澈的池塘里") and adverbs ("缓缓"), up to three words
    ("飞起", "游过", "开着红色"); in the subject's clause, else the first verb of the next two. Without
    jieba's HMM, tags of verbs are unreliable ("飞" as a noun), so the position decides."""
    clause = clauses[index]
    k = head + 1
    if k < len(clause) and clause[k].flag == "p":
        while k < len(clause) and clause[k].flag != "f" and not (_is_verb(clause[k]) and k > head + 2):
            k += 1
        k += k < len(clause) and clause[k].flag == "f"
    while k < len(clause) and clause[k].flag in ("d", "c", "ad"):
        k += 1
    if k < len(clause) and clause[k].text not in ("的", "是", "有"):
        last = k
        while last + 1 < len(clause) and last - k < 2 and clause[last + 1].text != "的" and clause[last + 1].flag not in ("p", "x"):
            last += 1
        return clause[k], clause[last]
    for following in clauses[index + 1 : index + 3]:
        for word in following:
            if _is_verb(word) and word.text not in ("是", "有", "在"):
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
