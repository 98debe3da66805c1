"""The token route never lets long texts hold up ComfyUI's event loop: short bodies are answered at once
even while long ones wait, long ones go to one worker thread, and past MAX_PENDING they get a 503 that
says why (unit level here; the live burst is in test_hardening_live.py)."""

import asyncio
import json
import sys
import threading

import pytest


@pytest.fixture()
def routes(pack):
    return sys.modules[f"{pack.__name__}.nodes.routes"]


def body(text):
    return json.dumps({"text": text, "tokenizer": "estimate"}).encode()


def test_short_bodies_are_answered_at_once_even_when_the_worker_is_full(routes):
    admission = routes.Admission(limit=1)
    assert admission.enter()  # a long request is already in flight
    short = body("a red fox runs at dawn")
    assert len(short) <= routes.INLINE_BODY_BYTES
    status, answer = asyncio.run(routes.answer_off_the_loop(short, admission, None))  # no loop use: inline
    assert status == 200 and answer["tokens"] > 1


def test_long_bodies_past_the_limit_get_503_naming_the_reason(routes):
    admission = routes.Admission(limit=1)
    assert admission.enter()
    long = body("a red fox " * 3000)
    assert len(long) > routes.INLINE_BODY_BYTES

    async def ask():
        return await routes.answer_off_the_loop(long, admission, asyncio.get_running_loop())

    status, answer = asyncio.run(ask())
    assert status == 503 and answer["error"].startswith("busy: 1 long texts are being counted")
    assert admission.pending == 1  # a refused request takes no place


def test_long_bodies_are_counted_in_the_worker_thread_and_release_their_place(routes, monkeypatch):
    admission = routes.Admission(limit=2)
    threads = []
    real = routes.answer_tokens
    monkeypatch.setattr(routes, "answer_tokens", lambda b: threads.append(threading.current_thread().name) or real(b))
    long = body("a red fox " * 3000)

    async def ask():
        return await routes.answer_off_the_loop(long, admission, asyncio.get_running_loop())

    status, answer = asyncio.run(ask())
    assert status == 200 and answer["tokens"] > 3000
    assert threads and threads[0].startswith("wanlean-tokens") and admission.pending == 0


def test_a_failing_count_still_releases_its_place(routes, monkeypatch):
    admission = routes.Admission(limit=1)

    def boom(b):
        raise RuntimeError("boom")

    monkeypatch.setattr(routes, "answer_tokens", boom)

    async def ask():
        return await routes.answer_off_the_loop(body("x " * 10000), admission, asyncio.get_running_loop())

    with pytest.raises(RuntimeError):
        asyncio.run(ask())
    assert admission.pending == 0
