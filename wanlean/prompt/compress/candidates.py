"""What the extractive and token-classifier methods may drop, in the order they drop it.

`Plan` finds the candidates: filler (politeness, hedges, intensifiers, padding, duplicates, repeated
phrases), articles and particles, light words, clauses (`clauses.py` scores them), prepositions and
content words; or, for a model, every droppable word with the model's score.
"""

from __future__ import annotations

from ..words import CJK, PUNCT, WORD
from .analysed import AnalysedPrompt, Candidate
from .clauses import clause_candidates
from .vocabulary import (
    ARTICLE_ZH, ARTICLES, CJK_FUNCTION, CJK_SINGLE, FILLER, LIST_JOINERS, PREPOSITIONS, STOPWORDS, SYNONYM_GROUP,
    SYNONYM_ZH, SYNONYM_ZH_GROUP,
)



class Plan(AnalysedPrompt):
    """An analysed prompt and the candidates it offers for dropping."""

    def extractive_tiers(self) -> list[list[Candidate]]:
        filler = self._filler()
        taken = {i for c in filler for i in c.indices}
        articles = [
            Candidate("article", [i])
            for i, word in enumerate(self.lower)
            if i not in taken and self._droppable(i) and self.items[i].kind == WORD and word in ARTICLES
        ]
        articles += [
            Candidate("particle", [i])
            for i, word in enumerate(self.lower)
            if word == "的" and i not in taken and self._droppable(i)
            and 0 < i < len(self.items) - 1 and self.items[i - 1].kind == CJK and self.items[i + 1].kind == CJK
        ]
        for match in ARTICLE_ZH.finditer(self.text):
            indices = list(self._covered(match.start(), match.end()))
            if indices and not any(i in taken for i in indices) and all(self._droppable(i) for i in indices):
                articles.append(Candidate("article", indices))
        articles.sort(key=lambda c: c.indices[0])
        taken |= {i for c in articles for i in c.indices}
        clauses = clause_candidates(self, taken)
        light_words, prepositions, content_words = [], [], []
        for i, unit in enumerate(self.items):
            if i in taken or not self._droppable(i) or unit.kind == PUNCT:
                continue
            if unit.kind == CJK and unit.text not in CJK_SINGLE:
                continue  # a lone CJK character out of a word would leave a broken word
            density = self._value(i) / max(self.costs[i], 1) + 0.001 * (len(self.items) - i) / len(self.items)
            word = self.lower[i]
            group = prepositions if word in PREPOSITIONS else light_words if word in STOPWORDS or unit.kind == CJK else content_words
            group.append(Candidate("word", [i], density))
        for group in (light_words, prepositions, content_words):
            group.sort(key=lambda c: c.density)
        # Filler and articles first, with pronouns, auxiliaries and conjunctions; then the lowest-value
        # clauses; then prepositions; then, only to land on the target, single content words.
        return [filler + articles + light_words, clauses, prepositions, content_words]

    def _filler(self) -> list[Candidate]:
        found: list[Candidate] = []
        used: set[int] = set()

        def add(reason: str, indices) -> None:
            indices = [i for i in indices if i not in used]
            if indices and all(self._droppable(i, separators=True) for i in indices) and any(self.items[i].kind != PUNCT for i in indices):
                found.append(Candidate(reason, indices))
                used.update(indices)

        for reason, pattern in FILLER:
            for match in pattern.finditer(self.text):
                add(reason, self._covered(match.start(), match.end()))
        for reason, indices in self._duplicates():
            add(reason, indices)
        for indices in self._repeats(used):
            add("repeated phrase", indices)
        found.sort(key=lambda c: c.indices[0])
        return found

    def _duplicates(self):
        """("duplicate", indices) for a word that repeats its neighbour or a synonym of it: "big, big",
        "beautiful and stunning", "美丽、漂亮"."""
        previous_word = None
        for index, unit in enumerate(self.items):
            if unit.kind != WORD:
                continue
            word = self.lower[index]
            if word in LIST_JOINERS:
                continue
            if previous_word is not None and index - previous_word <= 3:
                between = range(previous_word + 1, index)
                if all(self.lower[i] in LIST_JOINERS for i in between):
                    earlier = self.lower[previous_word]
                    same = word == earlier or (word in SYNONYM_GROUP and SYNONYM_GROUP.get(earlier) == SYNONYM_GROUP[word])
                    if same and word not in STOPWORDS:
                        yield "duplicate", list(between) + [index]
            previous_word = index
        matches = list(SYNONYM_ZH.finditer(self.text))
        for first, second in zip(matches, matches[1:]):
            gap = self.text[first.end() : second.start()]
            if len(gap) <= 1 and all(ch in LIST_JOINERS for ch in gap):
                if SYNONYM_ZH_GROUP[first.group()] == SYNONYM_ZH_GROUP[second.group()]:
                    yield "duplicate", list(self._covered(first.end(), second.end()))

    def _repeats(self, used: set[int]):
        """Index lists of phrases that repeat an earlier phrase word for word (3+ words, 4+ CJK chars)."""
        n_items = len(self.items)
        run = [0] * (n_items + 1)  # how many non-punctuation units start at each index
        for index in range(n_items - 1, -1, -1):
            run[index] = 0 if self.items[index].kind == PUNCT else run[index + 1] + 1
        taken = set(used)
        for size in (8, 7, 6, 5, 4, 3):
            seen: dict[tuple, int] = {}
            for start in range(n_items - size + 1):
                if run[start] < size:
                    continue
                cjk = self.items[start].kind == CJK
                if (cjk and size < 4) or (not cjk and size > 6):
                    continue
                key = tuple(self.lower[start : start + size])
                first_end = seen.get(key)
                if first_end is None:
                    seen[key] = start + size
                    continue
                window = range(start, start + size)
                if first_end > start or any(i in taken for i in window):
                    continue
                if all(w in STOPWORDS or w in CJK_FUNCTION for w in key):
                    continue
                taken.update(window)
                yield list(window)

    def model_candidates(self, scores: list[float]) -> list[Candidate]:
        candidates = [
            Candidate("low score", [i], scores[i])
            for i in range(len(self.items))
            if self._droppable(i) and self.items[i].kind != PUNCT
        ]
        candidates.sort(key=lambda c: c.density)
        return candidates
