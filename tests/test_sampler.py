"""The sampling loop: equal to a bare WanPipeline call, per-stage CFG forward counts, expert switch,
seeding, cancel within one step, out-of-memory handling, memory modes, bad input."""

import importlib.util
import re

import pytest
import torch
from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, reference_pipeline, tiny_request, tiny_session

from wanlean.video import memory, sampler
from wanlean.errors import WanLeanError
from wanlean.video.sampler import OFFICIAL_NEGATIVE, VideoRequest, expected_forwards, generate, raw_latents, resolve_settings
from wanlean.video.schedule import make_scheduler, plan_steps

STEPS = 4
SHIFT = 12.0


session_for = tiny_session


@pytest.fixture(scope="module")
def a14b():
    return session_for("A14B")


@pytest.fixture(scope="module")
def ti2v():
    return session_for("TI2V-5B")


def request(**overrides):
    return tiny_request(**{"steps": STEPS, "shift": SHIFT, **overrides})


class ForwardLog:
    """Counts forwards per expert through forward hooks (nothing in the sampler is patched): one entry per
    sample, so a CFG pair run as one call of batch 2 counts 2 forwards, as the report counts it."""

    def __init__(self, session):
        self.calls = []
        self.handles = [
            module.register_forward_pre_hook(lambda m, a, k, name=name: self.calls.extend([name] * len(k["hidden_states"])), with_kwargs=True)
            for name, module in (("high", session.transformer), ("low", session.transformer_2)) if module is not None
        ]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def bare_pipeline(kind):
    pipe = reference_pipeline(kind)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("unipc", SHIFT)
    return pipe


@pytest.mark.parametrize("kind", ["A14B", "TI2V-5B"])
def test_frames_equal_a_bare_wanpipeline_call(kind):
    pipe = bare_pipeline(kind)
    expected = pipe(
        "a red fox runs through deep snow", negative_prompt="blurry, static", height=TINY_HEIGHT, width=TINY_WIDTH,
        num_frames=TINY_FRAMES, num_inference_steps=STEPS, guidance_scale=4.0,
        guidance_scale_2=4.0 if kind == "A14B" else None, generator=torch.Generator().manual_seed(7), output_type="np",
    ).frames[0]
    result = generate(session_for(kind), request(cfg_high=4.0, cfg_low=4.0))
    assert result.frames.shape == (TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, 3)
    torch.testing.assert_close(result.frames, torch.from_numpy(expected), rtol=0, atol=1e-5)


def test_latents_equal_a_bare_wanpipeline_call_with_a_scale_per_stage():
    """cfg_low != cfg_high: WanPipeline's guidance_scale_2 guides its low-noise stage. Latents, not frames:
    the tiny VAE barely moves frames when a stage's scale is wrong."""
    pipe = bare_pipeline("A14B")
    expected = pipe(
        "a red fox runs through deep snow", negative_prompt="blurry, static", height=TINY_HEIGHT, width=TINY_WIDTH,
        num_frames=TINY_FRAMES, num_inference_steps=STEPS, guidance_scale=4.0, guidance_scale_2=2.0,
        generator=torch.Generator().manual_seed(7), output_type="latent",
    ).frames
    session = session_for("A14B")
    result = generate(session, request(cfg_high=4.0, cfg_low=2.0))
    torch.testing.assert_close(result.latents, raw_latents(session, expected), rtol=0, atol=1e-5)


class GuidanceLog:
    """The guidance scale each step really applied, read off the calls: per step the expert runs on the
    prompt (c), then on the negative (u) (one call of batch 2 when the pair is batched: split per sample),
    and the scheduler receives u + scale × (c − u)."""

    def __init__(self, session, monkeypatch):
        self.outputs, self.scales = [], []
        self.handles = [
            module.register_forward_hook(
                lambda m, args, kwargs, out, name=name: self.outputs.extend((name, sample[None].detach().clone()) for sample in out[0]),
                with_kwargs=True)
            for name, module in (("high", session.transformer), ("low", session.transformer_2))
        ]
        real_make_scheduler = sampler.make_scheduler

        def recording_scheduler(*args, **kwargs):
            scheduler = real_make_scheduler(*args, **kwargs)
            real_step = scheduler.step

            def step(model_output, *a, **k):
                self._record(model_output)
                return real_step(model_output, *a, **k)

            scheduler.step = step
            return scheduler

        monkeypatch.setattr(sampler, "make_scheduler", recording_scheduler)

    def _record(self, noise_pred):
        calls, self.outputs = self.outputs, []
        if len(calls) == 1:
            self.scales.append((calls[0][0], 1.0))
            return
        (stage, cond), (_, uncond) = calls
        direction = cond - uncond
        self.scales.append((stage, float(((noise_pred - uncond) * direction).sum() / (direction * direction).sum())))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("cfg_batch", ["off", "on"])
@pytest.mark.parametrize("cfg_high, cfg_low", [(4.0, 2.5), (1.0, 3.5), (3.5, 1.0)])
def test_each_stage_applies_its_own_guidance_scale(a14b, monkeypatch, cfg_high, cfg_low, cfg_batch):
    plan = plan_steps(STEPS, SHIFT, 0.875)
    with GuidanceLog(a14b, monkeypatch) as log:
        generate(a14b, request(cfg_high=cfg_high, cfg_low=cfg_low, cfg_batch=cfg_batch))
    assert [stage for stage, _ in log.scales] == ["high"] * plan.high_noise_steps + ["low"] * plan.low_noise_steps
    expected = [cfg_high] * plan.high_noise_steps + [cfg_low] * plan.low_noise_steps
    assert [scale for _, scale in log.scales] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("cfg_batch", ["off", "on"])
@pytest.mark.parametrize("cfg_high, cfg_low", [(4, 3), (3.5, 1), (1, 3.5), (1, 1)])
def test_forwards_are_exactly_the_per_stage_minimum(a14b, cfg_high, cfg_low, cfg_batch):
    plan = plan_steps(STEPS, SHIFT, 0.875)
    assert plan.high_noise_steps and plan.low_noise_steps  # both experts run in this configuration
    with ForwardLog(a14b) as log:
        result = generate(a14b, request(cfg_high=cfg_high, cfg_low=cfg_low, cfg_batch=cfg_batch))
    high_forwards = plan.high_noise_steps * (2 if cfg_high > 1 else 1)
    low_forwards = plan.low_noise_steps * (2 if cfg_low > 1 else 1)
    assert log.calls == ["high"] * high_forwards + ["low"] * low_forwards
    assert result.stats.forwards == expected_forwards(STEPS, SHIFT, 0.875, cfg_high, cfg_low) == high_forwards + low_forwards
    assert re.search(rf"high-noise expert: .*, {high_forwards} forwards?,", result.report)
    assert re.search(rf"low-noise expert: .*, {low_forwards} forwards?,", result.report)


def test_expert_switch_follows_the_real_timesteps_and_shift(a14b):
    for shift in (12.0, 3.0):
        steps = 10
        plan = plan_steps(steps, shift, 0.875)
        with ForwardLog(a14b) as log:
            generate(a14b, request(steps=steps, shift=shift, cfg_high=1, cfg_low=1))
        assert log.calls == ["high"] * plan.high_noise_steps + ["low"] * plan.low_noise_steps
    assert plan_steps(10, 12.0, 0.875).high_noise_steps != plan_steps(10, 3.0, 0.875).high_noise_steps


def test_boundary_override_moves_the_switch(a14b):
    with ForwardLog(a14b) as log:
        generate(a14b, request(cfg_high=1, cfg_low=1, boundary=0.5))
    assert log.calls.count("high") == plan_steps(STEPS, SHIFT, 0.5).high_noise_steps


def test_negative_is_not_encoded_when_no_stage_uses_cfg(a14b):
    result = generate(a14b, request(cfg_high=1, cfg_low=1, prompt="only the prompt here"))
    assert len(result.stats.text) == 1 and "negative: not encoded" in result.report


def test_same_seed_same_video_other_seed_other_video(a14b):
    first = generate(a14b, request(seed=3))
    second = generate(a14b, request(seed=3))
    third = generate(a14b, request(seed=4))
    assert torch.equal(first.frames, second.frames) and torch.equal(first.latents, second.latents)
    assert not torch.equal(first.frames, third.frames)


def test_cancel_stops_within_one_step_and_frees_memory(a14b, monkeypatch):
    released = []
    monkeypatch.setattr(memory, "release", lambda session=None, collect=True: released.append(collect))

    class Cancelled(Exception):
        pass

    def cancel_after_second_step(index, total, stage):
        if index == 1:
            raise Cancelled()

    with ForwardLog(a14b) as log, pytest.raises(Cancelled):
        generate(a14b, request(cfg_high=4, cfg_low=3), on_step=cancel_after_second_step)
    assert len(log.calls) == 4  # two steps × (cond + uncond), nothing after the cancel
    assert released == [True]  # garbage-collected: the cancelled frames may hold tensors


class BlockLog:
    """Counts transformer blocks run (a forward hook on each block: it fires only when the block finished)."""

    def __init__(self, session):
        self.finished = []
        self.handles = [
            block.register_forward_hook(lambda m, a, out, name=f"{expert_name}.{index}": self.finished.append(name))
            for expert_name, expert in (("high", session.transformer), ("low", session.transformer_2)) if expert is not None
            for index, block in enumerate(expert.blocks)
        ]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def _hook_counts(session) -> list[int]:
    return [len(block._forward_pre_hooks) for expert in (session.transformer, session.transformer_2) for block in expert.blocks]


def test_cancel_stops_within_one_transformer_block(a14b, monkeypatch):
    """Cancel requested while the first block of step 1 runs: the next block does not start, the step never
    completes, and the checks are removed afterwards."""
    released = []
    monkeypatch.setattr(memory, "release", lambda session=None, collect=True: released.append(collect))
    assert len(a14b.transformer.blocks) == 2  # the tiny expert: a step with CFG runs 2 forwards × 2 blocks

    class Cancelled(Exception):
        pass

    steps_done, checks = [], []

    with BlockLog(a14b) as blocks:
        def cancel_check():
            checks.append(len(blocks.finished))
            if blocks.finished:  # the user pressed Cancel while block 0 of step 1 ran
                raise Cancelled()

        with pytest.raises(Cancelled):
            generate(a14b, request(cfg_high=4, cfg_low=3), on_step=lambda *a: steps_done.append(a), cancel_check=cancel_check)
    assert blocks.finished == ["high.0"] and steps_done == []  # stopped before block 1, within step 1
    assert checks == [0, 1]  # checked before each block
    assert released == [True] and _hook_counts(a14b) == [0] * 4  # memory given back, checks removed

    calls = []
    generate(a14b, request(steps=2, cfg_high=4, cfg_low=3, cfg_batch="off"), cancel_check=lambda: calls.append(1))
    assert len(calls) == 2 * 2 * 2 and _hook_counts(a14b) == [0] * 4  # steps × forwards × blocks; removed after a run
    calls = []
    generate(a14b, request(steps=2, cfg_high=4, cfg_low=3, cfg_batch="on"), cancel_check=lambda: calls.append(1))
    assert len(calls) == 2 * 1 * 2  # steps × calls (the pair as one batch of 2) × blocks


def test_out_of_memory_becomes_a_message_naming_the_memory_modes(a14b, monkeypatch):
    released = []
    monkeypatch.setattr(memory, "release", lambda session=None, collect=True: released.append(collect))

    def oom(module, args, kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    handle = a14b.transformer.register_forward_pre_hook(oom, with_kwargs=True)
    try:
        with pytest.raises(WanLeanError) as caught:
            generate(a14b, request())
    finally:
        handle.remove()
    message = str(caught.value)
    assert "out of device memory" in message and "'model_offload'" in message and "'sequential_offload'" in message
    assert released == [True] and caught.value.__context__ is None  # raised outside the except: no OOM traceback kept


HAS_ACCELERATE = importlib.util.find_spec("accelerate") is not None


@pytest.mark.parametrize(
    "memory_mode",
    ["model_offload", pytest.param("sequential_offload", marks=pytest.mark.skipif(not HAS_ACCELERATE, reason="needs accelerate"))],
)
def test_memory_modes_give_the_same_video(a14b, memory_mode):
    expected = generate(a14b, request()).frames
    result = generate(session_for("A14B", memory_mode), request())
    torch.testing.assert_close(result.frames, expected, rtol=0, atol=1e-6)


def test_sequential_offload_without_accelerate_names_the_package(monkeypatch):
    import importlib.util as util

    real_find_spec = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda name, *a: None if name == "accelerate" else real_find_spec(name, *a))
    with pytest.raises(WanLeanError, match="accelerate"):
        generate(session_for("A14B", "sequential_offload"), request())


def test_model_offload_keeps_one_expert_on_the_device(monkeypatch):
    """Moves are recorded, not made (this machine has no second device): where each module would be."""
    session = session_for("A14B", "model_offload")
    names = {id(session.transformer): "high", id(session.transformer_2): "low", id(session.vae): "vae"}
    where, moves, on_device_at_forward = {}, [], []
    monkeypatch.setattr(memory, "OFFLOAD_DEVICE", "offload")

    def record(s, module, device):
        name = names.get(id(module), "text")
        if where.get(name) != str(device):
            where[name] = str(device)
            moves.append((name, str(device)))

    monkeypatch.setattr(memory, "_move", record)
    hooks = [m.register_forward_pre_hook(lambda *a: on_device_at_forward.append(sorted(n for n, d in where.items() if d != "offload")))
             for m in (session.transformer, session.transformer_2)]
    try:
        generate(session, request(cfg_batch="off"))  # two expert calls per guided step
    finally:
        for hook in hooks:
            hook.remove()
    device = str(session.device)
    plan = plan_steps(STEPS, SHIFT, 0.875)
    # Exactly one big module on the device whenever an expert runs.
    assert on_device_at_forward == [["high"]] * (2 * plan.high_noise_steps) + [["low"]] * (2 * plan.low_noise_steps)
    # At the switch the high-noise expert leaves before the low-noise one arrives.
    switch = moves.index(("low", device))
    assert moves[switch - 1] == ("high", "offload")
    assert moves[-2:] == [("low", "offload"), ("vae", device)]


def test_ti2v_runs_with_expand_timesteps_and_48_channel_latents(ti2v):
    with ForwardLog(ti2v) as log:
        result = generate(ti2v, request(cfg_high=5, cfg_low=2))
    assert log.calls == ["high"] * (2 * STEPS)  # one stage, cfg_high used
    assert result.latents.shape == (1, 48, 2, 2, 2) and result.fps == 24
    assert "cfg_low 2 ignored" in result.report


def test_latent_output_is_raw_vae_latents(a14b):
    """Decoding the LATENT output with the VAE as-is (no normalisation: what ComfyUI's VAEDecode does)
    gives the same frames."""
    result = generate(a14b, request())
    with torch.no_grad():
        video = a14b.vae.decode(result.latents, return_dict=False)[0]
    torch.testing.assert_close((video[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0), result.frames, rtol=0, atol=1e-5)
    mean = torch.tensor(a14b.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(a14b.vae.config.latents_std).view(1, -1, 1, 1, 1)
    normalised = (result.latents - mean) / std
    torch.testing.assert_close(raw_latents(a14b, normalised), result.latents, rtol=1e-5, atol=1e-5)


def test_long_prompt_is_cut_and_the_report_says_so(a14b):
    result = generate(a14b, request(prompt="a red fox runs through deep snow at dawn " * 80, cfg_high=1, cfg_low=1, steps=1))
    assert result.stats.text[0].kept_tokens == 512 and "CUT to the first 512" in result.report


def test_euler_sampler_runs(a14b):
    result = generate(a14b, request(sampler="euler", steps=2))
    assert torch.isfinite(result.frames).all()


def test_zeros_mean_the_models_official_values(a14b, ti2v):
    zeros = VideoRequest(prompt="x")
    a = resolve_settings(a14b, zeros)
    assert (a.width, a.height, a.frames, a.steps, a.shift, a.cfg_high, a.cfg_low, a.boundary) == (1280, 720, 81, 40, 12.0, 4.0, 3.0, 0.875)
    assert a.negative == OFFICIAL_NEGATIVE
    t = resolve_settings(ti2v, zeros)
    assert (t.width, t.height, t.frames, t.steps, t.shift, t.cfg_high, t.cfg_low, t.boundary) == (1280, 704, 121, 50, 5.0, 5.0, 5.0, None)


@pytest.mark.parametrize(
    "kind, overrides, match",
    [
        ("A14B", dict(frames=80), r"frames must be 4k\+1, e.g. 81; got 80"),
        ("A14B", dict(width=40), "width must be a positive multiple of 16"),
        ("A14B", dict(height=-16), "height must be a positive multiple of 16"),
        ("TI2V-5B", dict(width=48), "width must be a positive multiple of 32 for TI2V-5B"),
        ("A14B", dict(steps=-1), "steps must be at least 1"),
        ("A14B", dict(cfg_low=0.5), "cfg_low must be 1.0"),
        ("A14B", dict(shift=-1.0), "shift must be greater than 0"),
        ("A14B", dict(sampler="ddim"), "sampler must be one of"),
        ("A14B", dict(boundary=1.5), "boundary must be between 0 and 1"),
    ],
)
def test_bad_input_is_refused_with_a_message(a14b, ti2v, kind, overrides, match):
    with pytest.raises(WanLeanError, match=match):
        resolve_settings(a14b if kind == "A14B" else ti2v, request(**overrides))


def test_a_pipe_from_another_model_family_is_refused(a14b):
    with pytest.raises(WanLeanError, match="expected a WanLean Wan2.2 pipe"):
        resolve_settings(object(), request())
    import dataclasses

    other = dataclasses.replace(a14b, model_type="HunyuanVideo")
    with pytest.raises(WanLeanError, match="model type 'HunyuanVideo'"):
        generate(other, request())


def test_progress_callback_sees_every_step(a14b):
    seen = []
    generate(a14b, request(), on_step=lambda index, total, stage: seen.append((index, total, stage)))
    plan = plan_steps(STEPS, SHIFT, 0.875)
    assert seen == [(i, STEPS, "high" if i < plan.high_noise_steps else "low") for i in range(STEPS)]


def test_sampler_module_has_no_comfyui_imports():
    import inspect

    imports = [line for line in inspect.getsource(sampler).splitlines() if line.strip().startswith(("import ", "from "))]
    assert imports and not any("comfy" in line or "folder_paths" in line for line in imports)
