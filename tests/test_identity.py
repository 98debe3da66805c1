"""Weights identities (part of every result-cache key): a weight file's identity follows its path, size,
modification time and header; both loaders give their transformers one, from the transformer files only;
a LoRA extends it with its file and strength."""

import dataclasses
import os
import shutil

import pytest
import torch
from safetensors.torch import save_file
from wltest.comfy_formats import tiny_set
from wltest.tiny_wan import tiny_folder

from wanlean.video.loaders.comfy_files.load import load_comfy_files
from wanlean.video.loaders.comfy_files.lora import apply_loras
from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
from wanlean.video.loaders.identity import file_identity, with_lora


def test_a_file_identity_follows_path_size_time_and_header(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"blocks.0.a": torch.zeros(4)}, str(path))
    os.utime(path, ns=(10**18, 10**18))
    base = file_identity(str(path))
    assert file_identity(str(path)) == base
    os.utime(path, ns=(10**18 + 1, 10**18 + 1))
    assert file_identity(str(path)) != base
    # the same size and time, another tensor name of the same length: only the header hash tells them apart
    save_file({"blocks.0.b": torch.zeros(4)}, str(path))
    os.utime(path, ns=(10**18, 10**18))
    assert os.path.getsize(path) == int(base.split(":")[-3]) and file_identity(str(path)) != base
    copy = tmp_path / "copy.safetensors"
    shutil.copy2(path, copy)
    assert file_identity(str(copy)) != file_identity(str(path))


@pytest.fixture(scope="module")
def tiny():
    return tiny_set()


def load_files(tiny, **kw):
    return load_comfy_files(tiny.transformer("high"), tiny.transformer("low"), tiny.umt5(), tiny.vae("2.1"), dtype="fp32", device="cpu", **kw)


def test_single_files_name_their_experts_and_weight_storage(tiny):
    session = load_files(tiny)
    assert session.weights_identity == load_files(tiny).weights_identity
    assert os.path.realpath(tiny.transformer("low")) in session.weights_identity
    assert os.path.realpath(tiny.vae("2.1")) not in session.weights_identity  # the VAE runs again on a hit
    assert load_files(tiny, weight_storage="fp8").weights_identity != session.weights_identity


def test_a_diffusers_folder_names_its_transformer_files_only(tmp_path):
    folder = tmp_path / "wan"
    shutil.copytree(tiny_folder("A14B"), folder)
    base = load_diffusers_folder(str(folder), device="cpu").weights_identity
    text_encoder_file = next((folder / "text_encoder").glob("*.safetensors"))
    os.utime(text_encoder_file, ns=(10**18, 10**18))
    assert load_diffusers_folder(str(folder), device="cpu").weights_identity == base
    low_noise_file = next((folder / "transformer_2").glob("*.safetensors"))
    os.utime(low_noise_file, ns=(10**18, 10**18))
    assert load_diffusers_folder(str(folder), device="cpu").weights_identity != base


def test_a_lora_extends_the_identity_with_its_file_expert_and_strength(tiny):
    session = load_files(tiny)
    lora = tiny.lora("high")
    full = apply_loras(session, (lora, 1.0), None).weights_identity
    half = apply_loras(session, (lora, 0.5), None).weights_identity
    other = apply_loras(session, (tiny.lora("high", seed=3), 1.0), None).weights_identity
    assert full.startswith(session.weights_identity) and len({session.weights_identity, full, half, other}) == 4
    assert apply_loras(session, (lora, 0.0), None).weights_identity == session.weights_identity
    assert with_lora("files x", "high", lora, 1.0) != with_lora("files x", "low", lora, 1.0)
    anonymous = dataclasses.replace(session, weights_identity="")
    assert apply_loras(anonymous, (lora, 1.0), None).weights_identity == ""
