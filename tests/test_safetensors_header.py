"""A safetensors header that does not match its data is refused when the header is read, naming the file
and the tensor: a shape × dtype size different from the tensor's byte range (was torch's "shape '[4096,
4096]' is invalid for input of size 65536", or safetensors' "invalid shape, data type, or offset for
tensor", naming neither)."""

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from wanlean.errors import WanLeanError
from wanlean.safetensors_header import expected_nbytes, read_header
from wanlean.tokens import load_tokenizer
from wanlean.video.loaders.comfy_files.detect import inspect_diffusion_model
from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
from wltest.comfy_formats import tiny_set, write_umt5_file
from wltest.tiny_wan import tiny_folder


def rewrite_header(source, target, tensor: str, **changes) -> Path:
    """A copy of `source` whose header entry for `tensor` has `changes` (shape, dtype); data untouched."""
    raw = Path(source).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    header[tensor].update(changes)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(target).write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length :])
    return Path(target)


def test_a_shape_bigger_than_the_data_names_the_file_and_the_tensor(tmp_path):
    source = tmp_path / "small.safetensors"
    save_file({"blocks.0.ffn.0.weight": torch.zeros(128, 256, dtype=torch.float16), "other": torch.zeros(3)}, str(source))
    damaged = rewrite_header(source, tmp_path / "damaged.safetensors", "blocks.0.ffn.0.weight", shape=[4096, 4096])
    with pytest.raises(WanLeanError) as caught:
        read_header(damaged, what="high_noise_model")
    message = str(caught.value)
    assert message.startswith("high_noise_model: 'damaged.safetensors' is damaged")
    assert "'blocks.0.ffn.0.weight'" in message and "[4096, 4096] in F16 (33554432 bytes)" in message
    assert "holds 65536 bytes" in message and "Download the file again" in message
    assert read_header(source).tensors["blocks.0.ffn.0.weight"].shape == (128, 256)  # the intact file passes


@pytest.mark.parametrize("changes", [{"shape": [128, 255]}, {"dtype": "F32"}, {"dtype": "F8_E4M3"}, {"shape": [128, 256, 2]}])
def test_any_size_mismatch_is_refused(tmp_path, changes):
    source = tmp_path / "small.safetensors"
    save_file({"w": torch.zeros(128, 256, dtype=torch.float16)}, str(source))
    with pytest.raises(WanLeanError, match=r"is damaged: its header gives tensor 'w'"):
        read_header(rewrite_header(source, tmp_path / "bad.safetensors", "w", **changes))


def test_sizes_by_dtype():
    from wanlean.safetensors_header import TensorInfo

    assert expected_nbytes(TensorInfo("BF16", (3, 5), 0, 30)) == 30
    assert expected_nbytes(TensorInfo("F8_E4M3", (7,), 0, 7)) == 7
    assert expected_nbytes(TensorInfo("F4", (3,), 0, 2)) == 2  # sub-byte dtypes round up
    assert expected_nbytes(TensorInfo("F32", (), 0, 4)) == 4  # a scalar
    assert expected_nbytes(TensorInfo("F16", (0, 9), 0, 0)) == 0
    assert expected_nbytes(TensorInfo("NEW_TYPE", (9,), 0, 1)) is None  # unknown: left to the reader


def test_every_tiny_model_file_passes():
    tiny = tiny_set()
    for path in (tiny.transformer("high"), tiny.transformer("high", "fp8_scaled"), tiny.vae("2.2"), tiny.umt5("fp8_scaled"), tiny.lora("high")):
        read_header(path)


def test_a_damaged_expert_file_is_named_by_the_loader(tmp_path):
    tiny = tiny_set()
    damaged = rewrite_header(tiny.transformer("high"), tmp_path / "wan2.2_t2v_high_noise_damaged.safetensors",
                             "blocks.0.ffn.0.weight", shape=[4096, 4096])
    with pytest.raises(WanLeanError, match=r"high_noise_model: 'wan2.2_t2v_high_noise_damaged.safetensors' is damaged: .*'blocks.0.ffn.0.weight'"):
        inspect_diffusion_model(str(damaged), "high_noise_model")


def test_a_damaged_tokenizer_tensor_is_named(tmp_path, spiece_bytes):
    tiny = tiny_set()
    source = write_umt5_file(tmp_path / "umt5.safetensors", tiny.text_encoder, spiece_bytes, "fp16")
    damaged = rewrite_header(source, tmp_path / "umt5_damaged.safetensors", "spiece_model", shape=[len(spiece_bytes) * 2])
    with pytest.raises(WanLeanError, match=r"tokenizer: 'umt5_damaged.safetensors' is damaged: .*'spiece_model'"):
        load_tokenizer(str(damaged))


def test_a_damaged_file_in_a_diffusers_folder_is_named(tmp_path):
    folder = tmp_path / "wan-tiny"
    shutil.copytree(tiny_folder("A14B"), folder)
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    first = next(iter(read_header(weights).tensors))
    rewrite_header(weights, weights, first, shape=[4096, 4096])
    with pytest.raises(WanLeanError, match=rf"folder: 'wan-tiny/vae': 'diffusion_pytorch_model.safetensors' is damaged: .*'{first}'"):
        load_diffusers_folder(str(folder), device="cpu")
