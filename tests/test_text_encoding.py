"""Real-token umT5 encoding equals diffusers' padded `encode_prompt`, at a fraction of the cost."""

import pytest
import torch
from wltest.tiny import train_spiece
from wltest.tiny_wan import reference_pipeline, tiny_folder

from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
from wanlean.video.sampler import OFFICIAL_NEGATIVE
from wanlean.video.session import LazyTextEncoder
from wanlean.video.text_encoding import clean_prompt, encode_texts, padded_batch, truncate
from wanlean.tokens import WAN_TEXT_LEN

LONG_PROMPT = "a red fox runs through deep snow at dawn, the camera tracks it from a low angle. " * 40


@pytest.fixture(scope="module")
def pipe():
    return reference_pipeline("A14B")


@pytest.fixture()
def session():
    return load_diffusers_folder(str(tiny_folder("A14B")), device="cpu")


def count_forwards(module):
    """Record the input_ids shape of every forward of `module`."""
    shapes = []
    handle = module.register_forward_pre_hook(lambda mod, args, kwargs: shapes.append(tuple((args or (kwargs["input_ids"],))[0].shape)), with_kwargs=True)
    return shapes, handle


def test_tiny_tokenizer_is_the_spiece_model(pipe):
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=train_spiece())
    assert len(pipe.tokenizer) == processor.get_piece_size() == 176
    for text in ["a red fox runs through deep snow", "一只红色的狐狸在雪地里奔跑", "mixed 中文 and English: 小猫", OFFICIAL_NEGATIVE]:
        assert pipe.tokenizer(text).input_ids == processor.encode(text) + [processor.eos_id()]


@pytest.mark.parametrize(
    "prompt, negative",
    [
        ("a red fox runs through deep snow at dawn", OFFICIAL_NEGATIVE),
        ("一只红色的狐狸在雪地里奔跑，镜头从低角度跟随", ""),
        ("  close-up of an old man &amp; his   dog  ", "blurry"),
        (LONG_PROMPT, "static"),
    ],
)
def test_equals_diffusers_encode_prompt_with_prompt_and_negative_batched(pipe, session, prompt, negative):
    expected_prompt, expected_negative = pipe.encode_prompt(prompt, negative, max_sequence_length=WAN_TEXT_LEN, device="cpu")
    encoder = session.text_encoder.encoder()
    shapes, handle = count_forwards(encoder)
    try:
        encoded, stats = encode_texts(session.text_encoder, [prompt, negative])
    finally:
        handle.remove()
    embeds = padded_batch(encoded)
    assert embeds.shape == (2, WAN_TEXT_LEN, 32)
    torch.testing.assert_close(embeds[0:1], expected_prompt, rtol=0, atol=1e-5)
    torch.testing.assert_close(embeds[1:2], expected_negative, rtol=0, atol=1e-5)
    # One batched forward over the real tokens only: the longer text's length (never 512 unless cut).
    longest = max(item.kept_tokens for item in encoded)
    assert stats.encoder_forwards == 1 and shapes == [(2, longest)]
    assert (embeds[0, encoded[0].kept_tokens:] == 0).all()


def test_prompt_over_512_tokens_keeps_the_first_511_pieces_and_eos(session):
    ids = session.text_encoder.token_ids(clean_prompt(LONG_PROMPT))
    assert len(ids) > WAN_TEXT_LEN
    kept = truncate(ids)
    assert len(kept) == WAN_TEXT_LEN and kept[:-1] == ids[: WAN_TEXT_LEN - 1] and kept[-1] == 1
    [item], _ = encode_texts(session.text_encoder, [LONG_PROMPT])
    assert item.kept_tokens == WAN_TEXT_LEN and item.total_tokens == len(ids) and item.cut_tokens == len(ids) - WAN_TEXT_LEN


def test_same_text_twice_runs_once(session):
    shapes, handle = count_forwards(session.text_encoder.encoder())
    try:
        encoded, _ = encode_texts(session.text_encoder, ["same words", "same  words"])
    finally:
        handle.remove()
    assert shapes == [(1, encoded[0].kept_tokens)]
    assert encoded[0].rows is encoded[1].rows


def test_clean_prompt_matches_diffusers():
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    for text in ["  a  b\n\tc ", "x &amp;amp; y", "", "中文  空格", "&lt;b&gt;"]:
        assert clean_prompt(text) == prompt_clean(text)


def test_encoder_is_loaded_only_when_needed():
    loads = []

    class Encoder(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            class Out:
                last_hidden_state = torch.ones(input_ids.shape + (4,))

            return Out()

    source = LazyTextEncoder("id", lambda text: [7] * len(text.split()) + [1], lambda: loads.append(1) or Encoder())
    assert not source.loaded
    encoded, stats = encode_texts(source, ["one two", "three"])
    assert loads == [1] and stats.encoder_loaded_now and [e.kept_tokens for e in encoded] == [3, 2]
