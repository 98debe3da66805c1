"""The fit loop: drop candidates in order until the token count reaches the target share, then explain.

Pass 1 works on additive token estimates (scaled to the real total); each round is measured with the
real tokenizer and the scale corrected. A last piece that overshot is given back while that lands closer.
"""

from __future__ import annotations

from ..words import PUNCT, added_words, tidy
from .analysed import AnalysedPrompt, Candidate
from .result import LOW_RATIO, TOLERANCE, CompressResult, Dropped, kinds_summary

ROUNDS = 6  # measured rounds before the loop settles for what it reached
GIVE_BACK = 6  # recent pieces the overshoot correction may return


class Fit:
    """One compression of `plan` to `ratio`: the target, the tolerance and the floor (the protected
    spans alone) are known before any piece is dropped."""

    def __init__(self, plan: AnalysedPrompt, ratio: float):
        self.plan = plan
        self.ratio = ratio
        self.before = plan.tokenizer.count(plan.text)
        self.target = ratio * self.before
        self.slack = TOLERANCE * self.before
        items = plan.items
        only_protected = [plan.protected[i] or items[i].kind == PUNCT for i in range(len(items))]
        self.floor = plan._measure(only_protected)[1] if ratio < 1.0 else self.before

    def run(self, tiers: list[list[Candidate]], method: str, filler_only_if_unreachable: bool = False) -> CompressResult:
        """Drop candidates in order until the count reaches `ratio` of the original. With
        `filler_only_if_unreachable`, a target that the protected spans rule out drops only the first
        tier (filler): stripping every other word to get near it would leave a list of fragments."""
        reachable = self.floor <= self.target + self.slack
        chosen = tiers if reachable or not filler_only_if_unreachable else tiers[:1]
        ordered = [c for tier in chosen for c in tier]
        keep, applied, text, count = self._drop(ordered)
        if count < self.target - self.slack:
            keep, text, count = self._give_back(keep, applied, text, count)
        return self._result(keep, applied, text, count, method)

    def _drop(self, ordered: list[Candidate]):
        plan, target, slack = self.plan, self.target, self.slack
        keep = [True] * len(plan.items)
        applied: list[Candidate] = []
        estimated_total = sum(plan.costs) or 1
        scale = (self.before - 1) / estimated_total
        current_text, current = plan.text, self.before
        for _round in range(ROUNDS):
            if current <= target:
                break
            estimate = current
            deferred: list[Candidate] = []
            progressed = False
            for candidate in ordered:
                if estimate <= target:
                    break
                live = [i for i in candidate.indices if keep[i]]
                if not live:
                    continue
                saving = scale * sum(plan.costs[i] for i in live)
                if estimate - saving < target - slack:
                    deferred.append(candidate)  # too big a piece: try smaller ones first
                    continue
                for i in live:
                    keep[i] = False
                applied.append(candidate)
                estimate -= saving
                progressed = True
            if estimate > target + slack and deferred:
                # Nothing small enough is left: take the piece that lands closest to the target.
                best = min(deferred, key=lambda c: abs(estimate - scale * sum(plan.costs[i] for i in c.indices if keep[i]) - target))
                for i in best.indices:
                    keep[i] = False
                applied.append(best)
                progressed = True
            new_text, new_count = plan._measure(keep)
            if not progressed:
                current_text, current = new_text, new_count
                break
            # Re-scale so the next round's estimates match what the tokenizer really said.
            estimated_drop = current - estimate
            real_drop = current - new_count
            if estimated_drop > 0 and real_drop > 0:
                scale *= real_drop / estimated_drop
            current_text, current = new_text, new_count
        return keep, applied, current_text, current

    def _give_back(self, keep: list[bool], applied: list[Candidate], current_text: str, current: int):
        """The last piece overshot: give back recent pieces while that lands closer to the target."""
        target, slack = self.target, self.slack
        for candidate in list(reversed(applied))[:GIVE_BACK]:
            trial = list(keep)
            for i in candidate.indices:
                trial[i] = True
            trial_text, trial_count = self.plan._measure(trial)
            if trial_count <= target + slack and abs(trial_count - target) < abs(current - target):
                keep, current_text, current = trial, trial_text, trial_count
                applied.remove(candidate)
            if current >= target - slack:
                break
        return keep, current_text, current

    def _result(self, keep: list[bool], applied: list[Candidate], text: str, count: int, method: str) -> CompressResult:
        plan = self.plan
        final_keep = tidy(plan.items, keep, plan.pairs, plan.protected)
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
            what = "only filler was dropped" if floor > target + slack else "dropped all it could"
            result.notes.append(
                f"could not reach {ratio:.2f}: the protected spans alone take {floor} of {before} tokens "
                f"(ratio {floor / before:.2f}){kinds_summary(self.plan.spans)}, so {what}; shorten the keep list or the prompt by hand"
            )
        elif result.tokens_after < target - slack:
            result.notes.append(
                f"landed below {ratio:.2f} - {TOLERANCE}: the smallest piece left to drop was larger than the gap"
            )
        if result.achieved_ratio < LOW_RATIO:
            result.warnings.append(
                f"ratio {result.achieved_ratio:.2f} is below {LOW_RATIO}: most of the prompt is gone; read the result before using it"
            )
