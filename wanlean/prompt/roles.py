"""The subject, its main action and the camera move of an English prompt, found by rules.

Keyword retention exists to keep the subject, so the compressor protects three roles:

- `subject`: the first content noun phrase of the description, after leading style or camera tags
  ("Anime-style thick-painted style."), framing ("The video opens on", "Close-up of") and a leading place
  clause ("Inside a small bakery,"). Its numbers and adjectives come with it: "Two anthropomorphic cats".
- `action`: the subject's main verb, with its particle ("fight", "takes off").
- `camera`: the camera with its move ("camera slowly pushes in", "drone rises").

No tagger and no model: a verb list (`lexicon.py`) and the neighbours of a word tell a verb from a noun.
Chinese prompts are handled by `roles_zh.py`, on jieba's words and tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import lexicon
from .vocabulary import FILLER, PREPOSITIONS, STOPWORDS
from .words import WORD, SEPARATORS, units

_SENTENCE_END = 3
_HEAD_STOPS = frozenset("who whom whose which that where when while and or but as if because than".split())
_ADVERB = re.compile(r"[a-z]+ly$")
_LINKS = frozenset("then also and gently steadily".split())
_ASIDE = re.compile(r"\([^()\n]*\)|\[[^\[\]\n]*\]|<[^<>\n]*>|\"[^\"\n]*\"|“[^”\n]*”|(?<![\w'])'[^'\n]*'(?![\w'])")
_SETTING_PREPOSITIONS = frozenset("of through over across into inside in on at from along under above".split())


@dataclass
class Token:
    text: str
    lower: str
    start: int
    end: int
    sentence: int
    clause: int
    aside: bool = False  # inside brackets or quotation marks: weight syntax, a sign's text


def tokens(text: str) -> list[Token]:
    """The Latin words of `text` with their sentence and clause numbers (separators, CJK text, brackets
    and line breaks end a clause; a sentence ends at . ! ? and line breaks)."""
    out: list[Token] = []
    sentence = clause = 0
    previous_end = 0
    asides = [(m.start(), m.end()) for m in _ASIDE.finditer(text)]
    for unit in units(text):
        if "\n" in text[previous_end : unit.start]:
            sentence, clause = sentence + 1, clause + 1
        previous_end = unit.end
        if unit.kind == WORD:
            aside = any(a <= unit.start < b for a, b in asides)
            out.append(Token(unit.text, unit.text.lower(), unit.start, unit.end, sentence, clause, aside))
            continue
        clause += 1
        if SEPARATORS.get(unit.text, 0) >= _SENTENCE_END:
            sentence += 1
    return out


def _next(words: list[Token], i: int) -> Token | None:
    if i + 1 < len(words) and words[i + 1].clause == words[i].clause:
        return words[i + 1]
    return None


def _previous(words: list[Token], i: int) -> Token | None:
    if i > 0 and words[i - 1].clause == words[i].clause:
        return words[i - 1]
    return None


def is_verb(words: list[Token], i: int) -> bool:
    """Whether words[i] is used as a verb: a known verb form, judged by its neighbours ("the light" and
    "light rain" are nouns; "light spreads", "holds a folder", "cats fight." are verbs)."""
    word = words[i].lower
    if word not in lexicon.VERB_FORMS:
        return False
    before, after = _previous(words, i), _next(words, i)
    if before is not None and before.lower in lexicon.DETERMINERS:
        return False
    if before is not None and before.lower in lexicon.AUXILIARIES:
        return True
    inflected = word.endswith(("s", "ed")) or word in lexicon.IRREGULAR
    if after is None:
        return inflected or (before is not None and before.lower.endswith("s"))
    nxt = after.lower
    if nxt in STOPWORDS or nxt in lexicon.PARTICLES or _ADVERB.match(nxt) or nxt in lexicon.DETERMINERS or nxt[0].isdigit():
        return not (word.endswith("ing") and nxt in ("of",))
    if nxt in lexicon.VERB_FORMS and not word.endswith("ing"):
        return False  # "rain falls", "city lights shimmer": the first is a noun
    return inflected


@dataclass(frozen=True)
class Role:
    kind: str  # "subject", "action" or "camera"
    start: int
    end: int


def find(text: str, tag_words: frozenset[str] = frozenset(), words: list[Token] | None = None) -> list[Role]:
    """The subject, action and camera-move roles of the English part of `text`. `tag_words`: the
    camera, lighting and colour vocabulary (a clause made only of these and style words is a tag);
    `words`: `tokens(text)` when the caller has them."""
    words = tokens(text) if words is None else words
    if not words:
        return []
    roles: list[Role] = []
    for first, last in _subject(text, words, tag_words):
        roles.append(Role("subject", words[first].start, words[last].end))
        action = _action(words, last)
        if action is not None:
            end = _object(words, action[1])
            roles.append(Role("action", words[action[0]].start, words[end].end))
    roles.extend(_camera_moves(words))
    return roles


def _filler_positions(text: str) -> set[int]:
    starts = set()
    for reason, pattern in FILLER:
        if reason in ("politeness", "hedge", "intensifier"):
            for match in pattern.finditer(text):
                starts.update(range(match.start(), match.end()))
    return starts


def _is_tag_clause(clause: list[Token], words: list[Token], tag_words: frozenset[str], offset: int) -> bool:
    content = [t for t in clause if t.lower not in lexicon.DETERMINERS and t.lower not in ("and", "with", "of", "in")]
    if not content:
        return True
    if any(is_verb(words, offset + k) for k, t in enumerate(clause)):
        return False
    if all(_taggy(t.lower, tag_words) for t in content):
        return True
    last = content[-1].lower
    styled = sum(t.lower in lexicon.STYLE_WORDS for t in content)
    return len(content) <= 8 and (last in lexicon.STYLE_WORDS or (last in lexicon.FRAMING_NOUNS and styled >= 1))


def _taggy(word: str, tag_words: frozenset[str]) -> bool:
    return (word in lexicon.STYLE_WORDS or word in tag_words or word[0].isdigit()
            or word.endswith(("-style", "-styled", "-painted", "-like", "-inspired", "-shot", "-and-white")))


def _clauses(words: list[Token]):
    """(start, end) index ranges of the clauses, in order."""
    index = 0
    while index < len(words):
        end = index
        while end < len(words) and words[end].clause == words[index].clause:
            end += 1
        yield index, end
        index = end


def _subject(text: str, words: list[Token], tag_words: frozenset[str]) -> list[tuple[int, int]]:
    """The subject's (first, last) word indices; when the first noun phrase is a verbless setting ("A
    bustling spice market: merchants call out"), the next one with a verb in its sentence too."""
    filler = _filler_positions(text)
    found: list[tuple[int, int]] = []
    for count, (index, end) in enumerate(_clauses(words)):
        if count >= 14:
            break
        clause = words[index:end]
        if found:
            if clause[0].sentence != words[found[0][0]].sentence:
                break
        if all(t.aside for t in clause):
            continue
        has_verb = any(is_verb(words, k) for k in range(index, end))
        if _is_tag_clause(clause, words, tag_words, index) or (clause[0].lower in PREPOSITIONS and not has_verb and end < len(words)):
            continue
        if not has_verb and len(clause) <= 2 and end < len(words) and words[end].sentence == clause[0].sentence \
                and words[end].lower not in lexicon.DETERMINERS:
            continue  # "A huge, enormous, giant ancient dragon": the adjectives before the noun
        start = _skip_lead(words, index, end, filler, tag_words)
        phrase = _noun_phrase(words, start, end)
        if phrase is None and start < end and words[start].lower in lexicon.VERB_FORMS:
            # A participle first ('"Happy Birthday" written in icing on a chocolate cake'): the thing it is on.
            places = [k for k in range(start + 1, end) if words[k].lower in PREPOSITIONS]
            phrase = _noun_phrase(words, places[-1] + 1, end) if places else None
        if phrase is None:
            continue
        if found:
            if has_verb:
                found.append(phrase)
                break
            continue
        found.append(phrase)
        if has_verb or end >= len(words) or words[end].sentence != clause[0].sentence:
            break
    return found


def _skip_lead(words: list[Token], start: int, end: int, filler: set[int], tag_words: frozenset[str]) -> int:
    """Skip politeness and framing at the start of the subject clause: "Please generate a video of",
    "The video opens on", "Close-up of", "There is"."""
    p = start
    while p < end and (words[p].start in filler or words[p].lower in lexicon.DETERMINERS):
        p += 1
    if p + 1 < end and words[p].lower in lexicon.FRAMING_NOUNS and words[p + 1].lower in lexicon.FRAMING_VERBS:
        p += 2
        while p < end and words[p].lower in ("on", "with", "of", "to", "as", "by", "in"):
            p += 1
    elif p + 1 < end and words[p].lower in ("there", "we", "you") and words[p + 1].lower in ("is", "are", "see", "can", "was", "were"):
        p += 2 + (words[p + 2].lower == "see" if p + 2 < end else 0)
    for k in range(p, min(end, p + 7)):
        if words[k].lower in _SETTING_PREPOSITIONS and k > p:
            before = words[k - 1].lower
            framing = before in lexicon.FRAMING_NOUNS or before in tag_words or before in lexicon.STYLE_WORDS or before in (
                "portrait", "view", "close-up", "closeup", "timelapse", "time-lapse", "hyperlapse", "montage", "photo")
            if framing and (words[k].lower == "of" or all(_taggy(w.lower, tag_words) for w in words[p:k])):
                return k + 1
            break
    return p


def _noun_phrase(words: list[Token], start: int, end: int) -> tuple[int, int] | None:
    """(first, last) word indices of the noun phrase at `start`: modifiers up to the head noun, which is
    the word before a preposition, a verb, a relative or a conjunction ("Two anthropomorphic cats | in")."""
    first = last = None
    i = start
    while i < end and (last is None or last - first < 6):
        word = words[i].lower
        if first is not None and words[i].clause != words[first].clause:
            break
        if first is None and (word in lexicon.DETERMINERS or word in ("of",)):
            i += 1
            continue
        if word in PREPOSITIONS:
            if word == "of" and last is not None and words[last].lower in lexicon.QUANTITY_NOUNS:
                i += 1
                while i < end and words[i].lower in lexicon.DETERMINERS:
                    i += 1
                continue
            break
        if word in _HEAD_STOPS or (word in STOPWORDS and word not in lexicon.DETERMINERS) or word in lexicon.AUXILIARIES:
            if first is None:
                return None
            break
        if first is not None and is_verb(words, i):
            break
        if first is None and is_verb(words, i) and not word.endswith(("ing", "ed")):
            return None  # the clause starts with a verb: no subject here
        if first is None:
            first = i
        last = i
        i += 1
    return (first, last) if first is not None else None


def _action(words: list[Token], after: int) -> tuple[int, int] | None:
    """The main verb after the subject, in the subject's sentence, with its particles; a finite verb is
    preferred to a participle ("A woman wearing a red dress dances": "dances")."""
    sentence = words[after].sentence
    participle = None
    for i in range(after + 1, len(words)):
        if words[i].sentence != sentence:
            break
        word = words[i].lower
        if word in lexicon.AUXILIARIES or not is_verb(words, i):
            continue
        previous = _previous(words, i)
        finite = not word.endswith("ing") or (previous is not None and previous.lower in lexicon.AUXILIARIES)
        if finite:
            return i, _particles(words, i)
        if participle is None:
            participle = i
    return (participle, _particles(words, participle)) if participle is not None else None


def _object(words: list[Token], verb_end: int) -> int:
    """The end of a short direct object after the verb ("holds a folder", "fills the screen"): a noun
    phrase of up to three words right after it; the verb itself when none follows."""
    nxt = _next(words, verb_end)
    if nxt is None or nxt.lower in PREPOSITIONS or _ADVERB.match(nxt.lower):
        return verb_end
    found = _noun_phrase(words, verb_end + 1, len(words))
    clause = words[verb_end].clause
    if found is None or words[found[0]].clause != clause or words[found[1]].clause != clause or found[1] - found[0] > 2:
        return verb_end
    return found[1]


def _particles(words: list[Token], i: int) -> int:
    last = i
    while last - i < 2:
        nxt = _next(words, last)
        if nxt is None or nxt.lower not in lexicon.PARTICLES:
            break
        after = _next(words, last + 1)
        if after is not None and not (after.lower in STOPWORDS or _ADVERB.match(after.lower)):
            break  # a preposition with its object ("runs through deep snow"), not a particle
        last += 1
    return last


def _camera_moves(words: list[Token]) -> list[Role]:
    """"camera slowly pushes in", "drone moves slowly forward", and in a sentence about the camera the
    further moves ("and then tilts down")."""
    roles = []
    camera_sentences = set()
    for i, token in enumerate(words):
        if token.lower not in ("camera", "drone", "cameras", "pov"):
            continue
        j, verb = i, None
        while j - i < 5:
            nxt = _next(words, j)
            if nxt is None:
                break
            j += 1
            if verb is None and (nxt.lower in lexicon.CAMERA_MOVE_VERBS or is_verb(words, j)) and nxt.lower not in lexicon.AUXILIARIES:
                verb = j
                break
            if not (_ADVERB.match(nxt.lower) or nxt.lower in _LINKS or nxt.lower in lexicon.AUXILIARIES):
                break
        if verb is None:
            continue
        last = _adverbs_and_particles(words, verb)
        roles.append(Role("camera", token.start, words[last].end))
        camera_sentences.add(token.sentence)
    for i, token in enumerate(words):
        if token.sentence in camera_sentences and token.lower in lexicon.CAMERA_MOVE_VERBS and is_verb(words, i):
            roles.append(Role("camera", token.start, words[_adverbs_and_particles(words, i)].end))
    return roles


def _adverbs_and_particles(words: list[Token], i: int) -> int:
    last = i
    while last - i < 3:
        nxt = _next(words, last)
        if nxt is None or not (nxt.lower in lexicon.PARTICLES or _ADVERB.match(nxt.lower)):
            break
        after = _next(words, last + 1)
        if nxt.lower in lexicon.PARTICLES and after is not None and after.lower in lexicon.DETERMINERS:
            break
        last += 1
    return last
