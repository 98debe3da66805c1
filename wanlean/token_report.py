"""What a token count means for Wan: counts of a prompt (and its negative) and what each runtime does with
them (diffusers, official Wan and WanVideoWrapper keep the first 512 tokens; ComfyUI keeps all; hosted
APIs limit characters). The counting itself is `wanlean.tokens`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .errors import WanLeanError
from .prompt_log.anomalies import Anomaly, detect
from .tokens import API_NEGATIVE_CHARS, API_PROMPT_CHARS, WAN_TEXT_LEN, Tokenizer, check_text_size, clean_text


@dataclass(frozen=True)
class TextCount:
    """One text (prompt or negative) as umT5 sees it."""

    tokens: int  # pieces + `</s>`
    characters: int
    lost: str  # what a runtime cutting at WAN_TEXT_LEN drops, from a word boundary ("" if it fits)

    @property
    def lost_tokens(self) -> int:
        return max(0, self.tokens - WAN_TEXT_LEN)


@dataclass(frozen=True)
class TokenReport:
    exact: bool
    label: str
    tokenizer: str  # the file/folder name, or "estimate"
    budget: int
    prompt: TextCount
    negative: TextCount | None
    anomalies: tuple[Anomaly, ...] = ()  # of the prompt (see wanlean.prompt_log.anomalies)

    @property
    def over_budget(self) -> bool:
        """The prompt or the negative has more tokens than `budget`."""
        texts = [self.prompt] + ([self.negative] if self.negative else [])
        return any(t.tokens > self.budget for t in texts)

    def _n(self, tokens: int) -> str:
        return f"{tokens:,}" if self.exact else f"≈{tokens:,}"

    def summary(self) -> str:
        """The report shown on the node: exact or estimated, counts, and what each runtime does."""
        kind = "exact" if self.exact else "ESTIMATE"
        lines = [f"umT5 tokens, {kind}: {self.label}"]
        texts = [("prompt", self.prompt, API_PROMPT_CHARS)]
        if self.negative is not None:
            texts.append(("negative", self.negative, API_NEGATIVE_CHARS))
        for name, count, _ in texts:
            over = "  OVER BUDGET" if count.tokens > self.budget else ""
            lines.append(f"{name}: {self._n(count.tokens)} / {self.budget} tokens, {count.characters:,} characters{over}")
        lines.append("")
        lines.append(f"diffusers, official Wan, WanVideoWrapper: keep the first {WAN_TEXT_LEN} tokens (</s> included)")
        for name, count, _ in texts:
            if count.tokens <= WAN_TEXT_LEN:
                lines.append(f"  {name}: kept whole")
            else:
                lines.append(
                    f"  {name}: {self._n(count.lost_tokens)} tokens cut; lost from: \"{_first_words(count.lost)}\""
                )
        lines.append("ComfyUI native (CLIPTextEncode): keeps every token, pads to at least 512")
        for name, count, _ in texts:
            padding = f"padded to {WAN_TEXT_LEN}" if count.tokens < WAN_TEXT_LEN else "no padding needed"
            lines.append(f"  {name}: all {self._n(count.tokens)} tokens kept, {padding}")
        limits = ", ".join(f"{chars} characters for the {name}" for name, _, chars in texts)
        lines.append(f"Hosted Wan APIs limit characters, not tokens: {limits}")
        for name, count, chars in texts:
            verdict = "fits" if count.characters <= chars else f"{count.characters - chars:,} too many"
            lines.append(f"  {name}: {count.characters:,} / {chars} characters, {verdict}")
        if self.anomalies:
            lines.append("")
            lines.append("Anomalies in the prompt:")
            lines.extend(f"  ⚠ {a.label}: {a.reason}" for a in self.anomalies)
        if not self.exact:
            lines.append("")
            lines.append("Choose your umT5 text-encoder file in 'tokenizer' for an exact count.")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """JSON-ready counts (the route's answer)."""

        def text_dict(count: TextCount, api_chars: int) -> dict:
            return {
                "tokens": count.tokens,
                "characters": count.characters,
                "over_budget": count.tokens > self.budget,
                "truncated_tokens": count.lost_tokens,
                "lost_from": _first_words(count.lost) if count.lost else "",
                "api_characters_limit": api_chars,
            }

        result = {
            "exact": self.exact,
            "label": self.label,
            "tokenizer": self.tokenizer,
            "budget": self.budget,
            "max_tokens": WAN_TEXT_LEN,
            "tokens": self.prompt.tokens,
            "over_budget": self.over_budget,
            "prompt": text_dict(self.prompt, API_PROMPT_CHARS),
            "anomalies": [a.as_dict() for a in self.anomalies],
            "summary": self.summary(),
        }
        if self.negative is not None:
            result["negative"] = text_dict(self.negative, API_NEGATIVE_CHARS)
        return result


def _first_words(text: str, words: int = 12, max_chars: int = 120) -> str:
    """The start of `text` for a message: a dozen words (or CJK characters), on one line."""
    flat = " ".join(text.split())
    head = " ".join(flat.split(" ")[:words])[:max_chars]
    return head + ("…" if len(head) < len(flat) else "")


def count_text(tokenizer: Tokenizer, text: str, what: str = "text") -> TextCount:
    text = clean_text(text)
    check_text_size(text, what)
    tokens = tokenizer.count(text)
    lost = ""
    if tokens > WAN_TEXT_LEN:
        _, lost = tokenizer.split_at(text, WAN_TEXT_LEN)
    return TextCount(tokens=tokens, characters=len(text), lost=lost)


def analyze(tokenizer: Tokenizer, text: str, negative: str | None = None, budget: int = WAN_TEXT_LEN) -> TokenReport:
    """Counts for a prompt (and optionally a negative) and what each runtime does with them."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise WanLeanError(f"budget must be a whole number of tokens, at least 1 (Wan keeps 512); got {budget!r}.")
    prompt = count_text(tokenizer, text)
    return TokenReport(
        exact=tokenizer.exact,
        label=tokenizer.label,
        tokenizer=tokenizer.source,
        budget=budget,
        prompt=prompt,
        negative=None if negative is None else count_text(tokenizer, negative, "negative"),
        anomalies=_anomalies(clean_text(text), prompt.tokens),
    )


def _anomalies(text: str, tokens: int) -> tuple[Anomaly, ...]:
    """The prompt's anomalies; a bug in a detector costs the flags (logged), never the count."""
    try:
        return tuple(detect(text, tokens))
    except Exception:
        logging.getLogger("wanlean").exception("[WanLean] anomaly detection failed; the count is shown without flags")
        return ()
