"""WanLeanTruncate core: head + tail, clause-aware cuts, never over the budget."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wanlean import tokens
from wanlean.prompt import truncate
from wanlean.errors import WanLeanError

TEXT = (
    "A young woman with long red hair stands on a cliff. She wears a white dress, which billows in the wind. "
    "The camera pushes in slowly, she turns her head. Dark clouds gather, lightning flashes. "
    "Cinematic, moody lighting, 35mm film."
)
ZH = "一只橘色小猫坐在木质窗台上，窗外下着小雨，它在看着雨滴，尾巴轻轻摆动。背景中有一盆绿色的植物。不要出现人物。镜头缓慢推进，柔光，暖色调，特写。"


@pytest.fixture(scope="module")
def exact(spiece_bytes):
    return tokens.SentencePieceTokenizer(spiece_bytes, "tiny test model")


def test_within_budget_passes_through_unchanged(exact):
    result = truncate.truncate(TEXT, 512, tokenizer=exact)
    assert result.text == TEXT and result.dropped == "" and not result.changed
    assert "passed through unchanged" in result.report()


def _is_head_plus_tail(result: str, source: str) -> bool:
    """`result`, whitespace aside, is a prefix of `source` followed by a suffix of it: nothing added."""
    r, t = "".join(result.split()), "".join(source.split())
    return any(t.startswith(r[:k]) and t.endswith(r[k:]) for k in range(len(r) + 1))


def test_keeps_head_and_tail_and_cuts_at_clauses(exact):
    budget = exact.count(TEXT) // 2
    result = truncate.truncate(TEXT, budget, tokenizer=exact)
    assert exact.count(result.text) <= budget == result.max_tokens
    assert result.text.startswith("A young woman") and result.text.endswith("35mm film.")
    assert result.dropped and result.dropped in TEXT and _is_head_plus_tail(result.text, TEXT)
    assert "".join((result.text.replace(" ", "")).split()) != "".join(TEXT.split())
    assert "clause" in (result.head_cut, result.tail_cut)
    report = result.report()
    assert f"-> {result.tokens_after}" in report and "kept tail" in report and "clause boundary" in report


def test_the_pieces_are_the_original_text(exact):
    for budget in (8, 16, 24, 40):
        result = truncate.truncate(TEXT, budget, tokenizer=exact)
        assert result.tokens_after == exact.count(result.text) <= budget
        assert _is_head_plus_tail(result.text, TEXT)
        # Putting the dropped middle back gives the original, whitespace aside.
        head_len = next((k for k in range(len(result.text)) if not TEXT.startswith(result.text[: k + 1])), len(result.text))
        rebuilt = result.text[:head_len].rstrip() + " " + result.dropped + " " + result.text[head_len:].lstrip()
        assert rebuilt.split() == TEXT.split()


def test_default_tail_is_three_eighths_and_zero_keeps_only_the_head(exact):
    assert truncate.tail_budget(512) == 192 and truncate.tail_budget(64) == 24
    assert truncate.truncate(TEXT, 20, tokenizer=exact).tail_budget == 7
    head_only = truncate.truncate(TEXT, 20, tail_tokens=0, tokenizer=exact)
    assert TEXT.startswith(head_only.text) and head_only.tail_tokens == 0
    tail_heavy = truncate.truncate(TEXT, 20, tail_tokens=19, tokenizer=exact)
    assert TEXT.endswith(tail_heavy.text)


def test_chinese_is_never_cut_inside_a_character_and_joins_without_a_space(exact):
    result = truncate.truncate(ZH, 20, tokenizer=exact)
    assert exact.count(result.text) <= 20
    assert result.text.startswith("一只橘色小猫") and result.text.endswith("特写。")
    assert " " not in result.text
    assert result.dropped and result.dropped in ZH and _is_head_plus_tail(result.text, ZH)


JA = "オレンジいろのこねこがまどべにすわっている。まどのそとではこさめがふっている。カメラはゆっくりとよる。やわらかいひかり、クローズアップ。"
KO = "주황색새끼고양이가나무창틀에앉아있다。창밖에는가랑비가내린다。카메라가천천히다가간다。부드러운빛、클로즈업。"


@pytest.mark.parametrize("text, head, tail", [(JA, "オレンジいろのこねこ", "クローズアップ。"), (KO, "주황색새끼고양이", "클로즈업。")])
def test_japanese_and_korean_are_cut_between_characters_like_chinese(text, head, tail):
    estimate = tokens.load_tokenizer(None)
    result = truncate.truncate(text, 16, tokenizer=estimate)
    assert estimate.count(result.text) <= 16
    assert result.text.startswith(head) and result.text.endswith(tail) and " " not in result.text
    assert result.dropped and result.dropped in text and _is_head_plus_tail(result.text, text)
    assert result.tokens_after >= 14  # cut between characters, close to the budget


def test_no_word_boundary_keeps_nothing_and_says_so(exact):
    result = truncate.truncate("x" * 400, 5, tokenizer=exact)
    assert result.text == "" and "no word boundary" in result.report()


def test_bad_options_are_named():
    with pytest.raises(WanLeanError, match="max_tokens must be a whole number of at least 2"):
        truncate.truncate("a cat", 1)
    with pytest.raises(WanLeanError, match=r"tail_tokens \(20\) must leave room for </s> within max_tokens \(20\)"):
        truncate.truncate("a cat", 20, tail_tokens=20)
    with pytest.raises(WanLeanError, match="tail_tokens must be -1"):
        truncate.truncate("a cat", 20, tail_tokens=-5)


def test_empty_and_huge_texts():
    assert truncate.truncate("", 10).text == ""
    huge = (TEXT + " ") * 500
    result = truncate.truncate(huge, 512)
    assert tokens.load_tokenizer(None).count(result.text) <= 512
    assert result.text.startswith("A young woman") and result.text.endswith("35mm film.")


_PIECES = ["cat", "runs", "quickly", "a", "the", "close-up", "24mm", "猫", "镜头", "红色", ",", ".", "，", "。", "(x:1.2)", "supercalifragilistic"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from(["", " ", "\n"])), max_size=80),
    max_tokens=st.integers(min_value=2, max_value=60),
    tail=st.integers(min_value=-1, max_value=59),
    use_exact=st.booleans(),
)
def test_property_never_exceeds_the_budget(exact, pieces, max_tokens, tail, use_exact):
    text = "".join(word + gap for word, gap in pieces)
    tokenizer = exact if use_exact else tokens.load_tokenizer(None)
    tail = min(tail, max_tokens - 1)
    result = truncate.truncate(text, max_tokens, tail, tokenizer)
    assert tokenizer.count(result.text) <= max_tokens
    assert result.tokens_after == tokenizer.count(result.text)
    if tokenizer.count(text) <= max_tokens:
        assert result.text == text
    else:
        assert _is_head_plus_tail(result.text, text)
        assert result.tokens_before > max_tokens


def _cut_points(text):
    """Where truncation may cut: tokens.boundaries less those inside a Chinese word (issue 11)."""
    from wanlean.prompt import segment

    inside = segment.inner_bounds(text)
    return [b for b in tokens.boundaries(text) if b not in inside]


def _head_index_and_tail(result, tokenizer, text):
    """(index into _cut_points(text) where the kept head ends, kept tail): the pair whose pieces give
    the result (and its reported piece counts, where a repeated word makes two pairs give the same text)."""
    bounds = _cut_points(text)

    def pieces(part):
        return tokenizer.count(part) - 1 if part else 0

    for i, head_end in enumerate(bounds):
        for tail_start in bounds[i:]:
            head, tail = text[:head_end].strip(), text[tail_start:].strip()
            if (text[head_end:tail_start].strip() == result.dropped and truncate._join(head, tail) == result.text
                    and (pieces(head), pieces(tail)) == (result.head_tokens, result.tail_tokens)):
                return i, tail
    raise AssertionError(f"{result.text!r} is not a head and a tail of {text!r}")


# Head and tail fit apart but not joined: the join merges CJK runs and rounds differently, so head words
# must be given back one at a time. The first is the input a mutation run found (about 2.5% of random
# mixed inputs need the give-back; the suite reached it with none).
GIVE_BACK = [
    ("一只猫 runs fast, the camera pans left slowly 红色 镜头 at dusk 猫猫", 8),
    ("the 。 。 夕阳 24mm 24mm 猫 runs 红色", 6),
    ("夕阳\n24mm\n夕阳 cat 镜头 镜头 slowly 红色镜头 slowly", 14),
    ("quickly 夕阳红色 猫\nquickly 红色\n. .猫\nruns 24mm\n夕阳\n", 14),
    ("ねこが まどべで ねむる、 カメラは ゆっくり 動く 夕方 ネコ", 8),
    ("고양이가 창가에서 잠을 잔다, 카메라가 천천히 움직인다 저녁 고양이", 8),
]


@pytest.mark.parametrize("text, max_tokens", GIVE_BACK)
def test_head_words_are_given_back_until_the_joined_text_fits(text, max_tokens):
    estimate = tokens.load_tokenizer(None)
    result = truncate.truncate(text, max_tokens, tokenizer=estimate)
    assert estimate.count(result.text) == result.tokens_after <= max_tokens
    head_index, tail = _head_index_and_tail(result, estimate, text)
    bounds = _cut_points(text)
    head = text[: bounds[head_index]].strip()
    assert head and tail, result.report()  # a head was given back, not lost: both ends survive
    # ... and only as much as needed: one more head word would not fit once joined (a cut moved back to a
    # clause boundary keeps room by design).
    if result.head_cut == "word":
        longer = next(text[:b].strip() for b in bounds[head_index:] if text[:b].strip() != head)
        assert estimate.count(truncate._join(longer, tail)) > max_tokens


def test_the_issue_example_keeps_the_longest_head_that_fits():
    # Apart: head "一只猫 runs fast," 5 pieces + tail "dusk 猫猫" 2 = 7 of 7. Joined: 一只猫 2.25 + runs + fast
    # + "," + dusk + 猫猫 1.5 = 7.75 → 8 pieces, 9 tokens. Giving back "fast," fits: 7 tokens.
    result = truncate.truncate(GIVE_BACK[0][0], 8, tokenizer=tokens.load_tokenizer(None))
    assert (result.text, result.tokens_after, result.head_cut) == ("一只猫 runs dusk 猫猫", 7, "word")


_JOIN_PIECES = ["猫", "镜头", "红色", "夕阳", "ねこ", "カメラ", "고양이", "cat", "runs", "slowly", "24mm", "close-up",
                "(x:1.2)", ",", ".", "，", "。", "、", "!", "？"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.tuples(st.sampled_from(_JOIN_PIECES), st.sampled_from(["", "", " ", "\n"])), min_size=4, max_size=40),
    max_tokens=st.integers(min_value=2, max_value=24),
    tail=st.integers(min_value=-1, max_value=23),
    use_exact=st.booleans(),
)
def test_property_joins_at_cjk_latin_and_punctuation_never_exceed_the_budget(exact, pieces, max_tokens, tail, use_exact):
    """Pieces glued without spaces put the head/tail join between CJK and Latin text and next to
    punctuation, where joined counts differ most from the parts'."""
    text = "".join(word + gap for word, gap in pieces)
    tokenizer = exact if use_exact else tokens.load_tokenizer(None)
    result = truncate.truncate(text, max_tokens, min(tail, max_tokens - 1), tokenizer)
    assert tokenizer.count(result.text) == result.tokens_after <= max_tokens
    assert result.text == text if result.tokens_before <= max_tokens else _is_head_plus_tail(result.text, text)


def test_node(pack, exact):
    node_class = pack.NODE_CLASS_MAPPINGS["WanLeanTruncate"]
    schema = node_class.INPUT_TYPES()["required"]
    assert schema["max_tokens"][1]["default"] == 512 and schema["tail_tokens"][1]["default"] == -1
    out = node_class().run(TEXT, 20, -1, "estimate")
    text, dropped, report = out["result"]
    assert tokens.load_tokenizer(None).count(text) <= 20 and dropped and out["ui"]["text"] == [report]


def test_chinese_words_are_never_cut(exact):
    """Issue 11: the cut falls between jieba words, never inside one (a sign name 合興百貨 once became 興百貨)."""
    import json
    from pathlib import Path

    from wanlean.prompt import segment

    corpus = Path(__file__).resolve().parents[1] / "benchmarks" / "corpus" / "prompts.jsonl"
    texts = [r["prompt"] for r in map(json.loads, corpus.read_text(encoding="utf-8").splitlines()) if r["lang"] == "zh"]
    texts.append("镜头后拉，拍摄两个外国男人走在楼梯上，招牌上写着合興百貨，百货大楼门口人来人往，镜头右移，暖色调，复古胶片质感")
    estimate = tokens.load_tokenizer(None)
    checked = 0
    for text in texts:
        inside = segment.inner_bounds(text)
        for tokenizer in (estimate, exact):
            for budget, tail in ((16, 6), (24, 8), (32, 0)):
                result = truncate.truncate(text, budget, tail, tokenizer)
                if not result.changed:
                    continue
                start = text.index(result.dropped)
                for position in (start, start + len(result.dropped)):
                    while 0 < position < len(text) and text[position - 1] in " ，。、" and position - 1 >= start:
                        position -= 1
                    assert position not in inside, (text, result.text)
                checked += 1
    assert checked > 50
