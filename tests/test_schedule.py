import pytest

from wanlean.errors import WanLeanError
from wanlean.video.schedule import plan_steps


@pytest.mark.parametrize(
    "steps, shift, high, low",
    [(40, 12.0, 26, 14), (40, 3.0, 13, 27), (20, 8.0, 11, 9), (4, 5.0, 2, 2)],
)
def test_expert_split_moves_with_shift(steps, shift, high, low):
    plan = plan_steps(steps, shift, 0.875)
    assert (plan.high_noise_steps, plan.low_noise_steps) == (high, low)
    assert len(plan.timesteps) == steps


def test_lightx2v_four_step_timesteps():
    assert plan_steps(4, 5.0, 0.875).timesteps == (999.0, 937.0, 833.0, 625.0)


def test_single_expert_counts_every_step_high():
    plan = plan_steps(50, 5.0, None)
    assert (plan.high_noise_steps, plan.low_noise_steps) == (50, 0)


def test_bad_values_name_the_input():
    with pytest.raises(WanLeanError, match="steps"):
        plan_steps(0, 5.0, 0.875)
    with pytest.raises(WanLeanError, match="shift"):
        plan_steps(10, 0.0, 0.875)
    with pytest.raises(WanLeanError, match="boundary"):
        plan_steps(10, 5.0, 1.5)
    with pytest.raises(WanLeanError, match="sampler"):
        plan_steps(10, 5.0, 0.875, sampler="ddim")
