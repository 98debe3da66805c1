"""Server routes for the editor. The package's `__init__` adds them to ComfyUI's PromptServer (no node
module registers anything on import); ComfyUI also serves each under /api/. Outside ComfyUI `register` does nothing and `answer_tokens`
can be called directly.

The token dashboard's routes (/wanlean/stats, /wanlean/stats.csv) are in `stats_routes`.

POST /wanlean/tokens  {"text": str, "tokenizer": name from models/text_encoders or "estimate",
                       "negative": str (optional), "budget": int (optional, default 512)}
  200 → the counts (see wanlean.token_report.TokenReport.as_dict); 400 → {"error": message} for bad input or an
  unusable file; 413 → {"error": ...} for a body over 1 MB; 503 → {"error": ...} when too many long texts
  are already waiting (the editor simply asks again on the next keystroke).

The route shares ComfyUI's event loop, so a burst of long texts must not hold it up: a body up to
INLINE_BODY_BYTES (any real prompt) is counted at once, on the loop, in well under a millisecond; a longer
one goes to one worker thread, at most MAX_PENDING at a time, and the rest are turned away with 503.
"""

from __future__ import annotations

import json
import logging

from ..wanlean import token_report, tokens
from ..wanlean.errors import WanLeanError
from . import _comfy, stats_routes
from ._shared import resolve_tokenizer

log = logging.getLogger("wanlean")

TOKENS_ROUTE = "/wanlean/tokens"
MAX_BODY_BYTES = 1024 * 1024
MAX_BUDGET = 100000
INLINE_BODY_BYTES = 16 * 1024
MAX_PENDING = 4
_registered = False


class Admission:
    """At most `limit` long requests queued or running; the event loop is the only caller (no lock)."""

    def __init__(self, limit: int = MAX_PENDING):
        self.limit = limit
        self.pending = 0
        self._executor = None

    def enter(self) -> bool:
        if self.pending >= self.limit:
            return False
        self.pending += 1
        return True

    def leave(self) -> None:
        self.pending -= 1

    def executor(self):
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wanlean-tokens")
        return self._executor


_long_requests = Admission()


def answer_tokens(body: bytes) -> tuple[int, dict]:
    """(HTTP status, JSON answer) for a /wanlean/tokens request body. Never raises."""
    try:
        return 200, _count(_parse(body))
    except WanLeanError as exc:
        return 400, {"error": str(exc)}
    except Exception as exc:  # a bug must cost one request, never the server
        log.exception("[WanLean] %s failed", TOKENS_ROUTE)
        return 500, {"error": f"token count failed: {type(exc).__name__}: {exc}"}


def _parse(body: bytes) -> dict:
    try:
        request = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WanLeanError(f"the request body must be JSON in UTF-8 ({exc}).") from None
    except RecursionError:  # e.g. 50,000 nested brackets
        raise WanLeanError("the request body is nested too deeply to be read; send a flat JSON object.") from None
    if not isinstance(request, dict):
        raise WanLeanError('the request body must be a JSON object: {"text": ..., "tokenizer": ...}.')
    if not isinstance(request.get("text"), str):
        raise WanLeanError('text is required and must be a string: {"text": "a red fox", "tokenizer": "estimate"}.')
    tokenizer = request.get("tokenizer", tokens.ESTIMATE)
    if not isinstance(tokenizer, str):
        raise WanLeanError("tokenizer must be a file name from models/text_encoders or 'estimate'.")
    negative = request.get("negative")
    if negative is not None and not isinstance(negative, str):
        raise WanLeanError("negative must be a string when given.")
    budget = request.get("budget", tokens.WAN_TEXT_LEN)
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_BUDGET:
        raise WanLeanError(f"budget must be a whole number from 1 to {MAX_BUDGET} (Wan keeps 512); got {budget!r}.")
    return {"text": request["text"], "tokenizer": tokenizer, "negative": negative, "budget": budget}


def _count(request: dict) -> dict:
    tokenizer = resolve_tokenizer(request["tokenizer"])
    report = token_report.analyze(tokenizer, request["text"], request["negative"], request["budget"])
    return report.as_dict()


async def _read_body(request) -> bytes | None:
    """The body, or None when it is over MAX_BODY_BYTES (checked before and while reading)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)


def register() -> bool:
    """Add the routes to ComfyUI's server once; False outside ComfyUI."""
    global _registered
    if not _registered:
        _registered = _comfy.add_route("POST", TOKENS_ROUTE, _tokens_handler)
        if _registered:  # the token dashboard's routes (GET/DELETE /wanlean/stats, GET /wanlean/stats.csv)
            for method, path, handler in stats_routes.ROUTES:
                _comfy.add_route(method, path, handler)
    return _registered


async def _tokens_handler(request):
    import asyncio

    from aiohttp import web  # ComfyUI's own dependency; only needed inside ComfyUI

    body = await _read_body(request)
    if body is None:
        return web.json_response(
            {"error": f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB; send a shorter text."},
            status=413,
        )
    status, answer = await answer_off_the_loop(body, _long_requests, asyncio.get_running_loop())
    return web.json_response(answer, status=status)


async def answer_off_the_loop(body: bytes, admission: Admission, loop) -> tuple[int, dict]:
    """A short body is answered at once; a long one in the worker thread, or 503 when it is full."""
    if len(body) <= INLINE_BODY_BYTES:
        return answer_tokens(body)
    if not admission.enter():
        return 503, {
            "error": f"busy: {admission.pending} long texts are being counted; try again in a moment "
            f"(texts under {INLINE_BODY_BYTES // 1024} KB are always answered at once)."
        }
    try:
        return await loop.run_in_executor(admission.executor(), answer_tokens, body)
    finally:
        admission.leave()
