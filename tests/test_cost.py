"""wanlean.video.cost: video tokens, the expert split from the real scheduler, per-stage CFG, the compute figure."""

import pytest

from wanlean.video import cost
from wanlean.errors import WanLeanError
from wanlean.video.schedule import plan_steps


@pytest.mark.parametrize(
    "model, width, height, frames, latent_frames, video_tokens",
    [
        ("A14B", 1280, 720, 81, 21, 75_600),
        ("A14B", 832, 480, 81, 21, 32_760),
        ("A14B", 480, 832, 1, 1, 1_560),
        ("TI2V-5B", 1280, 704, 121, 31, 40 * 22 * 31),
    ],
)
def test_video_tokens(model, width, height, frames, latent_frames, video_tokens):
    assert cost.video_tokens(model, width, height, frames) == (latent_frames, video_tokens)


def test_official_a14b_run_is_the_reference():
    result = cost.estimate_cost()  # official A14B: 1280×720×81, 40 steps, shift 12, boundary 0.875, CFG 4/3
    assert (result.high_noise_steps, result.low_noise_steps) == (26, 14)  # FACTS: 26/14 at shift 12
    assert result.forwards == 80
    assert result.relative_compute == pytest.approx(1.0)
    assert result.video_seconds == pytest.approx(81 / 16)
    assert result.price is None


def test_split_comes_from_the_scheduler_and_moves_with_shift():
    result = cost.estimate_cost(shift=3.0)
    plan = plan_steps(40, 3.0, 0.875, "unipc")
    assert (result.high_noise_steps, result.low_noise_steps) == (plan.high_noise_steps, plan.low_noise_steps) == (13, 27)
    euler = cost.estimate_cost(shift=5.0, steps=4, sampler="euler", cfg_high=1.0, cfg_low=1.0)
    assert euler.high_noise_steps + euler.low_noise_steps == 4


@pytest.mark.parametrize(
    "cfg_high, cfg_low, forwards",
    [(4.0, 3.0, 26 * 2 + 14 * 2), (3.5, 1.0, 26 * 2 + 14), (1.0, 3.5, 26 + 14 * 2), (1.0, 1.0, 40), (0.5, 1.0, 40)],
)
def test_cfg_is_counted_per_stage(cfg_high, cfg_low, forwards):
    result = cost.estimate_cost(cfg_high=cfg_high, cfg_low=cfg_low)
    assert result.forwards == forwards
    assert result.cfg_high_on == (cfg_high > 1) and result.cfg_low_on == (cfg_low > 1)


def test_ti2v_has_one_transformer():
    result = cost.estimate_cost("TI2V-5B", 1280, 704, 121, steps=50, cfg_high=5.0, cfg_low=1.0, shift=5.0)
    assert (result.high_noise_steps, result.low_noise_steps) == (50, 0)
    assert result.forwards == 100  # cfg_low does not apply: its one stage uses cfg_high
    assert result.fps == 24 and result.video_seconds == pytest.approx(121 / 24)
    assert "one transformer" in result.summary()


def test_compute_scales_with_tokens_steps_and_cfg_not_prompt():
    base = cost.estimate_cost(width=832, height=480)
    assert 0 < base.relative_compute < 1
    # half the steps, half the compute (same split ratio is not guaranteed, so compare forwards)
    fewer = cost.estimate_cost(width=832, height=480, steps=20)
    assert fewer.relative_compute / base.relative_compute == pytest.approx(fewer.forwards / base.forwards)
    # attention's quadratic term: 2.3× the tokens cost more than 2.3× per forward
    big = cost.estimate_cost()
    assert big.tflops_per_forward / base.tflops_per_forward > big.video_tokens / base.video_tokens
    assert big.attention_share > base.attention_share
    assert "Prompt length does not drive this cost" in base.summary()


def test_price_per_video_second():
    result = cost.estimate_cost(price_per_second=0.1)
    assert result.price == pytest.approx(81 / 16 * 0.1)
    assert "price:" in result.summary()


def test_summary_lists_every_figure():
    summary = cost.estimate_cost().summary()
    for part in ("latent frames: 21", "75,600", "26 high-noise + 14 low-noise", "forwards: 80", "1× the official", "5.06 s at 16 fps"):
        assert part in summary, part


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(frames=80), "frames must be 4k+1, e.g. 81; got 80 (nearest valid: 77 or 81)"),
        (dict(frames=0), "frames must be 4k+1"),
        (dict(width=1000), "width must be a positive multiple of 16 for A14B"),
        (dict(height=0), "height must be a positive multiple of 16"),
        (dict(model="TI2V-5B", width=1280, height=720), "height must be a positive multiple of 32 for TI2V-5B"),
        (dict(model="T2V-1.3B"), "model must be one of A14B, TI2V-5B"),
        (dict(steps=0), "steps must be at least 1"),
        (dict(steps=4.5), "steps must be a whole number"),
        (dict(shift=0.0), "shift must be greater than 0"),
        (dict(boundary=1.5), "boundary must be between 0 and 1"),
        (dict(cfg_low=-1.0), "cfg_low must be a number, 0 or more"),
        (dict(sampler="ddim"), "sampler must be one of"),
        (dict(price_per_second=-2.0), "price_per_second must be 0 or more"),
        (dict(width="1280"), "width must be a whole number"),
    ],
)
def test_bad_settings_name_the_input_and_the_fix(kwargs, message):
    with pytest.raises(WanLeanError) as info:
        cost.estimate_cost(**kwargs)
    assert message in str(info.value)
