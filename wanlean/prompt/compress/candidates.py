"""What the extractive and token-classifier methods may drop, in the order they drop it.

`Plan` finds the candidates: filler (politeness, hedges, intensifiers, padding, duplicates, repeated
phrases), articles and particles, light words, clauses (`clauses.py` scores them), prepositions and
content words; or, for a model, every droppable word with the model's score.
"""

from __future__ import annotations

from ..words import CJK, PUNCT, WORD, clause_ids
from .analysed import AnalysedPrompt, Candidate
from .clauses import clause_candidates
from ..vocabulary import (
    ARTICLE_ZH, ARTICLES, CJK_FUNCTION, CJK_SINGLE, FILLER, LIST_JOINERS, PREPOSITIONS, STOPWORDS, SYNONYM_GROUP,
    SYNONYM_ZH, SYNONYM_ZH_GROUP,
)



class Plan(AnalysedPrompt):
    """An analysed prompt and the candidates it offers for dropping."""

    def extractive_order(self) -> list[Candidate]:
        """Every piece the extractive method may drop, in the order it drops them: filler (politeness,
        hedges, intensifiers, padding, duplicates, repeats), then whole low-value clauses, then pronouns,
        auxiliaries and conjunctions, then articles (kept while the budget allows), then prepositions.
        Chinese 的 stays: dropping it saves nothing in most vocabularies, where it merges with its neighbours. Single content words never go alone, and a piece that would leave a clause of one
        word is left out: no "close." or "camera." fragments."""
        filler = self._filler()
        taken = {i for c in filler for i in c.indices}
        clauses = clause_candidates(self, taken)
        articles = [
            Candidate("article", [i])
            for i, word in enumerate(self.lower)
            if i not in taken and self._droppable(i) and self.items[i].kind == WORD and word in ARTICLES
        ]
        for match in ARTICLE_ZH.finditer(self.text):
            indices = list(self._covered(match.start(), match.end()))
            if indices and not any(i in taken for i in indices) and all(self._droppable(i) for i in indices) \
                    and self._whole_word(indices[0], indices[-1] + 1):
                articles.append(Candidate("article", indices))
        articles.sort(key=lambda c: c.indices[0])
        taken |= {i for c in articles for i in c.indices}
        light_words, prepositions = [], []
        for i, unit in enumerate(self.items):
            if i in taken or not self._droppable(i) or unit.kind == PUNCT:
                continue
            if unit.kind == CJK and (unit.text not in CJK_SINGLE or not self._whole_word(i, i + 1)):
                continue  # a lone CJK character out of a word would leave a broken word
            word = self.lower[i]
            if word in PREPOSITIONS:
                prepositions.append(Candidate("word", [i], self._density(i)))
            elif word in STOPWORDS or unit.kind == CJK:
                light_words.append(Candidate("word", [i], self._density(i)))
        for group in (light_words, prepositions):
            group.sort(key=lambda c: c.density)
        return self._without_fragments(filler + clauses + light_words + articles + prepositions)

    def _density(self, i: int) -> float:
        return self._value(i) / max(self.costs[i], 1) + 0.001 * (len(self.items) - i) / len(self.items)

    def _without_fragments(self, ordered: list[Candidate]) -> list[Candidate]:
        """`ordered` less the pieces that, dropped in this order, would leave a clause of a single word
        (between separators) that had more. The order is fixed before any target is known, so this keeps
        the fit monotone."""
        separated = clause_ids(self.text, self.items)
        word_of = self.word_ids()
        clause_of_word: dict[int, int] = {}
        units_left: dict[int, int] = {}
        for i, clause in enumerate(separated):
            if self.items[i].kind != PUNCT:
                clause_of_word[word_of[i]] = clause
                units_left[word_of[i]] = units_left.get(word_of[i], 0) + 1
        words_left: dict[int, int] = {}
        for word, clause in clause_of_word.items():
            words_left[clause] = words_left.get(clause, 0) + 1
        original = dict(words_left)
        dropped: set[int] = set()
        kept: list[Candidate] = []
        for candidate in ordered:
            gone: dict[int, int] = {}
            for i in candidate.indices:
                if i not in dropped and self.items[i].kind != PUNCT:
                    gone[word_of[i]] = gone.get(word_of[i], 0) + 1
            lost: dict[int, int] = {}
            for word, count in gone.items():
                if units_left[word] == count:
                    lost[clause_of_word[word]] = lost.get(clause_of_word[word], 0) + 1
            if any(words_left[c] - n == 1 and original[c] > 1 for c, n in lost.items()):
                continue
            kept.append(candidate)
            dropped.update(candidate.indices)
            for word, count in gone.items():
                units_left[word] -= count
            for clause, count in lost.items():
                words_left[clause] -= count
        return kept

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
                covered = self._covered(match.start(), match.end())
                if covered and self._whole_word(covered[0], covered[-1] + 1):
                    add(reason, covered)
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
                        later = list(between) + [index]
                        # The later word may belong to the subject ("a big, big dog"): then the earlier goes.
                        protected = any(not self._droppable(i, separators=True) for i in later)
                        yield "duplicate", [previous_word] + list(between) if protected else later
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
        # A phrase of 3+ units that repeats has a 3-unit start that repeats: most prompts have none, and
        # the search by size below is then skipped.
        trigrams = [tuple(self.lower[start : start + 3]) for start in range(n_items - 2) if run[start] >= 3]
        if len(set(trigrams)) == len(trigrams):
            return
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
