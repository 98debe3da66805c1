"""Each anomaly detector fires on its kind of junk, with a reason, and none fires on clean official-style prompts."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wanlean.prompt_log.anomalies import (
    FLAGS,
    LABELS,
    MIN_USUAL_ROWS,
    UsualLength,
    detect,
)
from wanlean.video.models import OFFICIAL_NEGATIVE

CORPUS = Path(__file__).resolve().parents[1] / "benchmarks" / "corpus" / "prompts.jsonl"
CLEAN = [json.loads(line)["prompt"] for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
FOX = "A red fox trots through deep fresh snow at dawn, its breath visible in the cold air. The camera tracks it from a low angle."


def flags(text, **kw):
    return [a.flag for a in detect(text, **kw)]


@pytest.mark.parametrize("text", CLEAN + [OFFICIAL_NEGATIVE], ids=lambda t: t[:30])
def test_clean_official_style_prompts_raise_no_flag(text):
    assert detect(text, tokens=120) == []


def test_the_corpus_is_large_and_mixed():
    assert len(CLEAN) > 150 and any("，" in t for t in CLEAN) and any(" the " in t for t in CLEAN)


@pytest.mark.parametrize("text, expected_in_reason", [
    ("masterpiece, best quality, masterpiece, best quality, masterpiece, best quality, a girl on a beach at sunset", '"masterpiece best quality" is repeated 3 times'),
    ("a cat, beautiful cat, beautiful cat, beautiful cat, beautiful cat on a sofa", "repeated"),
    ("cat cat cat cat cat cat sitting on a mat in a bright room", "repeated"),
    ("热气球热气球热气球热气球在山谷中升起", '"热气球" is repeated 4 times'),
    ("dog running, grass dog, park dog, river dog, tree dog", '"dog" makes up 5 of 10 words'),
])
def test_repetition(text, expected_in_reason):
    found = detect(text)
    assert [a.flag for a in found] == ["repetition"]
    assert expected_in_reason in found[0].reason


def test_repetition_needs_a_large_share():
    # "the camera" three times in a long prompt is style, not stuffing
    text = (FOX + " The camera then rises. ") * 1 + "Later the camera pans left while the camera keeps the fox in frame, soft light."
    assert "repetition" not in flags(text)


@pytest.mark.parametrize("text", [
    "please please, very very really really just just kind of sort of maybe perhaps a cat I think",
    "Please could you make sure that it is really very extremely super nice, thank you, a dog",
    "请你帮我生成一个视频，非常非常非常好看，真的真的很好看，谢谢",
])
def test_filler_padding(text):
    found = detect(text)
    assert "filler" in [a.flag for a in found]
    assert "carry no content" in next(a for a in found if a.flag == "filler").reason


def test_short_prompts_are_not_called_padded():
    assert flags("a very old cat") == []


@pytest.mark.parametrize("text", [
    "a red fox xq7zk9vwp3lm8rt running through snow",
    "a red fox a8b7c6d5 and k9j8h7g6 running through snow and rain",
    "x q z k f p w r t a cat",
    "a cat ☃☃☃★★★§§ ¤¤",
    "a dog \ue000\ue001\ue002\ue003\ue004\ue005",
])
def test_gibberish(text):
    assert flags(text) == ["gibberish"]


@pytest.mark.parametrize("text", ["a 35mm lens, 1080p, 4K, f/2.8, 24fps", "strengths of rhythm", "I see a cat"])
def test_gibberish_spares_camera_terms_and_real_words(text):
    assert "gibberish" not in flags(text)


@pytest.mark.parametrize("char", ["\u200b", "\u200d", "\ufeff", "\u2060", "\x07", "\u202e"])
def test_invisible_characters(char):
    found = detect(f"a red fox{char} runs through snow")
    assert [a.flag for a in found] == ["invisible"]
    assert f"U+{ord(char):04X}" in found[0].reason


def test_ordinary_whitespace_is_not_invisible():
    assert flags("a red fox\n\truns through snow\r\n") == []


@pytest.mark.parametrize("text", ["a (red fox:9) running", "a (red fox: 2.5) running", "a (fox:-1) running",
                                  "a ((((red fox)))) running"])
def test_weight_syntax_abuse(text):
    assert flags(text) == ["weight_syntax"]


@pytest.mark.parametrize("text", ["a (red fox:1.3) running", "a ((red fox)) running", "a fox (in the snow) running"])
def test_usual_weights_are_fine(text):
    assert flags(text) == []


def test_over_512_only_with_a_count_above_512():
    assert flags(FOX, tokens=512) == []
    found = detect(FOX, tokens=600)
    assert [a.flag for a in found] == ["over_512"] and "drop 88" in found[0].reason


def test_unusual_length_needs_enough_rows_and_a_far_length():
    usual = UsualLength(rows=MIN_USUAL_ROWS, q1=40, q3=90)
    assert flags(FOX, tokens=500, usual=usual) == ["unusual_length"]
    assert flags(FOX, tokens=5, usual=UsualLength(rows=100, q1=100, q3=200)) == ["unusual_length"]
    assert flags(FOX, tokens=300, usual=usual) == []  # under 4 x the upper quartile
    assert flags(FOX, tokens=500, usual=UsualLength(rows=MIN_USUAL_ROWS - 1, q1=40, q3=90)) == []
    assert flags(FOX, tokens=9, usual=UsualLength(rows=100, q1=12, q3=20)) == []  # a handful of tokens apart


def test_several_flags_come_in_flag_order_with_labels():
    found = detect("cat cat cat cat cat cat\u200b (cat:9) on a mat", tokens=700)
    assert [a.flag for a in found] == ["repetition", "invisible", "weight_syntax", "over_512"]
    assert all(a.as_dict() == {"flag": a.flag, "label": LABELS[a.flag], "reason": a.reason} for a in found)
    assert set(LABELS) == set(FLAGS) and LABELS["repetition"] == "repeated phrase"


def test_empty_and_huge_texts():
    assert detect("") == []
    assert "repetition" in flags("fox " * 20000)
    assert flags("(" * 100_000 + "fox") == ["weight_syntax"]  # 1.1 ** 100000 would overflow


@given(st.text(max_size=400), st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)))
@settings(max_examples=300, deadline=None)
def test_any_text_gives_flags_with_reasons_and_never_raises(text, tokens):
    found = detect(text, tokens, UsualLength(rows=100, q1=10, q3=30))
    assert [a.flag for a in found] == [f for f in FLAGS if f in {a.flag for a in found}]
    assert all(a.reason and a.label for a in found)
