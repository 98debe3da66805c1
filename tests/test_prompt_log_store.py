"""The prompt log's SQLite store: rows kept, bounded, and every fault (locked, read-only, corrupt, deleted,
no folder) costs the row, never the node, with one log line saying why; two processes lose no rows."""

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from wanlean.prompt_log import store as store_module
from wanlean.prompt_log.row import PromptEntry, make_row
from wanlean.prompt_log.store import PromptLog, PromptLogUnavailable


def row(i=0, text=None, source="WanLeanTokenCount", tokens=None):
    return make_row(PromptEntry(source, text or f"a red fox number {i} runs through snow", tokens or 10 + i, True))


def warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "wanlean" and r.levelno >= logging.WARNING]


def test_rows_are_stored_with_every_field(tmp_path):
    log = PromptLog(tmp_path / "sub" / "log.sqlite3")
    entry = PromptEntry("WanLeanTruncate", "a red fox\u200b runs", 600, False, budget=512, tokens_before=900)
    assert log.add(make_row(entry))
    (stored,) = log.rows()
    assert stored["source"] == "WanLeanTruncate" and stored["tokens"] == 600 and stored["characters"] == len(entry.text)
    assert stored["tokenizer"] == "estimate" and stored["over_budget"] == 1 and stored["over_512"] == 1
    assert stored["tokens_before"] == 900 and stored["tokens_after"] == 600
    assert stored["flags"] == "invisible,over_512" and stored["text"] == entry.text and len(stored["sha256"]) == 64
    assert stored["time"].endswith("Z") and stored["scripts"] == '{"latin":1.0}'
    mode = sqlite3.connect(log.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_text_is_not_stored_when_storing_text_is_off(tmp_path):
    log = PromptLog(tmp_path / "log.sqlite3")
    log.add(make_row(PromptEntry("prep", "a secret prompt", 5, True), store_text=False))
    (stored,) = log.rows()
    assert stored["text"] is None and stored["sha256"] and stored["characters"] == 15


def test_only_the_newest_rows_are_kept(tmp_path):
    log = PromptLog(tmp_path / "log.sqlite3", max_rows=50)
    for i in range(120):
        log.add(row(i))
    assert log.count() == 50
    assert [r["tokens"] for r in log.rows()] == [10 + i for i in range(70, 120)]
    log.max_rows = 10  # a smaller setting takes effect at the next row
    log.add_many([row(200), row(201)])
    assert [r["tokens"] for r in log.rows()][-2:] == [210, 211] and log.count() == 10


def test_a_locked_database_skips_the_row_and_says_why_once(tmp_path, caplog):
    path = tmp_path / "log.sqlite3"
    log = PromptLog(path, busy_timeout_ms=50)
    log.add(row(0))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        assert log.add(row(1)) is False
        assert log.add(row(2)) is False
    said = warnings(caplog)
    assert len(said) == 1 and "locked" in said[0] and str(path) in said[0]
    holder.execute("ROLLBACK")
    holder.close()
    assert log.add(row(3)) and log.count() == 2


def test_a_read_only_database_skips_the_row_and_says_why_once(tmp_path, caplog, monkeypatch):
    path = tmp_path / "log.sqlite3"
    PromptLog(path).add(row(0))
    os.chmod(path, 0o444)
    if os.access(path, os.W_OK):  # root ignores file modes: open the database read-only the way SQLite would
        connect = sqlite3.connect
        monkeypatch.setattr(store_module.sqlite3, "connect",
                            lambda p, **kw: connect(f"file:{p}?mode=ro", uri=True, **kw))
    log = PromptLog(path)
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        assert log.add(row(1)) is False
        assert log.add(row(2)) is False
    said = warnings(caplog)
    assert len(said) == 1 and "not logged" in said[0] and "readonly" in said[0].replace("read-only", "readonly")


def test_a_corrupt_file_is_moved_aside_and_a_new_log_started(tmp_path, caplog):
    path = tmp_path / "log.sqlite3"
    garbage = b"this is not a database, just bytes someone wrote " * 200
    path.write_bytes(garbage)
    log = PromptLog(path)
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        assert log.add(row(1))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("log.sqlite3.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage  # nothing the user had is lost
    assert log.count() == 1
    said = warnings(caplog)
    assert len(said) == 1 and "moved aside" in said[0] and aside[0].name in said[0]


def test_reading_a_corrupt_file_moves_it_aside_too(tmp_path):
    path = tmp_path / "log.sqlite3"
    path.write_bytes(b"\x00garbage" * 500)
    assert PromptLog(path).rows() == []
    assert any(p.name.startswith("log.sqlite3.corrupt-") for p in tmp_path.iterdir())


def test_a_database_deleted_mid_run_is_started_again(tmp_path, caplog):
    path = tmp_path / "log.sqlite3"
    log = PromptLog(path)
    log.add(row(0))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        assert log.add(row(1))
        assert log.add(row(2))
    assert [r["tokens"] for r in log.rows()] == [11, 12]
    said = warnings(caplog)
    assert len(said) == 1 and "deleted" in said[0]


def test_a_folder_that_cannot_be_made_skips_the_row(tmp_path, caplog):
    (tmp_path / "blocker").write_text("a file where the folder should be")
    log = PromptLog(tmp_path / "blocker" / "log.sqlite3")
    with caplog.at_level(logging.WARNING, logger="wanlean"):
        assert log.add(row(0)) is False
        assert log.add(row(1)) is False
    assert len(warnings(caplog)) == 1
    with pytest.raises(PromptLogUnavailable, match="folder"):
        log.rows()


def test_reading_a_locked_log_raises_a_clear_error(tmp_path):
    path = tmp_path / "log.sqlite3"
    writer = PromptLog(path)
    writer.add(row(0))
    writer.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = DELETE")  # a non-WAL exclusive lock blocks readers too
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(PromptLogUnavailable, match="cannot be read"):
            PromptLog(path, busy_timeout_ms=50).count()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


WRITER = """
import sys
from wanlean.prompt_log.row import PromptEntry, make_row
from wanlean.prompt_log.store import PromptLog
path, worker, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = PromptLog(path)
for i in range(rows):
    assert log.add(make_row(PromptEntry("WanLeanTokenCount", f"worker {worker} prompt {i}", 10, True)))
"""


def test_two_processes_writing_one_database_lose_no_rows(tmp_path):
    path = str(tmp_path / "log.sqlite3")
    PromptLog(path).count()  # create it (WAL) first, as a running ComfyUI would have
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    workers = [subprocess.Popen([sys.executable, "-c", WRITER, path, str(w), "150"], env=env) for w in range(2)]
    assert [w.wait(120) for w in workers] == [0, 0]
    texts = {r["text"] for r in PromptLog(path).rows()}
    assert len(texts) == 300 and {f"worker {w} prompt {i}" for w in range(2) for i in range(150)} == texts


def test_usual_length_comes_from_the_newest_rows(tmp_path):
    log = PromptLog(tmp_path / "log.sqlite3")
    assert log.usual_length() is None
    log.add_many([row(i, tokens=t) for i, t in enumerate(range(1, 101))])
    log._usual_countdown = 0
    usual = log.usual_length()
    assert usual.rows == 100 and usual.q1 == 26 and usual.q3 == 75


def test_clear_removes_every_row(tmp_path):
    log = PromptLog(tmp_path / "log.sqlite3")
    log.add_many([row(i) for i in range(7)])
    assert log.clear() == 7 and log.count() == 0 and log.clear() == 0
