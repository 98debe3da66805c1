"""What a count means for each runtime (`wanlean.token_report`): the report within and over budget, the
first words a 512-token cut loses, the budget for prompt and negative, hosted APIs' character limits."""

import pytest

from wanlean import token_report, tokens
from wanlean.errors import WanLeanError

ENGLISH = "a red fox runs through deep snow at dawn, the camera tracks it from a low angle"
CHINESE = "一只红色的狐狸在雪地里奔跑，镜头从低角度跟随"


def test_estimate_report_says_estimate_everywhere():
    report = token_report.analyze(tokens.load_tokenizer("estimate"), "a red fox", "blurry")
    summary = report.summary()
    assert "ESTIMATE" in summary and "≈" in summary and "exact count" in summary
    assert report.as_dict()["exact"] is False and "estimate" in report.as_dict()["label"]


# --- the runtime report ----------------------------------------------------------------------------------


def test_report_within_budget(tok, sp):
    report = token_report.analyze(tok, ENGLISH, CHINESE, budget=512)
    assert report.prompt.tokens == len(sp.encode(ENGLISH)) + 1
    assert report.negative.tokens == len(sp.encode(CHINESE)) + 1
    assert report.prompt.characters == len(ENGLISH) and not report.over_budget
    summary = report.summary()
    assert f"prompt: {report.prompt.tokens} / 512 tokens, {len(ENGLISH)} characters" in summary
    assert f"negative: {report.negative.tokens} / 512 tokens" in summary
    assert "kept whole" in summary and "padded to 512" in summary
    assert "800 characters for the prompt" in summary and "500 characters for the negative" in summary
    assert "≈" not in summary and "exact" in summary


def test_report_over_512_names_the_first_lost_words(tok):
    words = [f"w{i}" for i in range(400)]  # each "w123" is several pieces in the tiny vocabulary
    text = " ".join(words)
    report = token_report.analyze(tok, text)
    assert report.prompt.tokens > 512 and report.over_budget
    kept, lost = tok.split_at(text, 512)
    first_lost = lost.split()[0]
    assert report.prompt.lost == lost
    summary = report.summary()
    assert f"{report.prompt.tokens - 512} tokens cut; lost from: \"{first_lost} " in summary
    assert f"all {report.prompt.tokens:,} tokens kept, no padding needed" in summary
    assert report.as_dict()["prompt"]["lost_from"].startswith(first_lost)


def test_budget_applies_to_prompt_and_negative(tok):
    short, long_ = "fox", " ".join(["a red fox"] * 10)
    assert not token_report.analyze(tok, short, short, budget=8).over_budget
    assert token_report.analyze(tok, short, long_, budget=8).over_budget
    assert token_report.analyze(tok, long_, None, budget=8).over_budget
    summary = token_report.analyze(tok, long_, None, budget=8).summary()
    assert "/ 8 tokens" in summary and "OVER BUDGET" in summary


def test_hosted_api_character_limits(tok):
    report = token_report.analyze(tok, "a" * 801, "b" * 500)
    summary = report.summary()
    assert "prompt: 801 / 800 characters, 1 too many" in summary
    assert "negative: 500 / 500 characters, fits" in summary


@pytest.mark.parametrize("budget", [0, -5, 1.5, True, "512"])
def test_bad_budget_is_refused(tok, budget):
    with pytest.raises(WanLeanError, match="budget"):
        token_report.analyze(tok, "x", budget=budget)


def test_anomalies_in_the_report_and_the_answer():
    report = token_report.analyze(tokens.load_tokenizer(None), "cat cat cat cat cat cat\u200b on a mat")
    assert [a.flag for a in report.anomalies] == ["repetition", "invisible"]
    assert "Anomalies in the prompt:\n  ⚠ repeated phrase: " in report.summary()
    assert [a["label"] for a in report.as_dict()["anomalies"]] == ["repeated phrase", "invisible characters"]
    clean = token_report.analyze(tokens.load_tokenizer(None), "a red fox runs through snow")
    assert clean.anomalies == () and "Anomalies" not in clean.summary() and clean.as_dict()["anomalies"] == []


def test_a_failing_detector_costs_the_flags_not_the_count(monkeypatch, caplog):
    def broken(text, tokens=None, usual=None):
        raise RuntimeError("detector bug")

    monkeypatch.setattr(token_report, "detect", broken)
    report = token_report.analyze(tokens.load_tokenizer(None), "a red fox")
    assert report.prompt.tokens > 1 and report.anomalies == ()
    assert any("anomaly detection failed" in r.getMessage() for r in caplog.records)
