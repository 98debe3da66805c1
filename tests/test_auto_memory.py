"""memory_mode 'auto': the fastest placement whose planned need fits the free device memory, with faked
free-memory figures for every branch (this machine has no GPU: a session that says 'cuda' is only
planned for, never run), and on the CPU 'gpu' with a report line saying why."""

import dataclasses
import importlib.util

import pytest
import torch
from wltest.tiny_wan import TEXT_DIM, TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, tiny_folder, tiny_request, tiny_vae

from wanlean.errors import WanLeanError
from wanlean.video import auto_memory, memory, request_memory
from wanlean.video.auto_memory import AutoChoice, choose
from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
from wanlean.video.sampler import generate
from wanlean.video.session import LazyTextEncoder, WanSession

HAS_ACCELERATE = importlib.util.find_spec("accelerate") is not None
SIZE = (64, 64, 17)


def request(**overrides):
    return tiny_request(**{"negative": "blurry", "steps": 2, **overrides})


def wide_expert(seed):
    """A tiny expert with a wide feed-forward, so that denoising (not decoding) is the larger peak, as in A14B."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=TEXT_DIM, freq_dim=32, ffn_dim=4096, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    ).eval()


@pytest.fixture(scope="module")
def planned_cuda_session():
    """An A14B-shaped session that says it runs on CUDA (only planned for here)."""
    def no_encoder():
        raise AssertionError("auto's decision must not load the text encoder")

    return WanSession(
        model_type="A14B", transformer=wide_expert(1), transformer_2=wide_expert(2), vae=tiny_vae(16),
        text_encoder=LazyTextEncoder("none", lambda text: [1], no_encoder), boundary_ratio=0.875,
        expand_timesteps=False, dtype=torch.float32, device=torch.device("cuda"), memory_mode="auto",
    )


def tensor_bytes(module):
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def needs(session):
    return {mode: auto_memory.planned_need(session, *SIZE, mode)[0] for mode in memory.PLACEMENT_MODES}


def test_planned_needs_count_the_weights_each_mode_keeps_on_the_gpu(planned_cuda_session):
    session = planned_cuda_session
    need = needs(session)
    expert, vae = tensor_bytes(session.transformer), tensor_bytes(session.vae)
    block = tensor_bytes(session.transformer.blocks[0])
    assert need["gpu"] - need["model_offload"] == tensor_bytes(session.transformer_2) + vae  # the other expert and the VAE
    assert need["model_offload"] - need["sequential_offload"] == expert - block  # one expert vs one block
    working = request_memory.phases(session, *SIZE, "gpu").denoise_working
    assert need["sequential_offload"] == block + 2 * working  # working memory planned at twice the lower estimate


@pytest.mark.parametrize("branch, expected", [("gpu", "gpu"), ("just below gpu", "model_offload"),
                                              ("just below model_offload", "sequential_offload")])
def test_the_fastest_mode_that_fits_is_chosen(planned_cuda_session, branch, expected):
    need = needs(planned_cuda_session)
    free = {"gpu": need["gpu"], "just below gpu": need["gpu"] - 1, "just below model_offload": need["model_offload"] - 1}[branch]
    choice = choose(planned_cuda_session, *SIZE, free=free)
    assert choice.mode == expected and choice.free == free
    assert choice.reason.startswith(f"auto: {expected} — ") and f"fits in {request_memory._gb(free)} free" in choice.reason
    if expected == "model_offload":
        expert = request_memory._gb(tensor_bytes(planned_cuda_session.transformer))
        assert f"one expert {expert} + working memory ≈ " in choice.reason
        assert f"gpu would need {request_memory._gb(need['gpu'])}" in choice.reason


def test_tight_memory_tries_sequential_offload_and_says_so(planned_cuda_session):
    lower = request_memory.estimate(planned_cuda_session, *SIZE, mode="sequential_offload").device
    assert lower < needs(planned_cuda_session)["sequential_offload"]
    choice = choose(planned_cuda_session, *SIZE, free=lower)
    assert choice.mode == "sequential_offload" and "tight" in choice.reason


def test_too_little_for_every_mode_names_what_would_fit(planned_cuda_session):
    lower = request_memory.estimate(planned_cuda_session, *SIZE, mode="sequential_offload").device
    with pytest.raises(WanLeanError) as caught:
        choose(planned_cuda_session, *SIZE, free=lower - 1)
    message = str(caught.value)
    assert message.startswith("width/height/frames: 64×64×17 needs at least ") and "of GPU memory" in message
    assert "The largest that fits: " in message and " frames at 64×64" in message
    assert "'auto' tried every mode" in message and "'sequential_offload'" in message


def test_unknown_free_memory_falls_back_to_model_offload(planned_cuda_session, monkeypatch):
    monkeypatch.setattr(request_memory, "device_available", lambda session: None)
    choice = choose(planned_cuda_session, *SIZE)
    assert choice.mode == "model_offload" and "could not be read" in choice.reason


def test_on_the_cpu_auto_is_gpu_and_the_report_says_why():
    session = load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="auto")
    expected = generate(load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="gpu"), request())
    result = generate(session, request())
    assert memory.mode(session) == "gpu" and session.memory_state.prepared_mode == "gpu"
    assert "memory auto → gpu" in result.report
    assert "auto: gpu — the device is the CPU, so everything stays resident in host memory" in result.report
    torch.testing.assert_close(result.frames, expected.frames, rtol=0, atol=0)


@pytest.mark.parametrize("sequence", [["model_offload", "gpu"],
                                      pytest.param(["sequential_offload", "gpu"], marks=pytest.mark.skipif(not HAS_ACCELERATE, reason="needs accelerate"))])
def test_each_run_is_placed_for_its_own_choice(monkeypatch, sequence):
    """The choice is made per run (the size decides); a later run placed otherwise gets its weights moved,
    and streaming hooks from an earlier sequential_offload are removed."""
    session = load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="auto")
    expected = generate(load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="gpu"), request())
    seen = []

    def fake_choose(s, width, height, frames, free=None):
        seen.append((width, height, frames))
        mode = sequence[len(seen) - 1]
        return AutoChoice(mode, f"auto: {mode} — faked for the test")

    monkeypatch.setattr(auto_memory, "choose", fake_choose)
    for mode in sequence:
        result = generate(session, request())
        assert session.memory_state.prepared_mode == mode and f"memory auto → {mode}" in result.report
        assert f"auto: {mode} — faked for the test" in result.report
        torch.testing.assert_close(result.frames, expected.frames, rtol=0, atol=1e-6)
    assert seen == [(TINY_WIDTH, TINY_HEIGHT, TINY_FRAMES)] * len(sequence)
    hooks = [getattr(m, "_diffusers_hook", None) for e in (session.transformer, session.transformer_2) for m in e.modules()]
    assert not any(h is not None and h.get_hook("group_offloading") is not None for h in hooks)


def test_explicit_modes_are_not_second_guessed(monkeypatch):
    monkeypatch.setattr(auto_memory, "choose", lambda *a, **k: pytest.fail("auto ran for an explicit mode"))
    session = load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="model_offload")
    result = generate(session, request())
    assert "memory model_offload" in result.report and "auto" not in result.report.split("\n")[0]


def test_loaders_accept_auto_and_refuse_unknown_modes():
    with pytest.raises(WanLeanError, match="memory_mode must be one of auto, gpu, model_offload, sequential_offload; got 'fast'"):
        load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="fast")
    assert dataclasses.replace(load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="auto")).memory_mode == "auto"


def test_under_auto_a_text_encoder_that_does_not_fit_runs_on_the_cpu(monkeypatch):
    """auto cannot plan for umT5 (loaded lazily, size unknown): when its turn comes and it does not fit in
    the GPU's free memory, it runs on the CPU and the report says so."""
    session = load_diffusers_folder(str(tiny_folder("A14B")), device="cpu", memory_mode="auto")
    encoder = session.text_encoder.encoder()
    cuda = dataclasses.replace(session, device=torch.device("cuda"))
    size = sum(t.numel() * t.element_size() for t in list(encoder.parameters()) + list(encoder.buffers()))
    monkeypatch.setattr(memory, "cuda_free", lambda device: int(size * 1.1))  # below weights × 1.2
    with memory.text_encoder_placed(cuda, encoder) as device:
        assert device == torch.device("cpu")
    assert cuda.memory_state.encoder_note.startswith("text encoder ran on the CPU: its ")
    monkeypatch.setattr(memory, "cuda_free", lambda device: int(size * 1.3))
    assert memory._encoder_fits(cuda, encoder)
    explicit = dataclasses.replace(session, device=torch.device("cuda"), memory_mode="model_offload")
    monkeypatch.setattr(memory, "_encoder_fits", lambda s, e: pytest.fail("an explicit mode is not second-guessed"))
    monkeypatch.setattr(memory, "activate", lambda s, m: None)
    monkeypatch.setattr(memory, "_move", lambda s, m, d: None)
    with memory.text_encoder_placed(explicit, encoder) as device:
        assert device == torch.device("cuda")
