"""wanlean.tokens: exact umT5 counts from a text-encoder file or a tokenizer folder, the labelled estimate,
split_at, the runtime report, and every kind of bad input."""

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wanlean import safetensors_header, tokens
from wanlean.errors import WanLeanError
from wltest.tiny import CORPUS, write_text_encoder_file

ENGLISH = "a red fox runs through deep snow at dawn, the camera tracks it from a low angle"
CHINESE = "一只红色的狐狸在雪地里奔跑，镜头从低角度跟随"
MIXED = "mixed 中文 and English: 小猫 sits on a wooden table, 暖色调, cinematic"
PROMPTS = [ENGLISH, CHINESE, MIXED, "(golden hour:1.2) sunset over the ocean", "  leading and trailing  ", "x"]


# --- exact counts from a ComfyUI text-encoder file ---------------------------------------------------


def test_tiny_tokenizer_follows_umt5_conventions(sp):
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)


def test_counts_equal_sentencepiece_pieces_plus_eos(tok, sp):
    assert tok.exact and "umt5_tiny.safetensors" in tok.label and tok.source == "umt5_tiny.safetensors"
    assert len(tok) == sp.get_piece_size()
    assert (tok.eos_id, tok.pad_id) == (1, 0)
    for prompt in PROMPTS + CORPUS:
        assert tok.ids(prompt) == sp.encode(prompt)
        assert tok.count(prompt) == len(sp.encode(prompt)) + 1, prompt
    # the three languages really tokenize differently (the check is not vacuous)
    assert len({tok.count(ENGLISH), tok.count(CHINESE), tok.count(MIXED)}) == 3


def test_empty_text_is_just_eos(tok):
    assert tok.count("") == 1
    assert tokens.load_tokenizer("estimate").count("") == 1


def test_only_the_tokenizer_tensor_is_read(tmp_path, spiece_bytes, monkeypatch):
    """A 6.7 GB file must cost kilobytes: header + the spiece_model bytes, never the weights."""
    path = write_text_encoder_file(tmp_path / "padded.safetensors", spiece_bytes, extra_mb=8)
    assert path.stat().st_size > 8 * 1024 * 1024
    read_bytes = []

    class CountingFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, n=-1):
            data = self.f.read(n)
            read_bytes.append(len(data))
            return data

        def seek(self, *args):
            return self.f.seek(*args)

    monkeypatch.setattr(safetensors_header, "open", lambda p, mode="r": CountingFile(open(p, mode)), raising=False)
    tokenizer = tokens.load_tokenizer(path)
    assert tokenizer.count(ENGLISH) > 1
    assert sum(read_bytes) < len(spiece_bytes) + 64 * 1024


def test_cache_is_keyed_on_path_size_and_mtime(tmp_path, spiece_bytes):
    path = write_text_encoder_file(tmp_path / "a.safetensors", spiece_bytes)
    first = tokens.load_tokenizer(path)
    assert tokens.load_tokenizer(str(path)) is first
    identity = tokens.file_identity(path)
    # Replace the file with another tokenizer under the same name: it must be read again.
    from wltest.tiny import train_spiece

    other = train_spiece(vocab_size=120, corpus=["only english words here, nothing else at all"] * 3)
    write_text_encoder_file(path, other)
    os.utime(path, ns=(1, 1))
    second = tokens.load_tokenizer(path)
    assert second is not first and len(second) != len(first)
    assert tokens.file_identity(path) != identity


# --- Hugging Face tokenizer folders ------------------------------------------------------------------


def test_folder_with_spiece_model(tmp_path, spiece_bytes, sp):
    folder = tmp_path / "umt5_tokenizer"
    folder.mkdir()
    (folder / "spiece.model").write_bytes(spiece_bytes)
    tokenizer = tokens.load_tokenizer(folder)
    # Its counts are exact for its own vocabulary, but that vocabulary is not umT5's: it is named, not "exact".
    assert not tokenizer.exact and tokenizer.label.startswith("tokenizer umt5_tokenizer (not umT5")
    assert "exact" not in tokenizer.label
    assert [tokenizer.count(p) for p in PROMPTS] == [len(sp.encode(p)) + 1 for p in PROMPTS]


def test_a_folder_is_exact_only_with_umt5s_vocabulary(tmp_path, spiece_bytes, monkeypatch):
    folder = tmp_path / "umt5-xxl"
    folder.mkdir()
    (folder / "spiece.model").write_bytes(spiece_bytes)
    monkeypatch.setattr(tokens.SentencePieceTokenizer, "__len__", lambda self: 256_384)
    tokenizer = tokens.load_tokenizer(folder)
    assert tokenizer.exact and tokenizer.label.startswith("exact")


def _tokenizer_json(sp, path):
    """A tokenizer.json equivalent to the sentencepiece model, the way transformers' T5 converter builds it."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    backend = Tokenizer(models.Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=False))
    backend.normalizer = normalizers.Sequence([normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.save(str(path))


def test_folder_with_tokenizer_json(tmp_path, sp):
    pytest.importorskip("tokenizers")
    folder = tmp_path / "hf_umt5"
    folder.mkdir()
    _tokenizer_json(sp, folder / "tokenizer.json")
    tokenizer = tokens.load_tokenizer(folder)
    assert isinstance(tokenizer, tokens.JsonTokenizer) and "(not umT5" in tokenizer.label
    assert len(tokenizer) == sp.get_piece_size()
    for prompt in CORPUS:
        assert tokenizer.count(prompt) == len(sp.encode(prompt)) + 1, prompt
    assert tokenizer.count("a\ud800b") == tokenizer.count("a\ufffdb")


def test_folder_prefers_spiece_model_over_tokenizer_json(tmp_path, spiece_bytes):
    folder = tmp_path / "both"
    folder.mkdir()
    (folder / "spiece.model").write_bytes(spiece_bytes)
    (folder / "tokenizer.json").write_text("{not json")
    assert isinstance(tokens.load_tokenizer(folder), tokens.SentencePieceTokenizer)


# --- bad input: a clear message naming the file and the fix, never a crash ---------------------------


def _refused(source, *expected):
    with pytest.raises(WanLeanError) as info:
        tokens.load_tokenizer(source)
    message = str(info.value)
    assert message.startswith("tokenizer:"), message
    for part in expected:
        assert part in message, message
    return message


def test_missing_file(tmp_path):
    _refused(tmp_path / "nope.safetensors", "does not exist", "estimate")


def test_vae_picked_by_mistake(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "wan_2.1_vae.safetensors"
    save_file({"decoder.conv1.weight": np.zeros((4, 4), np.float16), "encoder.conv1.bias": np.zeros(4, np.float16)}, str(path))
    _refused(path, "wan_2.1_vae.safetensors", "no 'spiece_model'", "looks like a VAE", "estimate")


def test_t5_without_tokenizer(tmp_path):
    path = write_text_encoder_file(tmp_path / "t5_only.safetensors", None)
    _refused(path, "T5 encoder saved without its tokenizer")


def test_truncated_file(tmp_path, spiece_bytes):
    path = write_text_encoder_file(tmp_path / "cut.safetensors", spiece_bytes)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    _refused(path, "cut.safetensors", "truncated")


def test_corrupt_spiece_tensor(tmp_path, spiece_bytes):
    path = write_text_encoder_file(tmp_path / "bad_spiece.safetensors", os.urandom(len(spiece_bytes)))
    _refused(path, "bad_spiece.safetensors", "cannot be read", "estimate")


def test_empty_spiece_tensor(tmp_path):
    path = write_text_encoder_file(tmp_path / "empty_spiece.safetensors", b"")
    _refused(path, "cannot be read")


def test_spiece_tensor_of_the_wrong_kind(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "f16_spiece.safetensors"
    save_file({"spiece_model": np.zeros((3, 3), np.float16)}, str(path))
    _refused(path, "unexpected kind")


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("garbage.safetensors", b"\x00" * 3, "not a safetensors file"),
        ("empty.safetensors", b"", "not a safetensors file"),
        ("huge_header.safetensors", struct.pack("<Q", 2**40) + b"{}", "bad header length"),
        ("not_json.safetensors", struct.pack("<Q", 5) + b"\xff\xfe{}x", "unreadable header"),
        ("list_header.safetensors", struct.pack("<Q", 2) + b"[]", "unreadable header"),
        ("model.ckpt", b"\x80\x04pickle", "not a .safetensors file"),
        ("notes.txt", b"hello", "not a .safetensors file"),
    ],
)
def test_not_a_safetensors_file(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    _refused(path, expected)


def test_folder_without_a_tokenizer(tmp_path):
    _refused(tmp_path, "neither spiece.model nor tokenizer.json")


def test_corrupt_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": 5}')
    _refused(tmp_path, "tokenizer.json", "cannot be read")


def test_name_with_nul_byte():
    _refused("bad\x00name.safetensors", "does not exist")


# --- odd text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["🦊 fox 👨‍👩‍👧", "שלום עולם", "e\u0301 combining", "zero\u200bwidth", "nul\x00byte", "tab\tand\nnewline", "\ufeffbom"],
)
def test_odd_unicode_counts_exactly(tok, sp, text):
    assert tok.count(text) == len(sp.encode(text)) + 1


def test_lone_surrogates_are_counted_not_refused(tok, sp):
    for text, replaced in (("half an emoji \ud83e", "half an emoji \ufffd"), ("\udc00 low", "\ufffd low"), ("\ud800", "\ufffd")):
        assert tok.count(text) == len(sp.encode(replaced)) + 1
        assert tokens.load_tokenizer(None).count(text) >= 1
        kept, lost = tok.split_at((text + " red fox ") * 200, 20)
        assert kept and lost and "\ud800" not in kept + lost


def test_non_string_text_is_refused():
    with pytest.raises(WanLeanError, match="text must be a string"):
        tokens.clean_text(None)


def test_100k_characters(tok, sp):
    text = (MIXED + " ") * (100_000 // (len(MIXED) + 1) + 1)
    text = text[:100_000]
    count = tok.count(text)
    assert count == len(sp.encode(text)) + 1
    kept, lost = tok.split_at(text, tokens.WAN_TEXT_LEN)
    assert kept + lost == text
    assert tok.count(kept) <= tokens.WAN_TEXT_LEN
    assert tok.count(kept) >= tokens.WAN_TEXT_LEN - 12  # only the last partial word is given up


# --- split_at ------------------------------------------------------------------------------------------


JAPANESE = "ねこが まどべで ねむる、カメラは ゆっくり 動く"
KOREAN = "고양이가 창가에서 잠을 잔다, 카메라가 천천히 움직인다"


def _is_cjk(char: str) -> bool:
    """Scripts written without spaces between words, by Unicode character name (independent of tokens.py)."""
    import unicodedata

    return unicodedata.name(char, "").startswith(("CJK UNIFIED", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA", "HANGUL SYLLABLE"))


def _word_edge(text: str, position: int) -> bool:
    """A cut here splits no word and no CJK character: an end, the start of whitespace after text, or
    next to a CJK character."""
    if position in (0, len(text)):
        return True
    before, after = text[position - 1], text[position]
    return (after.isspace() and not before.isspace()) or _is_cjk(before) or _is_cjk(after)


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.sampled_from(ENGLISH.split() + list(CHINESE) + JAPANESE.split() + KOREAN.split() + ["🦊", "\n", "(golden:1.2)"]), max_size=60),
    max_tokens=st.integers(min_value=1, max_value=40),
    use_exact=st.booleans(),
)
def test_split_at_keeps_the_longest_fitting_prefix(spiece_bytes, words, max_tokens, use_exact):
    tokenizer = tokens.SentencePieceTokenizer(spiece_bytes, "tiny") if use_exact else tokens.load_tokenizer(None)
    text = " ".join(words)
    kept, lost = tokenizer.split_at(text, max_tokens)
    assert kept + lost == text
    assert tokenizer.count(kept) <= max_tokens
    assert _word_edge(text, len(kept))
    if lost:
        longer = next(p for p in range(len(kept) + 1, len(text) + 1) if _word_edge(text, p))
        assert tokenizer.count(text[:longer]) > max_tokens


def test_japanese_and_korean_are_counted_and_cut_as_cjk():
    estimate = tokens.load_tokenizer(None)
    assert estimate.count("ねこがねむる") == 5  # 6 kana × 0.75 = 4.5 → 4, + </s>
    assert estimate.count("カメラ") == 3  # 3 × 0.75 = 2.25 → 2, + </s>
    assert estimate.count("고양이가") == 4  # 4 Hangul syllables × 0.75 = 3, + </s>
    assert estimate.count("動く") == estimate.count("动く") == 3  # kanji and kana in one run
    assert tokens.boundaries("ねこが") == [0, 1, 2, 3]
    assert tokens.boundaries("カメラ 고양이") == [0, 1, 2, 3, 4, 5, 6, 7]
    kept, lost = estimate.split_at("ねこがまどべでねむる", 5)
    assert (kept, lost) == ("ねこがまどべ", "でねむる")  # 6 × 0.75 = 4.5 → 4, + </s> = 5
    kept, lost = estimate.split_at("고양이가창가에서", 4)
    assert (kept, lost) == ("고양이가", "창가에서")


def test_split_at_refuses_zero_tokens(tok):
    with pytest.raises(WanLeanError, match="max_tokens"):
        tok.split_at("a b c", 0)


def test_boundaries_are_exactly_the_word_edges():
    for text in ("red fox 一只狐狸 runs", "ねこが  まどべで runs", "고양이가 창가에서\n잠을", "close-up, 24mm"):
        assert tokens.boundaries(text) == [p for p in range(len(text) + 1) if _word_edge(text, p)], text


# --- the estimate ----------------------------------------------------------------------------------------


def test_estimate_is_labelled_and_counts_by_script():
    estimate = tokens.load_tokenizer("estimate")
    assert estimate is tokens.load_tokenizer(None) is tokens.load_tokenizer("")
    assert not estimate.exact and "estimate" in estimate.label
    assert estimate.count("red fox") == 3  # two words + </s>
    assert estimate.count("一只狐狸") == 4  # 4 × 0.75 + </s>
    assert estimate.count("extraordinarily") == 4  # 15 letters: 1 + 14 // 6, + </s>
    assert estimate.count("2024") == 3
    assert estimate.count("a, b.") == 5


# --- agreement with ComfyUI's own tokenizer (when a ComfyUI checkout is given) --------------------------


def test_counts_match_comfyui_umt5_tokenizer(spiece_bytes, tok):
    """ComfyUI's UMT5XXlTokenizer (what CLIPTextEncode uses for Wan) sees the same tokens, </s> included."""
    try:
        import torch
        from comfy.text_encoders.wan import UMT5XXlTokenizer
    except Exception as exc:  # no COMFYUI_PATH, or this Python lacks ComfyUI's requirements
        pytest.skip(f"ComfyUI's text encoders are not importable here ({exc.__class__.__name__}); set COMFYUI_PATH")
    comfy_tokenizer = UMT5XXlTokenizer(tokenizer_data={"spiece_model": torch.frombuffer(bytearray(spiece_bytes), dtype=torch.uint8)})
    for prompt in [ENGLISH, CHINESE, MIXED]:
        batches = comfy_tokenizer.tokenize_with_weights(prompt)
        ids = [t for batch in batches for t, *_ in batch if t != 0]  # drop the padding to 512
        assert ids[-1] == 1 and ids.count(1) == 1  # one </s>, at the end
        assert len(ids) == tok.count(prompt), prompt
        assert len([t for batch in batches for t, *_ in batch]) >= 512  # ComfyUI pads, never cuts
