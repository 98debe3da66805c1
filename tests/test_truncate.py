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


def test_node(pack, exact):
    node_class = pack.NODE_CLASS_MAPPINGS["WanLeanTruncate"]
    schema = node_class.INPUT_TYPES()["required"]
    assert schema["max_tokens"][1]["default"] == 512 and schema["tail_tokens"][1]["default"] == -1
    out = node_class().run(TEXT, 20, -1, "estimate")
    text, dropped, report = out["result"]
    assert tokens.load_tokenizer(None).count(text) <= 20 and dropped and out["ui"]["text"] == [report]
