"""`words.rebuild` joins the kept units so that the result splits into exactly those units, never fusing
two of them into a new word ("single" + "'" + "aa" must not become "single'aa")."""

from hypothesis import given, settings
from hypothesis import strategies as st

from wanlean.prompt.words import rebuild, units

_PIECES = st.sampled_from(["a", "bb", "12", "'", "’", "-", ".", "/", ":", "%", "×", "+", ",", "猫", "(", ")", "x"])
_GAPS = st.sampled_from(["", "", " ", "  ", "\n"])


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(st.tuples(_PIECES, _GAPS), min_size=1, max_size=14), mask=st.lists(st.booleans(), min_size=14, max_size=14))
def test_rebuild_splits_into_exactly_the_kept_units(parts, mask):
    text = "".join(piece + gap for piece, gap in parts)
    items = units(text)
    keep = [mask[i % len(mask)] for i in range(len(items))]
    joined = rebuild(text, items, keep)
    assert [u.text for u in units(joined)] == [u.text for u, k in zip(items, keep) if k], (text, keep, joined)


def test_the_issue_example_gets_a_space():
    text = "single ' aa"
    items = units(text)
    assert [u.text for u in items] == ["single", "'", "aa"]
    assert rebuild(text, items, [True, True, True]) == text
    fused = "single'(x)aa"  # drop "(x)": "'" then meets "aa" unspaced, and "single'aa" would be one word
    items = units(fused)
    assert [u.text for u in items] == ["single", "'", "(", "x", ")", "aa"]
    keep = [u.text not in "(x)" for u in items]
    joined = rebuild(fused, items, keep)
    assert [u.text for u in units(joined)] == ["single", "'", "aa"], joined
