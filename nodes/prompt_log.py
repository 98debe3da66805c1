"""The prompt log in ComfyUI: where it lives, its settings, and the call the prompt nodes make.

The database is `<ComfyUI user folder>/wanlean/prompt_log.sqlite3`; the settings are read from
`<user folder>/default/comfy.settings.json` (what the frontend saves; see wanlean.prompt_log.settings).
A node's call costs a settings `stat` and a queue put; the rows are made and written by a background
thread, which then sends the websocket event `wanlean.stats` so an open dashboard refreshes.
Outside a running ComfyUI nothing is logged unless `use()` names a database (tests, benchmarks).
"""

from __future__ import annotations

import logging
import os
import threading

from ..wanlean.prompt_log.row import PromptEntry, PromptRow
from ..wanlean.prompt_log.settings import LogSettings, SettingsFile
from ..wanlean.prompt_log.store import PromptLog
from ..wanlean.prompt_log.writer import BackgroundWriter
from . import _comfy

log = logging.getLogger("wanlean")

EVENT = "wanlean.stats"
DB_SUBPATH = os.path.join("wanlean", "prompt_log.sqlite3")
SETTINGS_SUBPATH = os.path.join("default", "comfy.settings.json")


class _Log:
    def __init__(self, db_path: str, settings_path: str | None):
        self.store = PromptLog(db_path)
        self.writer = BackgroundWriter(self.store, on_logged=_announce)
        self.settings_file = SettingsFile(settings_path)

    def settings(self) -> LogSettings:
        settings = self.settings_file.current()
        self.writer.store_text = settings.store_text
        self.store.max_rows = settings.max_rows
        return settings


_lock = threading.Lock()
_current: _Log | None = None
_looked = False
_failed_said = False


def use(db_path: str | None, settings_path: str | None = None) -> None:
    """Log to `db_path` (None: back to ComfyUI's user folder, looked up again)."""
    global _current, _looked
    with _lock:
        _current = _Log(db_path, settings_path) if db_path else None
        _looked = db_path is not None


def current() -> _Log | None:
    """The log this process writes to, or None outside ComfyUI."""
    global _current, _looked
    if not _looked:
        with _lock:
            if not _looked:
                user = _comfy.user_directory()
                if user is not None:
                    _current = _Log(os.path.join(user, DB_SUBPATH), os.path.join(user, SETTINGS_SUBPATH))
                _looked = user is not None  # outside ComfyUI, look again next time (the server may start later)
    return _current


def log_prompt(entry: PromptEntry) -> None:
    """Queue one prompt for the log. Never raises: logging must not fail a node."""
    global _failed_said
    if not entry.text.strip():
        return
    try:
        target = current()
        if target is not None and target.settings().enabled:
            target.writer.submit(entry)
    except Exception as exc:
        if not _failed_said:
            _failed_said = True
            log.warning("[WanLean] prompt log: a prompt was not logged: %s: %s (said once)", type(exc).__name__, exc)


def _announce(rows: list[PromptRow]) -> None:
    _comfy.send_event(EVENT, {"logged": len(rows), "sources": sorted({row.source for row in rows}),
                              "flags": sorted({f for row in rows for f in row.flag_list})})


def announce_cleared(cleared: int) -> None:
    _comfy.send_event(EVENT, {"cleared": cleared})
