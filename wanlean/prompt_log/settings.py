"""The prompt log's settings, as the frontend stores them in the user's `comfy.settings.json`.

Ids (registered by the sidebar tab's JS): `WanLean.PromptLog.Enabled` (default true),
`WanLean.PromptLog.StoreText` (default true: the privacy switch; off keeps only the hash),
`WanLean.PromptLog.MaxRows` (default 100,000). The file is read again only when its mtime changes, so a
node call pays one `stat`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from .store import DEFAULT_MAX_ROWS

log = logging.getLogger("wanlean")

ENABLED = "WanLean.PromptLog.Enabled"
STORE_TEXT = "WanLean.PromptLog.StoreText"
MAX_ROWS = "WanLean.PromptLog.MaxRows"
MAX_ROWS_LIMIT = 10_000_000


@dataclass(frozen=True)
class LogSettings:
    enabled: bool = True
    store_text: bool = True
    max_rows: int = DEFAULT_MAX_ROWS


def from_dict(values: dict) -> LogSettings:
    """Settings from the frontend's dictionary; a missing or ill-typed value keeps its default."""
    default = LogSettings()
    enabled = values.get(ENABLED, default.enabled)
    store_text = values.get(STORE_TEXT, default.store_text)
    max_rows = values.get(MAX_ROWS, default.max_rows)
    if isinstance(max_rows, float) and max_rows.is_integer():
        max_rows = int(max_rows)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or not 1 <= max_rows <= MAX_ROWS_LIMIT:
        max_rows = default.max_rows
    return LogSettings(
        enabled=enabled if isinstance(enabled, bool) else default.enabled,
        store_text=store_text if isinstance(store_text, bool) else default.store_text,
        max_rows=max_rows,
    )


class SettingsFile:
    """`comfy.settings.json` at `path`, re-read when its mtime (or size) changes; defaults when it is
    missing or not valid JSON (said once)."""

    def __init__(self, path: str | None):
        self.path = path
        self._stamp = None
        self._settings = LogSettings()
        self._said = False

    def current(self) -> LogSettings:
        if not self.path:
            return self._settings
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return self._settings
        self._stamp = stamp
        self._settings = LogSettings() if stamp is None else self._read()
        return self._settings

    def _read(self) -> LogSettings:
        try:
            with open(self.path, encoding="utf-8") as f:
                values = json.load(f)
        except (OSError, ValueError) as exc:
            if not self._said:
                self._said = True
                log.warning("[WanLean] prompt log: cannot read %s (%s); using the default settings.", self.path, exc)
            return LogSettings()
        return from_dict(values if isinstance(values, dict) else {})
