"""Huge requests are refused before anything is allocated, with the largest size and the most frames that
would fit; torch's own out-of-memory errors (CUDA's and the CPU allocator's plain RuntimeError) still become
the pack's message. The estimate is a lower bound that passes the official sizes."""

import time
from types import SimpleNamespace

import pytest
import torch
from wltest.tiny_wan import tiny_request, tiny_session

from wanlean.errors import WanLeanError
from wanlean.video import memory, request_memory, sampler
from wanlean.video.sampler import generate

GB = 1024**3


session_for = tiny_session


def request(**overrides):
    return tiny_request(**{"steps": 2, **overrides})


@pytest.fixture()
def nothing_allocated(monkeypatch):
    """Fails the test if the run gets as far as drawing noise or encoding text."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the request was not refused before allocating")

    monkeypatch.setattr(sampler, "initial_noise", forbidden)
    monkeypatch.setattr(sampler, "encode_prompts", forbidden)


def test_a_request_bigger_than_free_memory_is_refused_naming_what_fits(monkeypatch, nothing_allocated):
    session = session_for()
    free = request_memory.estimate(session, 64, 48, 17).device
    monkeypatch.setattr(request_memory, "host_available", lambda: free)
    with pytest.raises(WanLeanError) as caught:
        generate(session, request(width=128, height=96, frames=17))
    message = str(caught.value)
    assert message.startswith("width/height/frames: 128×96×17 needs at least ")
    assert "of host (RAM) memory (latents " in message and "decoded video" in message
    assert "The largest that fits: 64×48 at 17 frames, or " in message
    most = int(message.split(", or ")[1].split(" frames at 128×96")[0])
    assert request_memory.estimate(session, 128, 96, most).device <= free < request_memory.estimate(session, 128, 96, most + 4).device
    assert not session.text_encoder.loaded


def test_the_suggested_size_is_the_largest_that_fits(monkeypatch):
    session = session_for()
    free = request_memory.estimate(session, 64, 48, 17).device + 1
    monkeypatch.setattr(request_memory, "host_available", lambda: free)
    request_memory.check_fits(session, 64, 48, 17)  # exactly what fits passes
    with pytest.raises(WanLeanError, match="The largest that fits: 64×48 at 17 frames"):
        request_memory.check_fits(session, 256, 192, 17)
    monkeypatch.setattr(request_memory, "host_available", lambda: 1024)
    with pytest.raises(WanLeanError, match="Not even the smallest size fits"):
        request_memory.check_fits(session, 64, 48, 17)


def test_8192x8192x10001_is_refused_at_once_without_allocating(nothing_allocated):
    session = session_for()
    started = time.perf_counter()
    with pytest.raises(WanLeanError, match=r"8192×8192×10001 needs at least [\d.]+ GB of host \(RAM\) memory") as caught:
        generate(session, request(width=8192, height=8192, frames=10001))
    assert time.perf_counter() - started < 2.0
    assert "The largest that fits: " in str(caught.value) and not session.text_encoder.loaded


def test_free_memory_figures(monkeypatch):
    assert request_memory.host_available() > 0
    monkeypatch.setitem(__import__("sys").modules, "psutil", None)  # without psutil: /proc/meminfo
    from_meminfo = request_memory.host_available()
    assert from_meminfo is not None and from_meminfo > 0


def _official_session(kind, device="cpu", dtype=torch.bfloat16):
    """The shapes of the real models (no weights): what `estimate` reads."""
    if kind == "A14B":
        config = SimpleNamespace(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, ffn_dim=13824)
        vae = (8, 4, 16, False, 16)
    else:
        config = SimpleNamespace(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, ffn_dim=14336)
        vae = (16, 4, 48, True, 32)
    spatial, temporal, channels, expand, multiple = vae
    return SimpleNamespace(transformer=SimpleNamespace(config=config), vae=SimpleNamespace(dtype=torch.float32),
                           vae_scale_spatial=spatial, vae_scale_temporal=temporal, latent_channels=channels,
                           expand_timesteps=expand, dtype=dtype, device=torch.device(device), size_multiple=multiple, memory_mode="gpu")


@pytest.mark.parametrize("kind, size, most_gb", [("A14B", (1280, 720, 81), 6), ("A14B", (832, 480, 81), 3), ("TI2V-5B", (1280, 704, 121), 6)])
def test_official_sizes_need_a_few_gigabytes_besides_the_weights(kind, size, most_gb):
    """The floor at the official sizes stays far below what the machines that run them have free besides
    the weights (an H200 running A14B in bf16 has ~70 GB left; a 24 GB GPU in sequential_offload ~20 GB)."""
    need = request_memory.estimate(_official_session(kind), *size)
    assert 1 * GB < need.device < most_gb * GB, need


def test_the_cpu_allocators_error_becomes_the_packs_message(monkeypatch):
    session = session_for()
    released = []
    monkeypatch.setattr(memory, "release", lambda session=None, collect=True: released.append(collect))

    def allocate_a_petabyte(module, args, kwargs):
        torch.empty(2**50, dtype=torch.uint8)  # torch's own "DefaultCPUAllocator: can't allocate memory"

    handle = session.transformer.register_forward_pre_hook(allocate_a_petabyte, with_kwargs=True)
    try:
        with pytest.raises(WanLeanError) as caught:
            generate(session, request())
    finally:
        handle.remove()
    message = str(caught.value)
    assert message.startswith("out of host memory (RAM) at 32×32×5 (DefaultCPUAllocator: can't allocate memory")
    assert "fewer frames or a smaller size" in message and "enforce fail" not in message
    assert released == [True] and caught.value.__context__ is None


def test_other_runtime_errors_are_not_called_out_of_memory():
    assert request_memory.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert request_memory.is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: not enough memory"))
    assert not request_memory.is_out_of_memory(RuntimeError("shape '[4096, 4096]' is invalid for input of size 65536"))
    assert not request_memory.is_out_of_memory(ValueError("out of memory"))
