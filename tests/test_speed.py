"""Speed levers (wanlean/video/speed.py) on the tiny model: each lever that runs on the CPU gives the baseline's
frames, the step cache skips what the report says it skipped, options a device cannot run are refused naming
the requirement, and a lever that fails during the run is switched off with a report line instead of failing it."""

import pytest
import torch
from wltest.tiny_wan import tiny_request, tiny_session

from wanlean.errors import WanLeanError
from wanlean.video import speed
from wanlean.video.sampler import generate
from wanlean.video.speed import SpeedOptions, with_speed

STEPS = 4


@pytest.fixture(scope="module")
def a14b():
    return tiny_session("A14B")


@pytest.fixture(scope="module")
def baseline(a14b):
    return generate(a14b, tiny_request(steps=STEPS))


def run(session, cfg_batch="auto", **options):
    return generate(with_speed(session, SpeedOptions(**options)), tiny_request(steps=STEPS, cfg_batch=cfg_batch))


def experts(session):
    return [session.transformer, session.transformer_2]


def attention_backends(session):
    return [module.processor._attention_backend for expert in experts(session) for module in expert.modules()
            if hasattr(getattr(module, "processor", None), "_attention_backend")]


def assert_nothing_left_on(session):
    """After a run the experts are as loaded: no backend pinned, no cache hooks, no compiled blocks attached."""
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _AttentionBackendRegistry,
    )

    assert set(attention_backends(session)) == {None}
    assert _AttentionBackendRegistry._active_backend == AttentionBackendName.NATIVE
    for expert in experts(session):
        assert not expert.is_cache_enabled
        assert all(block._compiled_call_impl is None for block in expert.blocks)
        assert all("_wanlean_fp8_granularity" not in module.__dict__ for module in expert.modules())


# --- the copy -------------------------------------------------------------------------------------------
def test_a_session_runs_the_baseline_and_the_speed_copy_shares_its_weights(a14b):
    assert a14b.speed == speed.BASELINE and speed.BASELINE.is_baseline
    fast = with_speed(a14b, SpeedOptions(step_cache="first_block"))
    assert fast.transformer is a14b.transformer and fast.transformer_2 is a14b.transformer_2
    assert fast.memory_state is a14b.memory_state  # the same modules: the same placement
    assert fast.speed.step_cache == "first_block" and a14b.speed == speed.BASELINE


# --- lossless levers: equal frames ----------------------------------------------------------------------
@pytest.mark.parametrize("attention", ["sdpa", "auto"])
def test_attention_on_the_cpu_gives_the_baselines_frames_and_is_restored(a14b, baseline, attention):
    result = run(a14b, attention=attention)
    assert torch.equal(result.frames, baseline.frames)
    if attention == "auto":
        assert "attention: auto → sdpa (cpu: PyTorch sdpa is the only kernel), diffusers backend 'native'" in result.report
    else:  # sdpa is the baseline: nothing is put on the experts, nothing reported
        assert "attention" not in result.report
    assert_nothing_left_on(a14b)


def test_compile_blocks_gives_the_baselines_frames_and_is_reused(a14b, baseline, monkeypatch):
    """The wiring, with torch.compile's eager backend (seconds); the inductor test below is marked slow."""
    monkeypatch.setattr(speed, "COMPILE_KWARGS", {"backend": "eager"})
    for block in [b for expert in experts(a14b) for b in expert.blocks]:
        block.__dict__.pop("_wanlean_compiled_call", None)
    first = run(a14b, compile="blocks")
    assert torch.equal(first.frames, baseline.frames)
    assert "compile: blocks compiled in this run" in first.report
    assert_nothing_left_on(a14b)
    assert torch.equal(generate(a14b, tiny_request(steps=STEPS)).frames, baseline.frames)  # uncompiled in between
    again = run(a14b, compile="blocks")
    assert torch.equal(again.frames, baseline.frames)
    assert "compile: compiled blocks reused" in again.report
    # ComfyUI's cancel check puts a hook on every block in each run: the compiled blocks are still reused
    hooked = generate(with_speed(a14b, SpeedOptions(compile="blocks")), tiny_request(steps=STEPS), cancel_check=lambda: None)
    assert torch.equal(hooked.frames, baseline.frames)
    assert "compile: compiled blocks reused (no new compilation)" in hooked.report


@pytest.mark.slow
def test_compile_blocks_with_inductor_matches_the_baseline(a14b, baseline):
    """The real compiler (inductor, C++ on the CPU): about 80 s on two cores for the tiny model."""
    for block in [b for expert in experts(a14b) for b in expert.blocks]:
        block.__dict__.pop("_wanlean_compiled_call", None)
    result = run(a14b, compile="blocks")
    assert "compile: blocks compiled in this run" in result.report
    assert "compile failed" not in result.report
    torch.testing.assert_close(result.frames, baseline.frames, atol=1e-5, rtol=0)
    assert_nothing_left_on(a14b)


# --- step cache -----------------------------------------------------------------------------------------
class TailCount:
    """Counts, through forward hooks on a layer inside the first and the last block of each expert, the
    forwards that ran the whole stack (the cache skips the blocks after the first). One per sample: a CFG
    pair batched as one call of 2 (guidance) counts 2, as the report counts forwards."""

    def __init__(self, session):
        self.first = {"high": 0, "low": 0}
        self.last = {"high": 0, "low": 0}
        self.handles = []
        for stage, expert in zip(("high", "low"), experts(session)):
            self.handles.append(expert.blocks[0].ffn.register_forward_hook(lambda m, a, out, s=stage: self._add(self.first, s, out)))
            self.handles.append(expert.blocks[-1].ffn.register_forward_hook(lambda m, a, out, s=stage: self._add(self.last, s, out)))

    @staticmethod
    def _add(counts, stage, output):
        counts[stage] += len(output)  # the batch: samples

    def close(self):
        for handle in self.handles:
            handle.remove()


def test_step_cache_with_threshold_0_gives_the_baselines_frames(a14b, baseline):
    result = run(a14b, step_cache="first_block", cache_threshold=0.0)
    assert torch.equal(result.frames, baseline.frames)
    assert "step cache first_block (threshold 0): skipped 0 of" in result.report
    assert_nothing_left_on(a14b)


@pytest.mark.parametrize("cfg_batch", ["off", "on"])  # the CFG pair as two cache contexts, or one batch of 2
def test_step_cache_with_a_high_threshold_skips_forwards_and_reports_the_count_observed(a14b, baseline, cfg_batch):
    counter = TailCount(a14b)
    try:
        result = run(a14b, cfg_batch, step_cache="first_block", cache_threshold=0.5)
    finally:
        counter.close()
    skipped = {stage: counter.first[stage] - counter.last[stage] for stage in ("high", "low")}
    forwards = result.stats.forwards
    assert sum(counter.first.values()) == forwards  # the first block runs in every forward
    assert sum(skipped.values()) > 0
    assert (f"skipped {skipped['high']} of {counter.first['high']} forwards of the high-noise expert, "
            f"{skipped['low']} of {counter.first['low']} forwards of the low-noise expert") in result.report
    assert not torch.equal(result.frames, baseline.frames)
    assert_nothing_left_on(a14b)


def test_cond_and_uncond_are_cached_apart(a14b):
    """With a threshold that skips everything it can, each context's first forward still runs in full:
    one per context (cond, uncond) per expert, so 4 full forwards in a run with CFG in both stages."""
    counter = TailCount(a14b)
    try:
        run(a14b, step_cache="first_block", cache_threshold=1e9)
    finally:
        counter.close()
    assert counter.last == {"high": 2, "low": 2}


# --- refused before the run -----------------------------------------------------------------------------
@pytest.mark.parametrize("attention, needed", [
    ("sdpa_cudnn", "cuDNN attention needs a CUDA GPU; this pipe runs on cpu"),
    ("sage", "the `sageattention` package (>= 2.1.1) is not installed: pip install sageattention (needs CUDA"),
    ("flash", "the `flash-attn` package (>= 2.6.3) is not installed: pip install flash-attn"),
])
def test_attention_a_device_cannot_run_is_refused_naming_the_requirement(a14b, attention, needed):
    with pytest.raises(WanLeanError, match="attention " + attention) as info:
        with_speed(a14b, SpeedOptions(attention=attention))
    assert needed in str(info.value)


def test_fp8_matmul_is_refused_without_fp8_weights_and_on_the_cpu(a14b, fp8_session):
    with pytest.raises(WanLeanError, match="needs weights stored in fp8 .* weight_storage fp8"):
        with_speed(a14b, SpeedOptions(fp8_matmul="on"))
    with pytest.raises(WanLeanError, match=r"compute capability 8.9 or newer.*this pipe runs on cpu"):
        with_speed(fp8_session, SpeedOptions(fp8_matmul="on"))


def test_bad_option_values_name_the_input(a14b):
    with pytest.raises(WanLeanError, match="step_cache must be one of off, first_block; got 'mag'"):
        with_speed(a14b, SpeedOptions(step_cache="mag"))
    with pytest.raises(WanLeanError, match="cache_threshold must be 0 or more"):
        with_speed(a14b, SpeedOptions(step_cache="first_block", cache_threshold=-1.0))


# --- fp8 matmul numerics (torch._scaled_mm runs on the CPU in this torch) --------------------------------
@pytest.fixture(scope="module")
def fp8_session():
    from wltest.comfy_formats import tiny_set

    from wanlean.video.loaders.comfy_files.load import load_comfy_files

    tiny = tiny_set()
    return load_comfy_files(tiny.transformer("high", "fp8_scaled"), tiny.transformer("low", "fp8_scaled"), tiny.umt5("fp32"),
                            tiny.vae("2.1"), dtype="bf16", device="cpu", weight_storage="fp8")


@pytest.mark.parametrize("granularity", ["token", "tensor"])
def test_scaled_linear_matches_the_dequantized_linear(fp8_session, granularity):
    from wanlean.video import fp8_matmul

    layer = fp8_matmul.fp8_layers([fp8_session.transformer])[0]
    x = torch.randn(3, 40, layer.in_features, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    reference = layer(x).float()
    fp8_matmul.enable(layer, granularity)
    try:
        fast = layer(x).float()
    finally:
        fp8_matmul.disable(layer)
    assert "forward" not in layer.__dict__
    assert fast.shape == reference.shape
    relative = (fast - reference).norm() / reference.norm()
    assert 0 < relative < 0.05  # fp8 activations: a few percent at most, and not the same computation


@pytest.fixture()
def fp8_allowed(monkeypatch):
    """fp8 matmul's device gate opened on the CPU, where torch._scaled_mm also runs (slowly)."""
    from wanlean.video import fp8_matmul

    refusal = fp8_matmul.refusal
    monkeypatch.setattr(fp8_matmul, "refusal", lambda device, layers: refusal("cuda", layers) if not layers else None)


def test_fp8_matmul_run_stays_close_to_the_dequantized_run(fp8_session, fp8_allowed):
    reference = generate(fp8_session, tiny_request(steps=2))
    result = generate(with_speed(fp8_session, SpeedOptions(fp8_matmul="on")), tiny_request(steps=2))
    assert "fp8 matmul: " in result.report and "fp8 layers multiply in fp8, activation scales per token" in result.report
    assert not torch.equal(result.frames, reference.frames)
    assert (result.frames - reference.frames).abs().mean() < 0.02
    assert all("_wanlean_fp8_granularity" not in module.__dict__ for expert in experts(fp8_session) for module in expert.modules())


# --- failures during the run: fall back, say so -----------------------------------------------------------
def failing(*args, **kwargs):
    raise RuntimeError("no kernel for this shape (forced by the test)")


def test_an_attention_backend_failing_at_run_time_falls_back_to_the_baseline(a14b, baseline, monkeypatch):
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _AttentionBackendRegistry,
    )

    monkeypatch.setattr(speed, "diffusers_backend", lambda option, device: "_native_math")
    monkeypatch.setitem(_AttentionBackendRegistry._backends, AttentionBackendName._NATIVE_MATH, failing)
    result = run(a14b, attention="auto")
    assert torch.equal(result.frames, baseline.frames)
    assert ("attention failed during the run (RuntimeError: no kernel for this shape (forced by the test)); "
            "switched off, the run went on without it") in result.report
    assert_nothing_left_on(a14b)


def test_a_compile_error_falls_back_to_the_baseline(a14b, baseline, monkeypatch):
    monkeypatch.setattr(speed, "COMPILE_KWARGS", {"backend": failing})
    for block in [b for expert in experts(a14b) for b in expert.blocks]:
        block.__dict__.pop("_wanlean_compiled_call", None)
    result = run(a14b, compile="blocks", step_cache="first_block", cache_threshold=0.0)
    assert torch.equal(result.frames, baseline.frames)
    assert "compile failed during the run (" in result.report and "step_cache failed" not in result.report
    assert "step cache first_block (threshold 0): skipped 0 of" in result.report  # the other lever stayed on
    assert_nothing_left_on(a14b)
    for block in [b for expert in experts(a14b) for b in expert.blocks]:
        block.__dict__.pop("_wanlean_compiled_call", None)


def test_a_step_cache_failure_falls_back_to_the_baseline(a14b, baseline, monkeypatch):
    from diffusers.hooks.first_block_cache import FBCHeadBlockHook

    monkeypatch.setattr(FBCHeadBlockHook, "_should_compute_remaining_blocks", failing)
    result = run(a14b, step_cache="first_block")
    assert torch.equal(result.frames, baseline.frames)
    assert "step_cache failed during the run (RuntimeError: no kernel" in result.report
    assert_nothing_left_on(a14b)


def test_an_fp8_kernel_failure_falls_back_to_the_dequantized_path(fp8_session, fp8_allowed, monkeypatch):
    reference = generate(fp8_session, tiny_request(steps=2))
    monkeypatch.setattr(torch, "_scaled_mm", failing)
    result = generate(with_speed(fp8_session, SpeedOptions(fp8_matmul="on")), tiny_request(steps=2))
    assert torch.equal(result.frames, reference.frames)
    assert "fp8_matmul failed during the run (RuntimeError" in result.report


def test_a_cancel_is_not_taken_for_a_failed_lever(a14b):
    class Cancelled(Exception):
        pass

    calls = []

    def cancel():
        calls.append(1)
        if len(calls) == 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        generate(with_speed(a14b, SpeedOptions(step_cache="first_block", attention="auto")), tiny_request(steps=STEPS),
                 cancel_check=cancel)
    assert len(calls) == 3  # not retried without the levers
    assert_nothing_left_on(a14b)


def test_user_facing_errors_inside_a_forward_are_not_retried(a14b):
    calls = []

    def bad_block(module, args):
        calls.append(1)
        raise WanLeanError("bad input (forced)")

    handle = a14b.transformer.blocks[0].register_forward_pre_hook(bad_block)
    try:
        with pytest.raises(WanLeanError, match="bad input"):
            run(a14b, step_cache="first_block", attention="auto")
    finally:
        handle.remove()
    assert len(calls) == 1
    assert_nothing_left_on(a14b)


# --- the node -------------------------------------------------------------------------------------------
def test_the_node_returns_a_pipe_carrying_the_options_and_refuses_what_cannot_run(pack, a14b):
    node = pack.NODE_CLASS_MAPPINGS["WanLeanSpeed"]
    inputs = node.INPUT_TYPES()["required"]
    assert all(spec[1].get("tooltip") for spec in inputs.values())
    (pipe,) = node().run(a14b, "auto", "off", "off", "first_block", 0.1)
    assert pipe is not a14b and pipe.transformer is a14b.transformer
    assert (pipe.speed.attention, pipe.speed.step_cache, pipe.speed.cache_threshold) == ("auto", "first_block", 0.1)
    assert a14b.speed == speed.BASELINE
    with pytest.raises(Exception, match="pip install sageattention") as info:
        node().run(a14b, "sage", "off", "off", "off", 0.05)
    assert type(info.value).__name__ == "WanLeanError"
