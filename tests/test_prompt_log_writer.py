"""The background writer: entries queued by nodes are written in batches, the listener hears of them,
flush waits for them, and a full queue drops entries instead of blocking a node."""

import threading

from wanlean.prompt_log import writer as writer_module
from wanlean.prompt_log.row import PromptEntry
from wanlean.prompt_log.store import PromptLog
from wanlean.prompt_log.writer import BackgroundWriter


def entry(i):
    return PromptEntry("WanLeanTokenCount", f"a heron number {i} stands in a misty river", 12, True)


def test_entries_are_written_and_announced(tmp_path):
    heard = []
    w = BackgroundWriter(PromptLog(tmp_path / "log.sqlite3"), on_logged=heard.append)
    for i in range(300):
        assert w.submit(entry(i))
    assert w.flush(10)
    assert w.store.count() == 300
    assert sum(len(rows) for rows in heard) == 300 and all(len(rows) <= writer_module.BATCH for rows in heard)


def test_store_text_off_is_applied_to_entries_queued_after(tmp_path):
    w = BackgroundWriter(PromptLog(tmp_path / "log.sqlite3"))
    w.submit(entry(0))
    w.store_text = False
    w.submit(entry(1))
    w.flush(10)
    assert [r["text"] is None for r in w.store.rows()] == [False, True]


def test_a_full_queue_drops_entries_without_waiting(tmp_path, monkeypatch, caplog):
    gate = threading.Event()
    store = PromptLog(tmp_path / "log.sqlite3")
    real_add_many = store.add_many
    monkeypatch.setattr(store, "add_many", lambda rows: gate.wait(10) and real_add_many(rows))
    monkeypatch.setattr(writer_module, "MAX_PENDING", 5)
    w = BackgroundWriter(store)
    accepted = [w.submit(entry(i)) for i in range(40)]
    assert accepted.count(False) > 0  # dropped, not waited for
    assert sum("not logged" in r.getMessage() for r in caplog.records) == 1
    gate.set()
    assert w.flush(10)
    assert store.count() == accepted.count(True)


def test_a_failing_listener_costs_nothing(tmp_path):
    def broken(rows):
        raise RuntimeError("listener bug")

    w = BackgroundWriter(PromptLog(tmp_path / "log.sqlite3"), on_logged=broken)
    w.submit(entry(0))
    w.submit(entry(1))
    assert w.flush(10) and w.store.count() == 2
