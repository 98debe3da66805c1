"""Timesteps and the expert split, from diffusers' real schedulers (shared by the sampler and the cost node).

The A14B model switches from the high-noise to the low-noise expert when the timestep falls below
`boundary × 1000`. Because the split is on the timestep's value, the shift moves it: 40 UniPC steps at
shift 12 give 26 high + 14 low steps, at shift 3 only 13 + 27.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WanLeanError

SAMPLERS = ("unipc", "euler")
NUM_TRAIN_TIMESTEPS = 1000


def make_scheduler(sampler: str, shift: float):
    """A fresh flow-matching scheduler: UniPC (official Wan's default solver) or Euler, with `shift`."""
    if shift <= 0:
        raise WanLeanError(f"shift must be greater than 0 (official: 12.0 for A14B, 5.0 for TI2V-5B); got {shift}.")
    if sampler == "unipc":
        from diffusers import UniPCMultistepScheduler

        return UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            num_train_timesteps=NUM_TRAIN_TIMESTEPS,
            flow_shift=shift,
        )
    if sampler == "euler":
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=shift)
    raise WanLeanError(f"sampler must be one of {', '.join(SAMPLERS)}; got '{sampler}'.")


@dataclass(frozen=True)
class StepPlan:
    timesteps: tuple[float, ...]
    high_noise_steps: int  # steps run by the high-noise expert (t >= boundary × 1000)
    low_noise_steps: int
    boundary_timestep: float | None


def plan_steps(steps: int, shift: float, boundary: float | None, sampler: str = "unipc") -> StepPlan:
    """The timesteps a run will use and how many fall on each expert. `boundary` None means one
    expert (TI2V-5B): every step counts as high-noise."""
    if steps < 1:
        raise WanLeanError(f"steps must be at least 1 (official: 40 for A14B, 50 for TI2V-5B); got {steps}.")
    if boundary is not None and not 0.0 <= boundary <= 1.0:
        raise WanLeanError(f"boundary must be between 0 and 1 (official: 0.875); got {boundary}.")
    scheduler = make_scheduler(sampler, shift)
    scheduler.set_timesteps(steps)
    timesteps = tuple(float(t) for t in scheduler.timesteps)
    boundary_timestep = None if boundary is None else boundary * NUM_TRAIN_TIMESTEPS
    high = len(timesteps) if boundary_timestep is None else sum(t >= boundary_timestep for t in timesteps)
    return StepPlan(timesteps, high, len(timesteps) - high, boundary_timestep)


def cfg_enabled(cfg: float) -> bool:
    """CFG runs the unconditional pass too, but only where that stage's scale is above 1."""
    return cfg > 1.0


def forwards_per_step(cfg: float) -> int:
    """Transformer forwards one step of a stage costs: two with CFG on, one without."""
    return 2 if cfg_enabled(cfg) else 1


def count_forwards(plan: StepPlan, cfg_high: float, cfg_low: float) -> int:
    """Transformer forwards a run needs: per stage, its steps times its forwards per step."""
    return plan.high_noise_steps * forwards_per_step(cfg_high) + plan.low_noise_steps * forwards_per_step(cfg_low)
