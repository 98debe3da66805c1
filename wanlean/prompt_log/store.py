"""The prompt log's SQLite database: one row per prompt, the newest `max_rows` kept.

Standard library `sqlite3` in WAL mode with a busy timeout, so several ComfyUI processes (and
`wanlean prep`) can write one file without losing rows. One long-lived connection per thread.

Writing never raises: a locked, read-only, missing or corrupt database costs the row, and the `wanlean`
logger says why once per reason. A corrupt file is moved aside (`<name>.corrupt-<time>`) and a new one is
started; a file deleted while open is started again. Reading (the routes, `wanlean stats`) raises
`PromptLogUnavailable` with the reason instead, except for a corrupt file, which is moved aside the same way.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import astuple

from ..errors import WanLeanError
from .anomalies import UsualLength
from .row import COLUMNS, PromptRow

log = logging.getLogger("wanlean")

DEFAULT_MAX_ROWS = 100_000
BUSY_TIMEOUT_MS = 5000
USUAL_REFRESH_ROWS = 200  # the usual length is read again after this many rows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    source TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    characters INTEGER NOT NULL,
    scripts TEXT NOT NULL,
    tokenizer TEXT NOT NULL,
    budget INTEGER NOT NULL,
    over_budget INTEGER NOT NULL,
    over_512 INTEGER NOT NULL,
    tokens_before INTEGER,
    tokens_after INTEGER,
    flags TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    text TEXT
);
-- The stats read only these columns, grouped by tokens: a covering index in token order gives them in one
-- scan, without sorting and without reading the rows' text (100,000 rows in tens of milliseconds).
CREATE INDEX IF NOT EXISTS prompts_stats
    ON prompts(tokens, over_budget, over_512, tokens_before, tokens_after, time, source);
CREATE INDEX IF NOT EXISTS prompts_source ON prompts(source);
CREATE INDEX IF NOT EXISTS prompts_flagged ON prompts(id) WHERE flags != '';
"""
_INSERT = f"INSERT INTO prompts ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


class PromptLogUnavailable(WanLeanError):
    """The log cannot be read right now (locked, unreadable, no such folder); the message says why."""


class PromptLog:
    """The database at `path` (created with its folder when missing)."""

    def __init__(self, path: str | os.PathLike, max_rows: int = DEFAULT_MAX_ROWS, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.path = os.fspath(path)
        self.max_rows = max_rows
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._said: set[str] = set()
        self._usual: UsualLength | None = None
        self._usual_countdown = 0

    # --- connections -------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection; a new one when the file was deleted or replaced since it was opened."""
        held = getattr(self._local, "connection", None)
        if held is not None:
            connection, identity = held
            if _identity(self.path) == identity:
                return connection
            self._close_local()
            self._say("deleted", f"{self.path} was deleted or replaced while open; a new prompt log was started there.")
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None,
                                     check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across a crash of the process
            connection.executescript(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        self._local.connection = (connection, _identity(self.path))
        return connection

    def _close_local(self) -> None:
        held = getattr(self._local, "connection", None)
        self._local.connection = None
        if held is not None:
            try:
                held[0].close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        self._close_local()

    def _say(self, reason: str, message: str) -> None:
        if reason not in self._said:
            self._said.add(reason)
            log.warning("[WanLean] prompt log: %s (said once)", message)

    def _move_aside(self, exc: Exception) -> None:
        self._close_local()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = f"{self.path}.corrupt-{stamp}"
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, aside + suffix)
        except OSError as move_error:
            self._say("corrupt-stuck", f"{self.path} is not a usable database ({exc}) and could not be moved aside ({move_error}).")
            return
        self._say(f"corrupt:{aside}", f"{self.path} was not a usable database ({exc}); moved aside to {aside}, a new log was started.")

    # --- writing -----------------------------------------------------------------------------------
    def add(self, row: PromptRow) -> bool:
        return self.add_many([row]) == 1

    def add_many(self, rows: list[PromptRow]) -> int:
        """Store `rows` in one transaction and drop the oldest beyond `max_rows`; the number stored (0 when
        the database could not take them: the reason is logged once). Never raises."""
        if not rows:
            return 0
        for attempt in (1, 2):
            try:
                self._insert(rows)
                self._usual_countdown -= len(rows)
                return len(rows)
            except sqlite3.OperationalError as exc:  # locked, read-only, cannot open: skip these rows
                self._close_local()
                self._say(f"skip:{_kind(exc)}", f"{len(rows)} row(s) not logged: {exc} ({self.path}). Later rows are tried again.")
                return 0
            except sqlite3.DatabaseError as exc:  # not a database, malformed: move aside, try once more
                if attempt == 2:
                    self._say("corrupt-again", f"rows not logged: {exc} ({self.path}).")
                    return 0
                self._move_aside(exc)
            except OSError as exc:  # the folder cannot be made
                self._say(f"os:{exc.errno}", f"rows not logged: cannot create {os.path.dirname(self.path)} ({exc.strerror}).")
                return 0
            except Exception as exc:  # never fail a node because of the log
                self._close_local()
                self._say(f"error:{type(exc).__name__}", f"rows not logged: {type(exc).__name__}: {exc}")
                return 0
        return 0

    def _insert(self, rows: list[PromptRow]) -> None:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            cursor = connection.executemany(_INSERT, [astuple(row) for row in rows])
            del cursor
            if self.max_rows and self.max_rows > 0:
                connection.execute("DELETE FROM prompts WHERE id <= (SELECT max(id) FROM prompts) - ?", (int(self.max_rows),))
            connection.execute("COMMIT")
        except BaseException:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def clear(self) -> int:
        """Delete every row; how many there were."""
        def run(connection):
            connection.execute("BEGIN IMMEDIATE")
            count = connection.execute("SELECT count(*) FROM prompts").fetchone()[0]
            connection.execute("DELETE FROM prompts")
            connection.execute("COMMIT")
            return count

        self._usual, self._usual_countdown = None, 0
        return self._read(run)

    # --- reading -----------------------------------------------------------------------------------
    def _read(self, query):
        """Run `query(connection)`; a corrupt file is moved aside (and the query runs on the new, empty
        log); other failures raise PromptLogUnavailable naming the reason."""
        for attempt in (1, 2):
            try:
                return query(self._connection())
            except sqlite3.OperationalError as exc:
                self._close_local()
                raise PromptLogUnavailable(f"the prompt log {self.path} cannot be read: {exc}.") from None
            except sqlite3.DatabaseError as exc:
                if attempt == 2:
                    raise PromptLogUnavailable(f"the prompt log {self.path} cannot be read: {exc}.") from None
                self._move_aside(exc)
            except OSError as exc:
                raise PromptLogUnavailable(f"the prompt log folder cannot be made: {exc.strerror}.") from None
        raise AssertionError("unreachable")

    def count(self) -> int:
        return self._read(lambda c: c.execute("SELECT count(*) FROM prompts").fetchone()[0])

    def select(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        """Rows of a read-only query (the stats module builds them)."""
        return self._read(lambda c: c.execute(sql, parameters).fetchall())

    def rows(self, since: str | None = None, source: str | None = None) -> list[dict]:
        """Stored rows, oldest first, as dicts (id included), filtered like the stats."""
        where, parameters = where_clause(since, source)
        columns = ("id",) + COLUMNS
        found = self.select(f"SELECT {', '.join(columns)} FROM prompts{where} ORDER BY id", parameters)
        return [dict(zip(columns, values)) for values in found]

    def usual_length(self) -> UsualLength | None:
        """The log's usual prompt length (quartiles of the newest rows), re-read every USUAL_REFRESH_ROWS
        rows; None when it cannot be read. For the `unusual_length` flag."""
        if self._usual is not None and self._usual_countdown > 0:
            return self._usual
        try:
            recent = [t for (t,) in self.select("SELECT tokens FROM prompts ORDER BY id DESC LIMIT 5000")]
        except PromptLogUnavailable:
            return None
        recent.sort()
        self._usual_countdown = USUAL_REFRESH_ROWS
        self._usual = UsualLength(len(recent), _quantile(recent, 0.25), _quantile(recent, 0.75)) if recent else None
        return self._usual


def where_clause(since: str | None, source: str | None) -> tuple[str, tuple]:
    """SQL `WHERE` for the filters (`since`: ISO UTC as rows store it; `source`: exact)."""
    terms, parameters = [], []
    if since:
        terms.append("time >= ?")
        parameters.append(since)
    if source:
        terms.append("source = ?")
        parameters.append(source)
    return (" WHERE " + " AND ".join(terms) if terms else ""), tuple(parameters)


def _quantile(ordered: list[int], q: float) -> float:
    return float(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))])


def _identity(path: str):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _kind(exc: Exception) -> str:
    text = str(exc).lower()
    for kind in ("locked", "readonly", "read-only", "unable to open", "disk i/o", "full"):
        if kind in text:
            return kind
    return text[:60]
