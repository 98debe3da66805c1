"""Bad input and damaged weights never become a silent wrong video: broken characters are replaced with a
note, and NaN from an expert or the VAE stops the run naming which part produced it."""

import pytest
import torch
from wltest.tiny_wan import tiny_request, tiny_session

from wanlean.errors import WanLeanError
from wanlean.video.sampler import generate, resolve_settings


session_for = tiny_session


request = tiny_request


@pytest.fixture(scope="module")
def a14b():
    return session_for("A14B")


def test_lone_surrogates_are_replaced_with_a_note_and_the_run_succeeds(a14b):
    broken = request(prompt="a red fox \ud83d runs", negative="blurry \udc00\udc01")
    settings = resolve_settings(a14b, broken)
    assert settings.prompt == "a red fox \ufffd runs" and settings.negative == "blurry \ufffd\ufffd"
    assert any(note.startswith("prompt: 1 broken character ") for note in settings.notes)
    assert any(note.startswith("negative: 2 broken characters ") for note in settings.notes)
    result = generate(a14b, request(prompt="a red fox \ud83d runs", steps=1))
    assert "note: prompt: 1 broken character" in result.report
    assert torch.isfinite(result.frames).all()


def test_clean_text_gives_the_same_video_as_the_replacement_character(a14b):
    with_surrogate = generate(a14b, request(prompt="a red fox \ud83d runs", steps=1)).latents
    replaced = generate(a14b, request(prompt="a red fox \ufffd runs", steps=1)).latents
    torch.testing.assert_close(with_surrogate, replaced, rtol=0, atol=0)


def _poison(module):
    with torch.no_grad():
        next(p for p in module.parameters() if p.is_floating_point() and p.numel() > 1).fill_(float("nan"))


@pytest.mark.parametrize("expert, message", [
    ("transformer", r"the high-noise expert produced NaN or infinite values at step 1 of 4"),
    ("transformer_2", r"the low-noise expert produced NaN or infinite values at step \d of 4"),
])
def test_nan_from_an_expert_stops_the_run_naming_it(expert, message):
    session = session_for("A14B")
    _poison(getattr(session, expert))
    with pytest.raises(WanLeanError, match=message):
        generate(session, request())


def test_nan_from_the_single_transformer_names_the_transformer():
    session = session_for("TI2V-5B")
    _poison(session.transformer)
    with pytest.raises(WanLeanError, match="the transformer produced NaN"):
        generate(session, request(steps=2))


def test_nan_from_the_vae_stops_the_run():
    session = session_for("A14B")
    with torch.no_grad():
        session.vae.decoder.conv_in.weight.fill_(float("nan"))
    with pytest.raises(WanLeanError, match="the VAE produced NaN"):
        generate(session, request(steps=1))
