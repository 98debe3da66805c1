"""The prompt log's settings come from the frontend's comfy.settings.json, re-read when it changes."""

import json
import os

import pytest

from wanlean.prompt_log.settings import (
    ENABLED,
    MAX_ROWS,
    STORE_TEXT,
    LogSettings,
    SettingsFile,
    from_dict,
)


def test_defaults():
    assert from_dict({}) == LogSettings(enabled=True, store_text=True, max_rows=100_000)
    assert SettingsFile(None).current() == LogSettings()


@pytest.mark.parametrize("values, expected", [
    ({ENABLED: False}, LogSettings(enabled=False)),
    ({STORE_TEXT: False, MAX_ROWS: 500}, LogSettings(store_text=False, max_rows=500)),
    ({MAX_ROWS: 500.0}, LogSettings(max_rows=500)),
    ({ENABLED: "no", STORE_TEXT: 0, MAX_ROWS: -3}, LogSettings()),  # ill-typed values keep the defaults
    ({MAX_ROWS: True}, LogSettings()),
])
def test_values(values, expected):
    assert from_dict(values) == expected


def test_the_file_is_read_again_only_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "comfy.settings.json"
    settings = SettingsFile(str(path))
    assert settings.current() == LogSettings()  # no file yet
    path.write_text(json.dumps({ENABLED: False, "Comfy.Other": 1}))
    assert settings.current().enabled is False
    reads = []
    real_read = settings._read
    monkeypatch.setattr(settings, "_read", lambda: reads.append(1) or real_read())
    settings.current()
    assert reads == []  # same mtime: not read
    path.write_text(json.dumps({ENABLED: True, STORE_TEXT: False}))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    assert settings.current() == LogSettings(store_text=False) and reads == [1]


def test_a_broken_file_keeps_the_defaults_and_says_so_once(tmp_path, caplog):
    path = tmp_path / "comfy.settings.json"
    path.write_text("{not json")
    settings = SettingsFile(str(path))
    assert settings.current() == LogSettings()
    path.write_text("{still not json}")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10_000_000))
    assert settings.current() == LogSettings()
    assert sum("cannot read" in r.getMessage() for r in caplog.records) == 1
