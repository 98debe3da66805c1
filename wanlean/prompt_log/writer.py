"""A background writer for the prompt log, so logging costs a node call only a queue put.

A node hands over a `PromptEntry`; one daemon thread per log makes the rows (anomaly detection, hash,
script mix), writes them in batches and calls `on_logged` after each batch. The queue is bounded: when
the database is so slow that MAX_PENDING entries wait, new ones are dropped (logged once), never waited for.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable

from .row import PromptEntry, PromptRow, make_row
from .store import PromptLog

log = logging.getLogger("wanlean")

MAX_PENDING = 10_000
BATCH = 256


class BackgroundWriter:
    def __init__(self, store: PromptLog, on_logged: Callable[[list[PromptRow]], None] | None = None):
        self.store = store
        self.on_logged = on_logged
        self.store_text = True
        self._queue: queue.Queue = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._dropped_said = False
        atexit.register(self.flush, 2.0)

    def submit(self, entry: PromptEntry) -> bool:
        """Queue `entry` (with the current store_text choice); False when the queue is full."""
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait((entry, self.store_text))
            return True
        except queue.Full:
            if not self._dropped_said:
                self._dropped_said = True
                log.warning("[WanLean] prompt log: %d prompts wait to be written to %s; new ones are not logged "
                            "until it catches up (said once).", MAX_PENDING, self.store.path)
            return False

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued entry is written (or skipped); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wanlean-prompt-log", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(items)
            except Exception as exc:  # a bug must cost rows, never the thread
                log.warning("[WanLean] prompt log: %d rows not logged: %s: %s", len(items), type(exc).__name__, exc)
            finally:
                for _ in items:
                    self._queue.task_done()

    def _write(self, items) -> None:
        usual = self.store.usual_length()
        rows = [make_row(entry, store_text, usual) for entry, store_text in items]
        if self.store.add_many(rows) and self.on_logged is not None:
            try:
                self.on_logged(rows)
            except Exception as exc:
                log.debug("wanlean: prompt log listener failed: %s", exc)
