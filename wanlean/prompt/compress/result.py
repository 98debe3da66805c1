"""What a compression did: `CompressResult`, its report (the node's text) and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import protect

TOLERANCE = 0.05  # how close to the target the ratio should land
LOW_RATIO = 0.5  # below this the report warns


@dataclass
class Dropped:
    reason: str
    text: str


@dataclass
class CompressResult:
    """What a compression did; `report()` is the text the node shows."""

    text: str
    method: str
    tokenizer: str
    tokens_before: int
    tokens_after: int
    target_ratio: float
    protected: list[protect.Span] = field(default_factory=list)
    protected_kept: list[bool] = field(default_factory=list)
    keep_absent: list[str] = field(default_factory=list)
    words_added: list[str] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def achieved_ratio(self) -> float:
        return self.tokens_after / self.tokens_before if self.tokens_before else 1.0

    @property
    def protected_missing(self) -> list[protect.Span]:
        return [span for span, kept in zip(self.protected, self.protected_kept) if not kept]

    @property
    def headline(self) -> str:
        """The one line a node shows while it runs: tokens before -> after, the ratio reached and the target."""
        return f"tokens: {self.tokens_before} -> {self.tokens_after} (ratio {self.achieved_ratio:.2f}, target {self.target_ratio:.2f})"

    def report(self) -> str:
        lines = [
            f"WanLeanCompress ({self.method}); tokens {self.tokenizer}",
            self.headline,
            f"protected spans kept: {sum(self.protected_kept)}/{len(self.protected)}" + kinds_summary(self.protected),
            f"words added: {len(self.words_added)}" + (f" ({', '.join(self.words_added)})" if self.words_added else ""),
        ]
        if self.dropped:
            shown = "; ".join(f'{d.reason} "{d.text}"' for d in self.dropped[:40])
            more = f"; ... {len(self.dropped) - 40} more" if len(self.dropped) > 40 else ""
            lines.append(f"dropped ({len(self.dropped)}): {shown}{more}")
        else:
            lines.append("dropped: nothing")
        missing = self.protected_missing
        if missing:
            lines.append("protected spans missing: " + ", ".join(f'"{s.text}"' for s in missing))
        if self.keep_absent:
            lines.append("keep terms not in the text: " + ", ".join(f"'{t}'" for t in self.keep_absent))
        lines.extend(f"note: {n}" for n in self.notes)
        lines.extend(f"WARNING: {w}" for w in self.warnings)
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "tokenizer": self.tokenizer,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "target_ratio": self.target_ratio,
            "achieved_ratio": round(self.achieved_ratio, 4),
            "protected_total": len(self.protected),
            "protected_kept": sum(self.protected_kept),
            "protected_missing": [s.text for s in self.protected_missing],
            "keep_absent": list(self.keep_absent),
            "words_added": list(self.words_added),
            "dropped": [{"reason": d.reason, "text": d.text} for d in self.dropped],
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def kinds_summary(spans: list[protect.Span]) -> str:
    if not spans:
        return ""
    counts: dict[str, int] = {}
    for span in spans:
        counts[span.kind] = counts.get(span.kind, 0) + 1
    return " (" + ", ".join(f"{k} {counts[k]}" for k in protect.KINDS if k in counts) + ")"

