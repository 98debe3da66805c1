import sys
import tempfile
from pathlib import Path

import pytest

from wltest.comfy import SKIP_REASON, ComfyServer, comfyui_path

_COMFY = comfyui_path()
if _COMFY is not None:
    # Node modules then see the real folder_paths / comfy.* / server modules, as inside ComfyUI.
    # ComfyUI goes first: its top-level `nodes` module must win over this pack's `nodes/` folder.
    sys.path.insert(0, str(_COMFY))
    try:
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
    except Exception:  # ComfyUI's requirements missing from this Python: the in-process view stays plain
        pass


@pytest.fixture(scope="session")
def pack():
    """This pack imported the way ComfyUI imports a custom-node folder."""
    from wltest.pack import load_pack

    return load_pack()


@pytest.fixture(scope="session")
def comfy():
    """A real ComfyUI with this pack installed, started once per test session."""
    if _COMFY is None:
        pytest.skip(SKIP_REASON)
    base = Path(tempfile.mkdtemp(prefix="wanlean-comfy-"))
    server = ComfyServer(_COMFY, base)
    server.start()
    try:
        assert not server.pack_import_failed(), f"ComfyUI could not import the pack:\n{server.log()[-4000:]}"
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spiece_bytes():
    from wltest.tiny import train_spiece

    return train_spiece()


@pytest.fixture(scope="module")
def sp(spiece_bytes):
    """The tiny tokenizer as plain sentencepiece: the reference every exact count is checked against."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=spiece_bytes)


@pytest.fixture()
def encoder_file(tmp_path, spiece_bytes):
    """A tiny ComfyUI-style umT5 text-encoder file holding the tiny tokenizer as `spiece_model`."""
    from wltest.tiny import write_text_encoder_file

    return write_text_encoder_file(tmp_path / "umt5_tiny.safetensors", spiece_bytes)


@pytest.fixture()
def tok(encoder_file):
    from wanlean import tokens

    return tokens.load_tokenizer(encoder_file)
