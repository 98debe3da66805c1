"""Clauses as drop candidates: which clause goes first, by value per token and by place in the prompt.

A long clause also offers its prepositional phrases ("in the dim arena", "around them") as smaller pieces
just ahead of it, so the fit can land near the target without taking the whole clause.
"""

from __future__ import annotations

from ..words import PUNCT, SEPARATORS, WORD
from .. import lexicon
from ..vocabulary import CLAUSE_STARTERS, PREPOSITIONS
from .analysed import Candidate


def clause_candidates(plan, taken: set[int]) -> list:
    """Clause candidates (their unprotected units), lowest value per token first."""
    by_clause: dict[int, list[int]] = {}
    protected_in: dict[int, int] = {}
    words_in: dict[int, int] = {}
    sentence_of: dict[int, int] = {}
    sentence = 0
    for index, clause in enumerate(plan.clauses):
        unit = plan.items[index]
        sentence_of.setdefault(clause, sentence)
        if unit.kind != PUNCT:
            words_in[clause] = words_in.get(clause, 0) + 1
        if unit.is_separator and SEPARATORS[unit.text] >= 3:
            sentence += 1
        if plan.protected[index]:
            protected_in[clause] = protected_in.get(clause, 0) + 1
        elif index not in taken and plan._droppable(index):
            by_clause.setdefault(clause, []).append(index)
    first = min(plan.clauses, default=0)
    last_sentence = max((sentence_of[c] for c in words_in), default=0)
    candidates = []
    for clause, indices in by_clause.items():
        if not any(plan.items[i].kind != PUNCT for i in indices):
            continue
        if len(indices) < protected_in.get(clause, 0):
            continue  # mostly protected: its few other words are left to the single-word passes
        cost = sum(plan.costs[i] for i in indices)
        value = sum(plan._value(i) for i in indices)
        # Wan's order puts the subject in the first sentence and style tags ("lo-fi anime style") in the last sentence.
        if clause == first:
            position = 3.0
        elif sentence_of[clause] == 0:
            position = 2.5
        elif sentence_of[clause] == last_sentence and words_in.get(clause, 0) <= 4:
            position = 2.0
        else:
            position = 1.0 + 0.2 / (1 + clause - first)
        # Dropping part of a clause strands its protected words ("pink light white"): do it later.
        stranded = 2.0 if protected_in.get(clause) else 1.0
        density = position * stranded * value / max(cost, 1)
        candidates.append(Candidate("clause", indices, density))
        candidates.extend(_phrases(plan, indices, 0.95 * density))
    candidates.sort(key=lambda c: c.density)
    return candidates


_PHRASE_MIN_CLAUSE = 6  # words in a clause before its phrases are offered on their own


def _phrases(plan, indices: list[int], density: float) -> list:
    """The prepositional phrases of a long clause: a preposition and the unprotected words after it, up to
    the next preposition, clause starter or protected word."""
    words = [i for i in indices if plan.items[i].kind == WORD]
    if len(words) < _PHRASE_MIN_CLAUSE:
        return []
    found = []
    current: list[int] = []
    for position, i in enumerate(words):
        contiguous = position > 0 and i == words[position - 1] + 1
        if plan.lower[i] in PREPOSITIONS or plan.lower[i] in CLAUSE_STARTERS or not contiguous:
            if len(current) >= 2:
                found.append(current)
            current = [i] if plan.lower[i] in PREPOSITIONS else []
        elif current and (plan.lower[i] in lexicon.VERB_FORMS and not plan.lower[i].endswith("ing") or len(current) > 4):
            if len(current) >= 2:
                found.append(current)
            current = []
        elif current:
            current.append(i)
    if len(current) >= 2:
        found.append(current)
    return [Candidate("phrase", phrase, density) for phrase in found if len(phrase) < len(words)]
