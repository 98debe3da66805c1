"""Summary statistics of the prompt log: what `GET /wanlean/stats` answers and `wanlean stats` prints.

The counts are summed by SQLite; only the token column comes to Python (sorted there for the
percentiles and the histogram), so 100,000 rows are summarised in tens of milliseconds.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from datetime import datetime, timedelta, timezone

from ..errors import WanLeanError
from ..tokens import WAN_TEXT_LEN
from .anomalies import FLAGS
from .row import COLUMNS, iso
from .store import PromptLog, where_clause

RECENT_ANOMALIES = 10
RECENT_TEXT_CHARS = 160
MAX_BINS = 32
# Bin widths: powers of two up to 512 (so 512 is always a bin edge), then multiples of 512.
_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
_SOURCE = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


def parse_since(value: str | None, now: datetime | None = None) -> str | None:
    """`since` as rows store time (ISO UTC): a number of seconds ago, or an ISO time (no zone = UTC)."""
    if value is None or value == "":
        return None
    now = now or datetime.now(timezone.utc)
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not seconds >= 0 or seconds > 1e10:
            raise WanLeanError(f"since: {value!r} is not a number of seconds ago (0 or more), nor an ISO time like 2026-01-31T12:00:00Z.")
        return iso(now - timedelta(seconds=seconds))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise WanLeanError(f"since: {value!r} is neither a number of seconds ago (e.g. 3600) nor an ISO time (e.g. 2026-01-31T12:00:00Z).") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return iso(moment)


def check_source(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _SOURCE.fullmatch(value):
        raise WanLeanError(f"source: {value[:40]!r} is not a source name; use a node type such as WanLeanTokenCount, or prep.")
    return value


class Counts:
    """Token counts as (value, how many prompts) pairs sorted by value: percentiles and bins without
    holding one number per prompt."""

    def __init__(self, pairs: list[tuple[int, int]]):
        self.pairs = sorted(pairs)
        self.total = sum(n for _, n in self.pairs)
        self.sum = sum(value * n for value, n in self.pairs)
        self.max = self.pairs[-1][0] if self.pairs else 0

    def percentile(self, q: float) -> int:
        """Nearest-rank percentile (0 for none)."""
        if not self.total:
            return 0
        rank, seen = max(1, math.ceil(q * self.total)), 0
        for value, n in self.pairs:
            seen += n
            if seen >= rank:
                return value
        return self.max

    def histogram(self) -> list[dict]:
        """Bins `{"lo", "hi", "count"}` (lo inclusive, hi exclusive) from 0 past the largest count and past
        512, so the bin holding 512 is always there (from 512 on, while bins are at most 512 wide); the counts
        add up to the number of prompts."""
        top = max(WAN_TEXT_LEN, self.max) + 1
        width = next((w for w in _WIDTHS if -(-max(top, WAN_TEXT_LEN + w) // w) <= MAX_BINS), _WIDTHS[-1])
        bins = -(-max(top, WAN_TEXT_LEN + width) // width)
        counts = [0] * bins
        for value, n in self.pairs:
            counts[min(bins - 1, value // width)] += n
        return [{"lo": i * width, "hi": (i + 1) * width, "count": c} for i, c in enumerate(counts)]


def histogram(tokens: list[int]) -> list[dict]:
    """`Counts.histogram` of plain token counts."""
    return Counts(list(Counter(tokens).items())).histogram()


def percentile(tokens: list[int], q: float) -> int:
    """`Counts.percentile` of plain token counts."""
    return Counts(list(Counter(tokens).items())).percentile(q)


def summarize(store: PromptLog, since: str | None = None, source: str | None = None,
              enabled: bool = True, store_text: bool = True) -> dict:
    """The stats answer for rows at or after `since` (ISO UTC) from `source` (exact), all when None."""
    where, parameters = where_clause(since, source)
    # One scan: a row per distinct count (a few thousand at most), so 100,000 rows never come to Python.
    by_count = store.select(
        "SELECT tokens, count(*), sum(over_budget), sum(over_512), sum(max(coalesce(tokens_before - tokens_after, 0), 0)) "
        f"FROM prompts INDEXED BY prompts_stats{where} GROUP BY tokens ORDER BY tokens", parameters)
    counts = Counts([(tokens, n) for tokens, n, *_ in by_count])
    over_budget = sum(row[2] for row in by_count)
    over_512 = sum(row[3] for row in by_count)
    saved = sum(row[4] for row in by_count)
    flagged = where + (" AND " if where else " WHERE ") + "flags != ''"
    anomalies = dict.fromkeys(FLAGS, 0)
    # The few flagged rows have their own index, whatever the filters (never a scan of the rows' text).
    for flags, count in store.select(f"SELECT flags, count(*) FROM prompts INDEXED BY prompts_flagged{flagged} GROUP BY flags", parameters):
        for flag in flags.split(","):
            anomalies[flag] = anomalies.get(flag, 0) + count
    recent = store.select(
        f"SELECT time, source, tokens, flags, text FROM prompts INDEXED BY prompts_flagged{flagged} "
        f"ORDER BY id DESC LIMIT {RECENT_ANOMALIES}", parameters)
    sources = [s for (s,) in store.select("SELECT DISTINCT source FROM prompts ORDER BY source")]
    return {
        "prompts": counts.total,
        "tokens": {
            "p50": counts.percentile(0.5),
            "p90": counts.percentile(0.9),
            "max": counts.max,
            "mean": round(counts.sum / counts.total, 1) if counts.total else 0,
            "histogram": counts.histogram(),
        },
        "over_budget": int(over_budget),
        "over_512": int(over_512),
        "tokens_saved": int(saved),
        "anomalies": anomalies,
        "recent_anomalies": [
            {"time": t, "source": s, "tokens": n, "flags": f.split(","), "text": shorten(text)}
            for t, s, n, f, text in recent
        ],
        "sources": sources,
        "enabled": bool(enabled),
        "store_text": bool(store_text),
        "since": since,
        "source": source,
    }


def shorten(text: str | None, limit: int = RECENT_TEXT_CHARS) -> str | None:
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def rows_csv(store: PromptLog, since: str | None = None, source: str | None = None) -> str:
    """The rows as CSV (a header line, then oldest first). A text starting with = + - @ gets a leading
    apostrophe so spreadsheets show it instead of running it as a formula."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = ("id",) + COLUMNS
    writer.writerow(columns)
    where, parameters = where_clause(since, source)
    rows = store.select(f"SELECT {', '.join(columns)} FROM prompts{where} ORDER BY id", parameters)
    text_at = columns.index("text")
    for row in rows:
        text = row[text_at]
        if text is not None and text[:1] in ("=", "+", "-", "@"):
            row = row[:text_at] + ("'" + text,) + row[text_at + 1:]
        writer.writerow(row)  # None is written as an empty field
    return out.getvalue()


def render_text(summary: dict, width: int = 40) -> str:
    """The summary for a terminal, with a text histogram: one line per bin that has prompts, and the bin
    starting at 512, marked; "..." where empty bins were left out."""
    t = summary["tokens"]
    n = summary["prompts"]
    scope = []
    if summary.get("since"):
        scope.append(f"since {summary['since']}")
    if summary.get("source"):
        scope.append(f"source {summary['source']}")
    lines = [f"prompts: {n}" + (f" ({', '.join(scope)})" if scope else "")]
    if not n:
        lines.append("no prompts logged" + (" for these filters" if scope else " yet"))
        return "\n".join(lines)
    share = lambda k: f"{summary[k]} ({summary[k] / n:.0%})"
    lines += [
        f"tokens: p50 {t['p50']}, p90 {t['p90']}, max {t['max']}, mean {t['mean']}",
        f"over budget: {share('over_budget')}; over 512 (cut by diffusers-style runtimes): {share('over_512')}",
        f"tokens saved by compression and truncation: {summary['tokens_saved']}",
        "",
    ]
    bins = t["histogram"]
    last = max(i for i, b in enumerate(bins) if b["count"] or b["lo"] == WAN_TEXT_LEN)
    biggest = max(b["count"] for b in bins) or 1
    label_width = len(f"{bins[last]['lo']}-{bins[last]['hi'] - 1}")
    shown_last = -1
    for i, b in enumerate(bins[: last + 1]):
        if not b["count"] and b["lo"] != WAN_TEXT_LEN:
            continue
        if i > shown_last + 1:
            lines.append("     ...")
        shown_last = i
        bar = "#" * max(1, round(b["count"] / biggest * width)) if b["count"] else ""
        mark = "  <- 512: diffusers-style runtimes cut from here" if b["lo"] == WAN_TEXT_LEN else ""
        lines.append(f"{b['lo']:>{label_width // 2}}-{b['hi'] - 1:<{label_width // 2 + 1}} {b['count']:>7} {bar}{mark}")
    flagged = {k: v for k, v in summary["anomalies"].items() if v}
    lines.append("")
    lines.append("anomalies: " + (", ".join(f"{k} {v}" for k, v in flagged.items()) if flagged else "none"))
    for item in summary["recent_anomalies"]:
        text = f": {item['text']}" if item["text"] else ""
        lines.append(f"  {item['time']} {item['source']} {item['tokens']} tokens [{', '.join(item['flags'])}]{text}")
    lines.append(f"sources: {', '.join(summary['sources'])}")
    return "\n".join(lines)
