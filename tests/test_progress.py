"""Progress that tells time and the clean estimate behind previews: what `on_progress` receives after each
step (stage, step, seconds per step, time left, x0 on demand), and what the report says afterwards."""

import re

import pytest
import torch
from wltest.tiny_wan import tiny_folder, tiny_request

from wanlean.video import sampler
from wanlean.video.loaders.diffusers_folder import load_diffusers_folder
from wanlean.video.run_report import StepProgress, StepTimer, format_duration
from wanlean.video.sampler import generate, raw_latents, resolve_settings
from wanlean.video.schedule import plan_steps

STEPS = 4


@pytest.fixture(scope="module")
def a14b():
    return load_diffusers_folder(str(tiny_folder("A14B")), device="cpu")


def request(**overrides):
    return tiny_request(**{"negative": "blurry", "steps": STEPS, "cfg_low": 1.0, **overrides})


def test_each_step_reports_stage_step_and_time(a14b):
    seen = []
    result = generate(a14b, request(), on_progress=seen.append)
    plan = plan_steps(STEPS, 12.0, 0.875)
    stages = ["high"] * plan.high_noise_steps + ["low"] * plan.low_noise_steps
    assert [(p.index, p.total, p.stage) for p in seen] == [(i, STEPS, stages[i]) for i in range(STEPS)]
    assert all(p.step_seconds > 0 and p.seconds_per_step > 0 for p in seen)
    assert seen[-1].seconds_left == 0 and all(p.seconds_left > 0 for p in seen[:-1])
    assert re.fullmatch(r"high-noise expert · step 1/4 · [\d.]+ s/step · about [\d.]+ s left", seen[0].text())
    assert seen[-1].text().startswith("low-noise expert · step 4/4 · ") and seen[-1].text().endswith(" · done")
    # the report: seconds per step per stage, and the time foreseen after step 1
    assert re.search(r"high-noise expert: \d+ steps?, \d+ forwards?, cfg 4 \(on\), [\d.]+ s \([\d.]+ s/step\)", result.report)
    assert re.search(r"denoising took [\d.]+ s; estimated after step 1: [\d.]+ s", result.report)


def test_the_clean_estimate_is_x0_and_costs_nothing_unless_asked(a14b):
    """With Euler the last step lands exactly on x0 = x_t − σ·v (σ_next = 0): the last clean estimate is
    the final latents."""
    estimates = []
    result = generate(a14b, request(sampler="euler"), on_progress=lambda p: estimates.append(p.clean_latents()))
    assert len(estimates) == STEPS and estimates[0].shape == (1, 16, 2, 4, 4) and estimates[0].dtype == torch.float32
    torch.testing.assert_close(raw_latents(a14b, estimates[-1]), result.latents, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(estimates[0], estimates[-1])  # an estimate per step, not the same tensor
    assert f"previews: {STEPS}," in result.report

    quiet = generate(a14b, request(sampler="euler"), on_progress=lambda p: None)
    assert quiet.stats.previews == 0 and "previews:" not in quiet.report


def test_time_left_counts_the_forwards_still_to_run_and_the_swap_ahead(a14b):
    settings = resolve_settings(a14b, request(cfg_high=4.0, cfg_low=1.0, steps=5))
    timer = StepTimer(settings, [True, True, False, False, False])  # 2 high steps (2 forwards), 3 low (1 forward)
    timer.add(0, step_seconds=7.0, move_seconds=3.0)  # 4 s of compute for 2 forwards: 2 s per forward
    assert timer.seconds_per_step("high") == 4.0
    assert timer.seconds_left(0) == pytest.approx(2 * 2 + 3 * 2 + 3.0)  # one high step, three low, one swap
    timer.add(1, step_seconds=4.0, move_seconds=0.0)
    assert timer.seconds_left(1) == pytest.approx(3 * 2 + 3.0)
    timer.add(2, step_seconds=2.0 + 10.0, move_seconds=10.0)  # the swap happened
    assert timer.seconds_left(2) == pytest.approx(2 * 2)  # no swap ahead any more
    assert timer.seconds_per_step("low") == 2.0


def test_durations_read_like_a_clock():
    assert [format_duration(s) for s in (3.14, 42, 230.6, 3 * 3600 + 65)] == ["3.1 s", "42 s", "3 min 51 s", "3 h 1 min"]


def test_one_transformer_is_named_as_such():
    progress = StepProgress(0, 2, "high", 1.0, 1.0, 1.0, two_stages=False)
    assert progress.text().startswith("transformer · step 1/2 · 1.00 s/step · about 1.0 s left")
    assert progress.clean_latents() is None


def test_a_preview_that_raises_stops_the_run(a14b):
    class Cancelled(Exception):
        pass

    def cancel(progress):
        progress.clean_latents()
        raise Cancelled()

    with pytest.raises(Cancelled):
        generate(a14b, request(), on_progress=cancel)


def test_sampler_core_stays_comfyui_free():
    import inspect

    source = inspect.getsource(sampler)
    assert "latent_preview" not in source and "comfy." not in source
