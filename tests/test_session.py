"""WanSession and the diffusers-folder loader (tiny folders built in code)."""

import json
import shutil

import pytest
from wltest.tiny_wan import tiny_folder

from wanlean.video.loaders.diffusers_folder import load_diffusers_folder, read_model_index
from wanlean.errors import WanLeanError
from wanlean.video.session import OFFICIAL, LazyTextEncoder, TextEncoderSource, WanSession


def test_a14b_folder_loads_as_two_expert_session():
    session = load_diffusers_folder(str(tiny_folder("A14B")), device="cpu")
    session.check()
    assert session.model_type == "A14B"
    assert session.transformer is not session.transformer_2 and session.transformer_2 is not None
    assert session.boundary_ratio == 0.875 and not session.expand_timesteps
    assert session.size_multiple == 16 and session.fps == 16 and session.latent_channels == 16
    assert str(session.dtype) == "torch.float32"  # fp32 on the CPU by default
    assert isinstance(session.text_encoder, TextEncoderSource)
    assert not session.text_encoder.loaded  # lazy: nothing loaded until a prompt needs it


def test_ti2v_folder_loads_with_expand_timesteps_and_48_channels():
    session = load_diffusers_folder(str(tiny_folder("TI2V-5B")), device="cpu")
    session.check()
    assert session.model_type == "TI2V-5B" and session.transformer_2 is None and session.boundary_ratio is None
    assert session.expand_timesteps and session.size_multiple == 32 and session.fps == 24
    assert session.vae.config.z_dim == 48 and session.latent_channels == 48


def test_official_defaults():
    assert OFFICIAL["A14B"].steps == 40 and OFFICIAL["A14B"].shift == 12.0
    assert (OFFICIAL["A14B"].cfg_high, OFFICIAL["A14B"].cfg_low) == (4.0, 3.0)
    assert (OFFICIAL["A14B"].width, OFFICIAL["A14B"].height, OFFICIAL["A14B"].frames) == (1280, 720, 81)
    assert (OFFICIAL["TI2V-5B"].steps, OFFICIAL["TI2V-5B"].shift, OFFICIAL["TI2V-5B"].cfg_high) == (50, 5.0, 5.0)
    assert (OFFICIAL["TI2V-5B"].width, OFFICIAL["TI2V-5B"].height, OFFICIAL["TI2V-5B"].frames) == (1280, 704, 121)


def test_wan21_folder_is_refused_with_a_message():
    with pytest.raises(WanLeanError, match="Wan2.1"):
        read_model_index(str(tiny_folder("Wan2.1")))


def test_folder_without_model_index_is_refused(tmp_path):
    (tmp_path / "transformer").mkdir()
    with pytest.raises(WanLeanError, match="model_index.json"):
        load_diffusers_folder(str(tmp_path))
    with pytest.raises(WanLeanError, match="not a folder"):
        load_diffusers_folder(str(tmp_path / "nope"))


def test_other_pipeline_class_and_incomplete_folder_are_refused(tmp_path):
    folder = tmp_path / "i2v"
    shutil.copytree(tiny_folder("A14B"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps(dict(index, _class_name="WanImageToVideoPipeline")))
    with pytest.raises(WanLeanError, match="WanImageToVideoPipeline"):
        read_model_index(str(folder))
    (folder / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(folder / "transformer_2")
    with pytest.raises(WanLeanError, match="transformer_2"):
        read_model_index(str(folder))


def test_session_of_another_model_type_is_refused():
    session = load_diffusers_folder(str(tiny_folder("A14B")), device="cpu")
    session.model_type = "flux"
    with pytest.raises(WanLeanError, match="model type 'flux'"):
        session.check()


def test_lazy_text_encoder_loads_once():
    loads = []
    source = LazyTextEncoder("id", lambda text: [5, 1], lambda: loads.append(1) or "encoder")
    assert not source.loaded and source.token_ids("x") == [5, 1]
    assert source.encoder() == "encoder" and source.encoder() == "encoder" and loads == [1] and source.loaded


def test_bad_dtype_device_and_memory_mode():
    folder = str(tiny_folder("A14B"))
    with pytest.raises(WanLeanError, match="dtype"):
        load_diffusers_folder(folder, dtype="int8", device="cpu")
    with pytest.raises(WanLeanError, match="memory_mode"):
        load_diffusers_folder(folder, memory_mode="swap")


def test_wan_session_is_a_plain_dataclass():
    assert {"model_type", "transformer", "transformer_2", "vae", "text_encoder", "boundary_ratio", "expand_timesteps",
            "dtype", "device", "memory_mode", "source", "extras", "speed"} == set(WanSession.__dataclass_fields__)


def test_loading_without_accelerate_gives_the_same_model(monkeypatch):
    """ComfyUI's environment has no accelerate; diffusers cannot load a Wan transformer without it."""
    import torch

    from wanlean.video.loaders import diffusers_folder

    folder = str(tiny_folder("A14B"))
    for dtype in ("fp32", "bf16"):
        expected = load_diffusers_folder(folder, device="cpu", dtype=dtype)  # diffusers' from_pretrained
        with monkeypatch.context() as patch:
            patch.setattr(diffusers_folder, "_accelerate_available", lambda: False)
            fallback = load_diffusers_folder(folder, device="cpu", dtype=dtype)
        for ours, theirs in ((fallback.transformer, expected.transformer), (fallback.transformer_2, expected.transformer_2)):
            ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
            assert ours_state.keys() == theirs_state.keys()
            for key, tensor in theirs_state.items():
                assert ours_state[key].dtype == tensor.dtype and torch.equal(ours_state[key], tensor), key
            assert ours.rope.freqs_cos.dtype == theirs.rope.freqs_cos.dtype
            assert torch.equal(ours.rope.freqs_cos, theirs.rope.freqs_cos) and torch.equal(ours.rope.freqs_sin, theirs.rope.freqs_sin)


@pytest.mark.parametrize("kind", ["A14B", "TI2V-5B"])
def test_loading_logs_nothing_about_accelerate(kind, caplog, capfd):
    """The README says loading needs no accelerate; diffusers must not log that it 'cannot initialize model
    with low cpu memory usage because accelerate was not found' (the encoder is loaded too)."""
    import logging

    with caplog.at_level(logging.INFO):
        session = load_diffusers_folder(str(tiny_folder(kind)), device="cpu")
        session.text_encoder.encoder()
    logged = caplog.text + "".join(capfd.readouterr())
    assert "low cpu memory usage" not in logged and "accelerate" not in logged, logged
