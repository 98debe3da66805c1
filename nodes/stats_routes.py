"""Routes of the token dashboard (the prompt log), added by `routes.register` like the tokens route; ComfyUI
also serves each under /api/.

GET    /wanlean/stats?since=<ISO time or seconds ago>&source=<node type or prep>
       200 → the summary (see wanlean.prompt_log.stats.summarize); 400 → {"error"} naming the parameter;
       503 → {"error"} when the log cannot be read (locked, unreadable) or is not set up.
GET    /wanlean/stats.csv  (same filters) → the rows as CSV, as a download.
DELETE /wanlean/stats      → {"cleared": n}; the dashboard asks the user first.

Queries run in a worker thread (100,000 rows take tens of milliseconds), after the background writer
has written what the nodes queued, so a prompt that just finished is counted.
"""

from __future__ import annotations

import logging

from ..wanlean.errors import WanLeanError
from ..wanlean.prompt_log import stats
from ..wanlean.prompt_log.store import PromptLogUnavailable
from . import prompt_log

log = logging.getLogger("wanlean")

STATS_ROUTE = "/wanlean/stats"
CSV_ROUTE = "/wanlean/stats.csv"
FLUSH_SECONDS = 2.0
_KNOWN = ("since", "source")


def _filters(query) -> tuple[str | None, str | None]:
    unknown = [name for name in query if name not in _KNOWN]
    if unknown:
        raise WanLeanError(f"{unknown[0]}: not a parameter of {STATS_ROUTE}; use since (ISO time or seconds ago) and source.")
    return stats.parse_since(query.get("since")), stats.check_source(query.get("source"))


def _open_log():
    target = prompt_log.current()
    if target is None:
        raise PromptLogUnavailable("the prompt log is not set up: it lives in ComfyUI's user folder, and this is not a running ComfyUI.")
    target.writer.flush(FLUSH_SECONDS)
    return target


def _answer(work) -> tuple[int, object]:
    try:
        return 200, work()
    except PromptLogUnavailable as exc:
        return 503, {"error": str(exc)}
    except WanLeanError as exc:
        return 400, {"error": str(exc)}
    except Exception as exc:  # a bug must cost one request, never the server
        log.exception("[WanLean] %s failed", STATS_ROUTE)
        return 500, {"error": f"prompt log query failed: {type(exc).__name__}: {exc}"}


def answer_stats(query) -> tuple[int, object]:
    """(HTTP status, JSON answer) for GET /wanlean/stats with `query` (a mapping of parameters)."""
    def work():
        since, source = _filters(query)
        target = _open_log()
        settings = target.settings()
        return stats.summarize(target.store, since, source, settings.enabled, settings.store_text)

    return _answer(work)


def answer_csv(query) -> tuple[int, object]:
    """(HTTP status, CSV text or a JSON error) for GET /wanlean/stats.csv."""
    def work():
        since, source = _filters(query)
        return stats.rows_csv(_open_log().store, since, source)

    return _answer(work)


def answer_clear() -> tuple[int, object]:
    """(HTTP status, {"cleared": n}) for DELETE /wanlean/stats."""
    def work():
        cleared = _open_log().store.clear()
        prompt_log.announce_cleared(cleared)
        return {"cleared": cleared}

    return _answer(work)


async def _in_thread(function, *args):
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


async def stats_handler(request):
    from aiohttp import web

    status, answer = await _in_thread(answer_stats, dict(request.query))
    return web.json_response(answer, status=status)


async def csv_handler(request):
    from aiohttp import web

    status, answer = await _in_thread(answer_csv, dict(request.query))
    if status != 200:
        return web.json_response(answer, status=status)
    return web.Response(text=answer, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="wanlean_prompt_log.csv"'})


async def clear_handler(request):
    from aiohttp import web

    status, answer = await _in_thread(answer_clear)
    return web.json_response(answer, status=status)


ROUTES = (("GET", STATS_ROUTE, stats_handler), ("GET", CSV_ROUTE, csv_handler), ("DELETE", STATS_ROUTE, clear_handler))
