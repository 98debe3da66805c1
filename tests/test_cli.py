"""The `wanlean` command: `wanlean prep FILE` on the repository's sample and on bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wanlean import cli
from wanlean.prompt import prep

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "prompts.txt"


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_prep_on_the_sample(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert cli.main(["prep", str(SAMPLE), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    prompts = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = _rows(out)
    assert len(rows) == len(prompts) >= 10
    assert [r["prompt"] for r in rows] == prompts
    for row in rows:
        assert row["tokens_after"] <= 512 and row["result"]
        assert row["compress"]["words_added"] == []
        assert row["compress"]["protected_kept"] == row["compress"]["protected_total"]
        assert row["protected_kept"] == sum(s in row["result"] for s in _spans(row)) <= row["protected_total"]
        assert row["protected_kept"] == row["protected_total"] or row["truncate"]["truncated"]
        assert {"tokens_before", "ratio", "changed", "truncate", "normalized", "line"} <= set(row)
    assert any(r["over_budget_before"] for r in rows), "the sample should show one prompt over 512 tokens"
    assert any(r["tokens_after"] < r["tokens_before"] for r in rows)
    assert f"wanlean prep: {len(rows)} prompts from {SAMPLE} -> {out}" in summary
    assert "tokens before: min" in summary and "over 512 tokens: 1 before, 0 after" in summary
    assert "estimate" in summary and "words added: 0" in summary


def _spans(row):
    from wanlean.prompt import protect

    return [span.text for span in protect.find(row["normalized"])[0]]


def test_protected_spans_are_counted_after_truncation(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert cli.main(["prep", str(SAMPLE), "--out", str(out), "--max-tokens", "64"]) == 0
    summary = capsys.readouterr().out
    rows = _rows(out)
    cut = [r for r in rows if r["truncate"]["truncated"]]
    assert cut, "with 64 tokens some prompts are cut"
    kept = sum(r["protected_kept"] for r in rows)
    total = sum(r["protected_total"] for r in rows)
    for row in rows:
        assert row["protected_kept"] == sum(s in row["result"] for s in _spans(row))
    assert kept < total  # the cut lost spans that compression kept, and the summary says so
    assert f"protected spans kept (after truncation): {kept}/{total}" in summary


def test_default_output_sits_beside_the_input(tmp_path, capsys):
    source = tmp_path / "mine.txt"
    source.write_text("a cat, very very fluffy, sits on a mat\n\n一只非常可爱的小猫\n", encoding="utf-8")
    assert cli.main(["prep", str(source), "--target-ratio", "1"]) == 0
    rows = _rows(tmp_path / "mine.prepped.jsonl")
    assert [r["line"] for r in rows] == [1, 3]  # blank lines skipped, numbers are the file's
    assert rows[0]["result"] == rows[0]["prompt"] and not rows[0]["changed"]
    assert "-> " + str(tmp_path / "mine.prepped.jsonl") in capsys.readouterr().out


def test_jsonl_input_keeps_its_fields_and_exact_counts(tmp_path, capsys, spiece_bytes):
    from wltest.tiny import write_text_encoder_file

    encoder = write_text_encoder_file(tmp_path / "umt5_tiny.safetensors", spiece_bytes)
    source = tmp_path / "batch.jsonl"
    source.write_text(
        json.dumps({"id": 7, "prompt": "Please show a red fox that is really very fast, running in the snow at dawn"}) + "\n"
        + json.dumps({"id": 8, "prompt": "镜头缓慢推进，柔光，不要出现人物"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    assert cli.main(["prep", str(source), "--text-encoder", str(encoder), "--keep", "snow", "--out", "-"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert [r["id"] for r in rows] == [7, 8]
    assert all(r["tokens_after"] < r["tokens_before"] for r in rows[:1])
    assert "exact (umT5 sentencepiece from umt5_tiny.safetensors)" in captured.err
    assert "snow" in rows[0]["result"] and "不要出现人物" in rows[1]["result"]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("", "has no prompts"),
        ("\n  \n", "has no prompts"),
        ('{"prompt": "ok"}\n{"prompt": 3}\n', 'line 2 of .* has no "prompt" string'),
        ('{"prompt": "ok"}\n{broken\n', "line 2 of .* is not valid JSON"),
    ],
)
def test_bad_files_get_clear_errors(tmp_path, capsys, content, message):
    path = tmp_path / "prompts.txt"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert cli.main(["prep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wanlean prep: error: FILE:")
    import re

    assert re.search(message, err), err


def test_bad_options_get_clear_errors(capsys):
    assert cli.main(["prep", str(SAMPLE), "--target-ratio", "2"]) == 2
    assert "target_ratio must be between 0.3 and 1.0" in capsys.readouterr().err
    assert cli.main(["prep", str(SAMPLE), "--max-tokens", "1"]) == 2
    assert "max_tokens must be a whole number of at least 2" in capsys.readouterr().err
    assert cli.main(["prep", str(SAMPLE), "--out", str(SAMPLE)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert cli.main([]) == 2


def test_normalize_changes_no_word():
    text = "  a\u200b cat ,, sits\t\ton  a mat ; 小猫，，很可爱  "
    assert prep.normalize(text) == "a cat, sits on a mat; 小猫，很可爱"


def test_python_dash_m_runs_the_command(tmp_path):
    out = tmp_path / "o.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "wanlean", "prep", str(SAMPLE), "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "wanlean prep:" in done.stdout and len(_rows(out)) >= 10


def test_console_script_when_installed(tmp_path):
    script = shutil.which("wanlean") or (Path(sys.executable).parent / "wanlean")
    if not Path(script).exists():
        pytest.skip("the wanlean console script is not installed in this Python (pip install -e .)")
    done = subprocess.run([str(script), "prep", str(SAMPLE), "--out", str(tmp_path / "o.jsonl")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "changed:" in done.stdout


@pytest.mark.parametrize("route", ["double-slash", "dot", "symlink", "hardlink"])
def test_output_that_is_the_input_by_any_route_is_refused_and_the_input_kept(tmp_path, capsys, route):
    source = tmp_path / "same.txt"
    source.write_text("a red fox runs at dawn\n")
    before = source.read_bytes()
    if route == "double-slash":
        out = "/" + str(source)
    elif route == "dot":
        out = str(tmp_path / "." / "same.txt")
    else:
        link = tmp_path / "link.txt"
        (link.symlink_to if route == "symlink" else link.hardlink_to)(source)
        out = str(link)
    assert cli.main(["prep", str(source), "--out", out]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_output_is_written_atomically(tmp_path, monkeypatch):
    source = tmp_path / "prompts.txt"
    source.write_text("a red fox runs at dawn\n")
    out = tmp_path / "out.jsonl"
    out.write_text("old results\n")
    real_replace = os.replace

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    assert cli.main(["prep", str(source), "--out", str(out)]) == 2
    assert out.read_text() == "old results\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "prompts.txt"]
    monkeypatch.setattr(os, "replace", real_replace)
    assert cli.main(["prep", str(source), "--out", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["prompt"] == "a red fox runs at dawn"


def test_prep_log_then_stats(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox runs through snow at dawn\nplease please very very really a cat cat cat cat cat\n"
                       "a woman\u200b walks along the shore\n", encoding="utf-8")
    db = tmp_path / "log" / "prompts.sqlite3"
    assert cli.main(["prep", str(prompts), "--log", str(db)]) == 0
    assert f"prompt log: 3 prompts added to {db}" in capsys.readouterr().out
    assert cli.main(["stats", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "prompts: 3" in out and "<- 512" in out and "filler 1" in out and "invisible 1" in out
    assert cli.main(["stats", "--db", str(db), "--source", "WanLeanSampler"]) == 0
    assert "no prompts logged for these filters" in capsys.readouterr().out


def test_prep_logs_nothing_without_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\n", encoding="utf-8")
    assert cli.main(["prep", str(prompts)]) == 0
    assert "prompt log" not in capsys.readouterr().out and not (tmp_path / ".wanlean").exists()


@pytest.mark.parametrize("args, message", [
    (["--since", "yesterday"], "since: "),
    (["--source", "a b"], "source: "),
])
def test_stats_bad_options(tmp_path, capsys, args, message):
    from wanlean.prompt_log.store import PromptLog

    db = tmp_path / "log.sqlite3"
    PromptLog(db).count()
    assert cli.main(["stats", "--db", str(db), *args]) == 2
    assert message in capsys.readouterr().err


def test_stats_of_a_missing_log(tmp_path, capsys):
    assert cli.main(["stats", "--db", str(tmp_path / "none.sqlite3")]) == 2
    assert "does not exist" in capsys.readouterr().err
