"""The fit: drop candidates in one fixed order until the token count reaches the target share, then explain.

The candidates form one ordered list, fixed before the target is known. The result for a target is the
shortest prefix of that list whose text fits the target plus the tolerance (or the whole list when none
does). A lower target can only take a longer prefix, so it never gives a longer result: the compressor is
monotone by construction. The prefix is found by a galloping search from an estimate, each step checked
with the real tokenizer, so a long prompt costs a few real counts, not one per candidate.
"""

from __future__ import annotations

from functools import cached_property

from ..words import PUNCT, added_words, tidy
from .analysed import AnalysedPrompt, Candidate
from .result import LOW_RATIO, TOLERANCE, CompressResult, Dropped, kinds_summary

UNREACHABLE = "target not reachable"


class Fit:
    """One compression of `plan` to `ratio`: the target, the tolerance and the floor (the protected
    spans alone) are known before any piece is dropped."""

    def __init__(self, plan: AnalysedPrompt, ratio: float, before: int | None = None):
        self.plan = plan
        self.ratio = ratio
        self.before = before if before is not None else plan.tokenizer.count(plan.text)
        self.target = ratio * self.before
        self.slack = TOLERANCE * self.before

    @cached_property
    def floor(self) -> int:
        """Tokens of the protected spans alone (with the punctuation): what no drop can go below. Counted
        only when a note needs it (an unreachable target), as it costs a real count."""
        plan, items = self.plan, self.plan.items
        if self.ratio >= 1.0:
            return self.before
        return plan._measure([plan.protected[i] or items[i].kind == PUNCT for i in range(len(items))])[1]

    def run(self, ordered: list[Candidate], method: str) -> CompressResult:
        """Drop the shortest prefix of `ordered` whose result fits `ratio` (within the tolerance)."""
        plan = self.plan
        first_drop = [len(ordered)] * len(plan.items)  # the candidate that drops each unit
        for position, candidate in enumerate(ordered):
            for i in candidate.indices:
                if first_drop[i] > position:
                    first_drop[i] = position
        measured: dict[int, tuple[list[bool] | None, str, int]] = {}

        def state(k: int):  # (units kept, tidied; None for the whole prompt), text, tokens
            if k not in measured:
                measured[k] = plan._measure_kept([position >= k for position in first_drop]) if k else (None, plan.text, self.before)
            return measured[k]

        limit = self.target + self.slack
        fits = lambda k: state(k)[2] <= limit  # noqa: E731
        last = len(ordered)
        if self.ratio >= 1.0 or fits(0):
            k = 0
        elif not fits(last):
            k = last
        else:
            k = _first_fitting(self._guess(ordered, first_drop, limit), fits, last)
        # A drop can add a token where pieces merge differently; of the states measured up to k, take the
        # shortest, so a longer prefix never means a longer text.
        state(k)
        k = min((j for j in measured if j <= k), key=lambda j: (measured[j][2], -j))
        keep, text, count = state(k)
        return self._result(keep, ordered[:k], text, count, method)

    def _guess(self, ordered: list[Candidate], first_drop: list[int], limit: float) -> int:
        """The prefix that additive per-unit estimates say reaches `limit`."""
        plan = self.plan
        scale = (self.before - 1) / (sum(plan.costs) or 1)
        saved = [0.0] * (len(ordered) + 1)
        for i, position in enumerate(first_drop):
            if position < len(ordered):
                saved[position] += plan.costs[i] * scale
        estimate = self.before
        for position in range(len(ordered)):
            estimate -= saved[position]
            if estimate <= limit:
                return position + 1
        return len(ordered)


    def _result(self, keep: list[bool] | None, applied: list[Candidate], text: str, count: int, method: str) -> CompressResult:
        plan = self.plan
        final_keep = keep if keep is not None else tidy(plan.items, [True] * len(plan.items), plan.pairs, plan.protected)
        result = CompressResult(
            text=text,
            method=method,
            tokenizer=plan.tokenizer.label,
            tokens_before=self.before,
            tokens_after=count,
            target_ratio=self.ratio,
            protected=plan.spans,
            protected_kept=[plan._span_kept(span, final_keep) for span in plan.spans],
            keep_absent=plan.keep_absent,
        )
        result.words_added = added_words(plan.text, text)
        for candidate in sorted(applied, key=lambda c: c.indices[0]):
            result.dropped.append(Dropped(candidate.reason, plan._show(candidate.indices)))
        self._explain(result)
        return result

    def _explain(self, result: CompressResult) -> None:
        ratio, before, target, slack = self.ratio, self.before, self.target, self.slack
        if result.tokens_after > target + slack:
            floor = self.floor
            result.notes.append(
                f"could not reach {ratio:.2f} ({UNREACHABLE}): the protected spans alone take {floor} of {before} tokens "
                f"(ratio {floor / before:.2f}){kinds_summary(self.plan.spans)}, and no word of them goes; all else that "
                "could go without leaving fragments went. Shorten the keep list or the prompt by hand"
            )
        elif result.tokens_after < target - slack:
            result.notes.append(
                f"landed below {ratio:.2f} - {TOLERANCE}: the smallest piece left to drop was larger than the gap"
            )
            if result.achieved_ratio < LOW_RATIO:
                result.warnings.append(
                    f"ratio {result.achieved_ratio:.2f} is below {LOW_RATIO} and below the target: most of the prompt is gone; "
                    "read the result before using it"
                )


def _first_fitting(guess: int, fits, last: int) -> int:
    """Smallest k in [1, last] with fits(k), given fits(last) and not fits(0); fits is taken to be
    monotone (false, then true). Gallops from the guess to bracket the answer, then bisects."""
    guess = max(1, min(guess, last))
    if fits(guess):
        high, step, low = guess, 1, 0
        while high - step > 0:
            if not fits(high - step):
                low = high - step
                break
            high -= step
            step *= 2
    else:
        low, step, high = guess, 1, last
        while low + step < last:
            if fits(low + step):
                high = low + step
                break
            low += step
            step *= 2
    while high - low > 1:  # invariant: not fits(low), fits(high)
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return high
