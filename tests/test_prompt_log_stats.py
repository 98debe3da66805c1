"""Summary statistics of the prompt log: histogram bins add up to the prompts and always reach past 512,
percentiles, filters, counts, CSV export and the text rendering."""

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wanlean.errors import WanLeanError
from wanlean.prompt_log import stats
from wanlean.prompt_log.row import PromptEntry, make_row
from wanlean.prompt_log.store import PromptLog


@given(st.lists(st.integers(min_value=1, max_value=200_000), max_size=300))
@settings(max_examples=200, deadline=None)
def test_histogram_bins_add_up_and_cover_512(tokens):
    bins = stats.histogram(sorted(tokens))
    assert sum(b["count"] for b in bins) == len(tokens)
    assert bins[0]["lo"] == 0 and all(a["hi"] == b["lo"] for a, b in zip(bins, bins[1:]))
    assert any(b["lo"] <= 512 < b["hi"] for b in bins) and bins[-1]["hi"] > max(tokens + [512])
    assert len(bins) <= stats.MAX_BINS
    for b in bins:  # lo inclusive, hi exclusive
        assert b["count"] == sum(1 for t in tokens if b["lo"] <= t < b["hi"])
    width = bins[0]["hi"]
    if width <= 512:
        assert any(b["lo"] == 512 for b in bins)  # the 512 line falls on a bin edge


def test_histogram_of_nothing_still_shows_the_512_bin():
    bins = stats.histogram([])
    assert sum(b["count"] for b in bins) == 0 and bins[-1]["lo"] == 512


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert stats.percentile(values, 0.5) == 50 and stats.percentile(values, 0.9) == 90
    assert stats.percentile([7], 0.9) == 7 and stats.percentile([], 0.5) == 0


NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("value, expected", [
    ("3600", "2026-01-31T11:00:00.000Z"),
    ("0", "2026-01-31T12:00:00.000Z"),
    ("2026-01-30T08:00:00Z", "2026-01-30T08:00:00.000Z"),
    ("2026-01-30T10:00:00+02:00", "2026-01-30T08:00:00.000Z"),
    ("2026-01-30T08:00:00", "2026-01-30T08:00:00.000Z"),
    ("2026-01-30", "2026-01-30T00:00:00.000Z"),
    ("", None),
])
def test_since_is_seconds_ago_or_an_iso_time(value, expected):
    assert stats.parse_since(value, NOW) == expected


@pytest.mark.parametrize("value", ["yesterday", "-5", "nan", "1e30", "2026-13-01"])
def test_bad_since_names_the_parameter(value):
    with pytest.raises(WanLeanError, match="^since: "):
        stats.parse_since(value, NOW)


@pytest.mark.parametrize("value", ["a b", "x" * 101, "<script>", "Wan;drop"])
def test_bad_source_names_the_parameter(value):
    with pytest.raises(WanLeanError, match="^source: "):
        stats.check_source(value)


def _filled(tmp_path):
    log = PromptLog(tmp_path / "log.sqlite3")
    entries = [
        PromptEntry("WanLeanTokenCount", "a red fox runs through fresh snow at dawn", 20, True, time="2026-01-30T10:00:00.000Z"),
        PromptEntry("WanLeanTokenCount", "cat cat cat cat cat cat on a mat", 700, True, time="2026-01-31T10:00:00.000Z"),
        PromptEntry("WanLeanTruncate", "a long prompt about a lighthouse keeper", 512, False, budget=500, tokens_before=900,
                    time="2026-01-31T11:00:00.000Z"),
        PromptEntry("WanLeanCompress", "a zero\u200bwidth prompt about a heron", 40, True, tokens_before=60,
                    time="2026-01-31T11:30:00.000Z"),
    ]
    log.add_many([make_row(e) for e in entries])
    return log


def test_summary_counts(tmp_path):
    summary = stats.summarize(_filled(tmp_path))
    assert summary["prompts"] == 4
    assert summary["tokens"]["p50"] == 40 and summary["tokens"]["p90"] == 700 and summary["tokens"]["max"] == 700
    assert summary["tokens"]["mean"] == pytest.approx((20 + 700 + 512 + 40) / 4, abs=0.05)
    assert sum(b["count"] for b in summary["tokens"]["histogram"]) == 4
    assert summary["over_budget"] == 2 and summary["over_512"] == 1  # 512 fits 512; 512 > budget 500
    assert summary["tokens_saved"] == (900 - 512) + (60 - 40)
    assert summary["anomalies"]["repetition"] == 1 and summary["anomalies"]["invisible"] == 1
    assert summary["anomalies"]["over_512"] == 1 and summary["anomalies"]["filler"] == 0
    recent = summary["recent_anomalies"]
    assert [r["source"] for r in recent] == ["WanLeanCompress", "WanLeanTokenCount"]  # newest first
    assert recent[1] == {"time": "2026-01-31T10:00:00.000Z", "source": "WanLeanTokenCount", "tokens": 700,
                         "flags": ["repetition", "over_512"], "text": "cat cat cat cat cat cat on a mat"}
    assert summary["sources"] == ["WanLeanCompress", "WanLeanTokenCount", "WanLeanTruncate"]
    assert summary["enabled"] is True and summary["store_text"] is True


def test_filters(tmp_path):
    log = _filled(tmp_path)
    by_source = stats.summarize(log, source="WanLeanTokenCount")
    assert by_source["prompts"] == 2 and by_source["tokens_saved"] == 0
    assert by_source["sources"] == ["WanLeanCompress", "WanLeanTokenCount", "WanLeanTruncate"]  # for the filter list
    since = stats.summarize(log, since="2026-01-31T10:30:00.000Z")
    assert since["prompts"] == 2 and since["anomalies"]["repetition"] == 0
    assert stats.summarize(log, source="prep")["prompts"] == 0


def test_empty_log(tmp_path):
    summary = stats.summarize(PromptLog(tmp_path / "log.sqlite3"), enabled=False, store_text=False)
    assert summary["prompts"] == 0 and summary["tokens"]["p50"] == 0 and summary["recent_anomalies"] == []
    assert sum(b["count"] for b in summary["tokens"]["histogram"]) == 0
    assert summary["enabled"] is False and summary["store_text"] is False
    assert "no prompts logged yet" in stats.render_text(summary)


def test_recent_anomalies_are_the_newest_ten_with_text_shortened(tmp_path):
    log = PromptLog(tmp_path / "log.sqlite3")
    long_junk = "dog " * 200
    log.add_many([make_row(PromptEntry("prep", f"{i} {long_junk}", 300, True)) for i in range(15)])
    recent = stats.summarize(log)["recent_anomalies"]
    assert len(recent) == 10 and recent[0]["text"].startswith("14 dog")
    assert len(recent[0]["text"]) == stats.RECENT_TEXT_CHARS and recent[0]["text"].endswith("…")


def test_csv_has_every_row_and_defuses_formulas(tmp_path):
    log = _filled(tmp_path)
    log.add(make_row(PromptEntry("prep", "=HYPERLINK(\"http://x\")", 9, True)))
    lines = stats.rows_csv(log).splitlines()
    assert lines[0].startswith("id,time,source,tokens") and len(lines) == 6
    assert "'=HYPERLINK" in lines[-1]
    assert len(stats.rows_csv(log, source="WanLeanTruncate").splitlines()) == 2


def test_text_rendering_marks_512(tmp_path):
    text = stats.render_text(stats.summarize(_filled(tmp_path)))
    assert "prompts: 4" in text and "p50 40" in text and "<- 512" in text and "repetition 1" in text
