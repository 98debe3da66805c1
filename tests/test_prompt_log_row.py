"""A logged row: counts describe the prompt passed on, flags and text the prompt received."""

import hashlib
import json

from wanlean.prompt_log.anomalies import Anomaly, UsualLength
from wanlean.prompt_log.row import PromptEntry, make_row, script_mix


def test_script_mix():
    assert script_mix("a red fox") == {"latin": 1.0}
    mix = script_mix("红色的狐狸 fox")
    assert mix == {"latin": 0.375, "cjk": 0.625}
    assert script_mix("Лиса 狐") == {"cjk": 0.2, "other": 0.8}
    assert script_mix("123 !!") == {}


def test_row_fields():
    entry = PromptEntry("WanLeanCompress", "红色的狐狸 runs", 30, True, tokens_before=45)
    row = make_row(entry)
    assert json.loads(row.scripts) == {"latin": 0.444, "cjk": 0.556}
    assert row.sha256 == hashlib.sha256(entry.text.encode()).hexdigest()
    assert (row.tokens, row.tokens_before, row.tokens_after, row.over_budget, row.over_512) == (30, 45, 30, False, False)
    assert make_row(PromptEntry("WanLeanTokenCount", "a fox", 5, True)).tokens_before is None


def test_given_text_flags_are_used_and_length_flags_come_from_the_tokens_passed_on():
    given = (Anomaly("filler", "said by the node"), Anomaly("over_512", "the input was long"))
    row = make_row(PromptEntry("WanLeanTruncate", "cat cat cat cat cat cat", 500, True, anomalies=given, tokens_before=900))
    assert row.flag_list == ["filler"]  # the given text flags; the row's 500 tokens are not over 512
    usual = UsualLength(rows=100, q1=20, q3=40)
    row = make_row(PromptEntry("prep", "a fox", 900, True), usual=usual)
    assert row.flag_list == ["over_512", "unusual_length"]
