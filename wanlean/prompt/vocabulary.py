"""The prompt tools' word tables: filler, synonyms, articles, function words, clause starters.

Data, not algorithm: the compressor (`compress/`) and the role finder (`roles.py`) read them. English and Chinese side by side.
"""

from __future__ import annotations

import re

from ..charsets import LATIN_WORD_END, LATIN_WORD_START

# What counts as filler.
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


def _alternation(words: str, latin: bool) -> str:
    terms = sorted(words.split("|"), key=len, reverse=True)
    body = "|".join(re.escape(t).replace(r"\ ", r"[ \t]+") for t in terms)
    return LATIN_WORD_START + f"(?:{body})" + LATIN_WORD_END if latin else f"(?:{body})"


FILLER = [
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
SYNONYM_GROUP = {w: i for i, line in enumerate(_SYNONYMS_EN) for w in line.split()}
SYNONYM_ZH = re.compile("|".join(sorted((w for line in _SYNONYMS_ZH for w in line.split()), key=len, reverse=True)))
SYNONYM_ZH_GROUP = {w: i for i, line in enumerate(_SYNONYMS_ZH) for w in line.split()}
LIST_JOINERS = {",", "，", "、", "and", "&", "or", "和", "与", "又", "且"}

ARTICLES = {"a", "an", "the"}
ARTICLE_ZH = re.compile("一[个只位名头条匹辆座棵朵张把件]")  # "一只猫": "a cat"
STOPWORDS = set(
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
CLAUSE_STARTERS = frozenset(
    "and but while whilst as which who whose where when then before after until because".split()
)
PREPOSITIONS = set(
    """of in on at to for from by with into onto over under above below behind beside between through across
    along around toward towards near up down out off about against among upon within without""".split()
)
CONJUNCTIONS = {"and", "or", "but", "nor", "yet", "so", "then", "while", "whilst", "as", "when", "where"}
CJK_SINGLE = set("了着")  # CJK characters that may go one by one (的 stays: it merges with its neighbours)
BRACKETS = set("()[]{}（）【】《》〈〉<>")
CJK_FUNCTION = set("的了着地得在是和与及并也又都就还把被将从向对于而且或这那其")


# The one-word English filler terms (please, maybe, very, ...), for a quick share of filler words.
FILLER_WORDS_EN = frozenset(term for terms in _FILLER_EN.values() for term in terms.split("|") if " " not in term)
