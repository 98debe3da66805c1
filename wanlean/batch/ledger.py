"""The batch ledger: one JSON object per line, appended and fsynced for every change of a job's state.

A job is identified by its prompt's line number and the hash of the workflow filled for it. Reading
replays the events: the last one of a job is its state. Nothing is ever rewritten, so a crash (or
Ctrl-C) mid-write leaves at most a torn last line, which reading skips and the next append closes.
"""

from __future__ import annotations

import json
import os
import time

from ..errors import WanLeanError

try:
    import fcntl
except ImportError:  # Windows: no advisory lock; one run per ledger is then up to the user
    fcntl = None

QUEUED, DONE, FAILED, MOVED = "queued", "done", "failed", "moved"


def default_path(prompts_path: str) -> str:
    """PROMPTS.batch.jsonl beside the prompts file, its extension replaced: prompts.txt -> prompts.batch.jsonl."""
    return os.path.splitext(prompts_path)[0] + ".batch.jsonl"


class Ledger:
    """An open ledger file. `events` holds what it contained when opened (torn lines skipped)."""

    def __init__(self, path: str):
        self.path = path
        self.skipped_lines: list[int] = []
        self.events = self._read()
        try:
            self._file = open(path, "ab")
        except OSError as exc:
            raise WanLeanError(f"--ledger: cannot write '{path}' ({exc.strerror}). Give a writable path with --ledger.") from None
        if fcntl is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._file.close()
                raise WanLeanError(f"--ledger: '{path}' is in use by another wanlean batch run. Wait for it, or give another --ledger.") from None
        self._needs_newline = self._ends_torn()

    def _read(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        events = []
        try:
            with open(self.path, "rb") as f:
                lines = f.read().split(b"\n")
        except OSError as exc:
            raise WanLeanError(f"--ledger: cannot read '{self.path}' ({exc.strerror}).") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:  # a write cut short by a crash
                self.skipped_lines.append(number)
                continue
            if isinstance(event, dict) and isinstance(event.get("job"), str) and "event" in event:
                events.append(event)
            else:
                self.skipped_lines.append(number)
        return events

    def _ends_torn(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return False
                f.seek(-1, os.SEEK_END)
                return f.read(1) != b"\n"
        except OSError:
            return False

    def append(self, event: str, job: str, **fields) -> dict:
        """Write one event and fsync it before returning: once this returns, the change survives a crash."""
        record = {"event": event, "job": job, "time": round(time.time(), 3), **fields}
        data = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        if self._needs_newline:
            data = b"\n" + data
            self._needs_newline = False
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        return record

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def last_events(self) -> dict[str, dict]:
        """Each job's last event, as read when the ledger was opened."""
        last = {}
        for event in self.events:
            last[event["job"]] = event
        return last
