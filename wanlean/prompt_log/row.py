"""One logged prompt: what a node hands over (`PromptEntry`, cheap to make) and the row stored (`PromptRow`).

The row's `tokens`, `over_budget` and `over_512` describe the prompt as the node passes it on (for
WanLeanCompress and WanLeanTruncate: the shortened one, with `tokens_before` the prompt received); `text`,
`characters`, the script mix and the text flags describe the prompt the node received, where padding
and junk are.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from ..charsets import CJK_CHARS
from ..tokens import WAN_TEXT_LEN
from .anomalies import FLAGS, Anomaly, UsualLength, detect

EXACT = "exact"
ESTIMATE = "estimate"
_LATIN_LETTERS = re.compile("[A-Za-z\u00c0-\u024f]")
_CJK_LETTERS = re.compile(f"[{CJK_CHARS}]")
_LETTERS = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class PromptEntry:
    """What a node knows about a prompt it handled; the rest is worked out off the node's thread."""

    source: str  # node type (WanLeanTokenCount, ...) or "prep"
    text: str
    tokens: int  # as passed on, </s> included
    exact: bool  # counted by umT5's own tokenizer (else the estimate)
    budget: int = WAN_TEXT_LEN
    tokens_before: int | None = None  # when the node shortened the prompt
    anomalies: tuple[Anomaly, ...] | None = None  # already detected (TokenCount's report), else None
    time: str = ""  # ISO UTC; "" = when the row is made


@dataclass(frozen=True)
class PromptRow:
    time: str
    source: str
    tokens: int
    characters: int
    scripts: str  # JSON {"latin": share, "cjk": share, "other": share} of the letters
    tokenizer: str  # "exact" or "estimate"
    budget: int
    over_budget: bool
    over_512: bool
    tokens_before: int | None
    tokens_after: int | None
    flags: str  # comma list, FLAGS order
    sha256: str
    text: str | None  # None when storing text is off

    @property
    def flag_list(self) -> list[str]:
        return self.flags.split(",") if self.flags else []


COLUMNS = tuple(PromptRow.__dataclass_fields__)


def now_iso() -> str:
    """Now in UTC, ISO 8601 with milliseconds and Z: fixed width, so text order is time order."""
    return iso(datetime.now(timezone.utc))


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def script_mix(text: str) -> dict[str, float]:
    """Shares of the letters that are Latin, CJK (kana, ideographs, Hangul) or other scripts, rounded."""
    latin = len(_LATIN_LETTERS.findall(text))
    cjk = len(_CJK_LETTERS.findall(text))
    letters = len(_LETTERS.findall(text))
    other = max(0, letters - latin - cjk)
    if not letters:
        return {}
    mix = {"latin": latin / letters, "cjk": cjk / letters, "other": other / letters}
    return {name: round(share, 3) for name, share in mix.items() if share > 0}


def make_row(entry: PromptEntry, store_text: bool = True, usual: UsualLength | None = None) -> PromptRow:
    """The stored row for `entry`: flags from the text detectors (unless given) plus the length flags."""
    text_flags = entry.anomalies if entry.anomalies is not None else detect(entry.text)
    length_flags = detect("", entry.tokens, usual)
    names = {a.flag for a in text_flags if a.flag not in ("over_512", "unusual_length")} | {a.flag for a in length_flags}
    shortened = entry.tokens_before is not None
    return PromptRow(
        time=entry.time or now_iso(),
        source=entry.source,
        tokens=int(entry.tokens),
        characters=len(entry.text),
        scripts=json.dumps(script_mix(entry.text), separators=(",", ":")),
        tokenizer=EXACT if entry.exact else ESTIMATE,
        budget=int(entry.budget),
        over_budget=entry.tokens > entry.budget,
        over_512=entry.tokens > WAN_TEXT_LEN,
        tokens_before=int(entry.tokens_before) if shortened else None,
        tokens_after=int(entry.tokens) if shortened else None,
        flags=",".join(flag for flag in FLAGS if flag in names),
        sha256=hashlib.sha256(entry.text.encode("utf-8", "surrogatepass")).hexdigest(),
        text=entry.text if store_text else None,
    )
