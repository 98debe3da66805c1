"""Truncation keeps a weight group `(…:1.2)`, a `<lora:…>` tag and a quoted span whole or drops it whole,
never splicing the head of one into the tail of another (issue 10, item 9)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wanlean import tokens
from wanlean.prompt import protect, truncate

ESTIMATE = tokens.load_tokenizer(None)


def atom_texts(text):
    return [text[a:b] for a, b in protect.atoms(text)]


@pytest.fixture(scope="module")
def exact(spiece_bytes):
    return tokens.SentencePieceTokenizer(spiece_bytes, "tiny test model")


def test_the_issue_example_never_splices_two_weight_groups():
    text = "(red car number 0 drives fast:1.0) (red car fast:1.5)"
    for budget in range(2, tokens.load_tokenizer(None).count(text) + 1):
        result = truncate.truncate(text, budget, tokenizer=ESTIMATE)
        assert result.tokens_after <= budget
        assert set(atom_texts(result.text)) <= set(atom_texts(text)), (budget, result.text)
        assert result.text.count("(") == result.text.count(")"), (budget, result.text)


def test_atoms_are_the_weight_groups_tags_and_quotes():
    text = 'a (red car:1.2) <lora:wan_fast:0.8> says "STOP HERE" and ((nested:1.1) group:0.9) end'
    assert atom_texts(text) == ["(red car:1.2)", "<lora:wan_fast:0.8>", '"STOP HERE"', "((nested:1.1) group:0.9)"]


def test_a_long_atom_in_the_middle_is_dropped_whole(exact):
    head = "a red fox runs through deep snow at dawn, "
    middle = "(" + " ".join(f"word{i}" for i in range(60)) + ":1.3) "
    tail = "cinematic, the camera pans left slowly"
    for tokenizer in (ESTIMATE, exact):
        result = truncate.truncate(head + middle + tail, 30, tokenizer=tokenizer)
        kept = [w for w in result.text.split() if "word" in w]
        assert result.changed and kept in ([], middle.split()), result.text


_WORD = st.sampled_from("a red car fox runs fast slowly snow camera pans 狐狸 雪地 奔跑 镜头".split())
_PLAIN = st.lists(_WORD, min_size=1, max_size=6).map(" ".join)
_WEIGHT = st.tuples(_PLAIN, st.sampled_from(["0.5", "1.0", "1.2", "1.5"])).map(lambda p: f"({p[0]}:{p[1]})")
_LORA = st.tuples(st.sampled_from(["wan_fast", "lightx2v", "style"]), st.sampled_from(["0.5", "1"])).map(lambda p: f"<lora:{p[0]}:{p[1]}>")
_QUOTED = _PLAIN.map(lambda p: f'"{p}"')
_PIECE = st.one_of(_PLAIN, _WEIGHT, _LORA, _QUOTED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_PIECE, min_size=2, max_size=14), joiner=st.sampled_from([" ", ", ", "，"]),
       budget=st.integers(min_value=2, max_value=40), tail=st.sampled_from([-1, 0, 5]), use_exact=st.booleans())
def test_property_no_atom_is_ever_cut_or_spliced(exact, pieces, joiner, budget, tail, use_exact):
    text = joiner.join(pieces)
    tokenizer = exact if use_exact else ESTIMATE
    if tail >= budget:
        tail = -1
    result = truncate.truncate(text, budget, tail, tokenizer)
    assert result.tokens_after <= budget
    kept = atom_texts(result.text)
    assert set(kept) <= set(atom_texts(text)), (text, result.text)
    for opening, closing in (("(", ")"), ("<", ">")):
        assert result.text.count(opening) == result.text.count(closing), (text, result.text)
    assert result.text.count('"') % 2 == 0, (text, result.text)
