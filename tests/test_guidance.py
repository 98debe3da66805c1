"""The CFG pair run as one batch of 2 gives the sequential pair's frames (within float tolerance), counts
the same forwards, and `auto` batches only where it was measured faster."""

import re

import pytest
import torch
from wltest.tiny_wan import tiny_request, tiny_session

from wanlean.errors import WanLeanError
from wanlean.video import guidance
from wanlean.video.guidance import AUTO_CPU_MAX_ELEMENTS, batch_cfg_pair, predict_noise
from wanlean.video.sampler import generate, resolve_settings

# fp32 on the CPU: the batched kernels may add in another order. Measured max abs difference on these tiny
# models: frames 1.2e-7 (A14B) / 2.4e-7 (TI2V-5B), raw latents (× the VAE's std, up to 2.5) 2.4e-6 / 8.8e-6.
# A wrong split (cond and uncond swapped) moves the frames by 0.045.
TOLERANCE = 1e-5  # frames (0–1) and single predictions
LATENT_TOLERANCE = 1e-4  # raw latents


@pytest.fixture(scope="module", params=["A14B", "TI2V-5B"])
def session(request):
    return tiny_session(request.param)


class Calls:
    """Batch size of every call of each expert (forward pre-hooks; nothing in the sampler is patched)."""

    def __init__(self, session):
        self.sizes = []
        experts = [expert for expert in (session.transformer, session.transformer_2) if expert is not None]
        self.handles = [e.register_forward_pre_hook(lambda m, a, k: self.sizes.append(len(k["hidden_states"])), with_kwargs=True)
                        for e in experts]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def run(session, cfg_batch, **overrides):
    with Calls(session) as calls:
        result = generate(session, tiny_request(cfg_batch=cfg_batch, **overrides))
    return result, calls.sizes


def test_batched_pair_gives_the_sequential_frames(session):
    """A14B: both experts (cfg 4 high, 3 low); TI2V-5B: one transformer with a per-token timestep."""
    sequential, sequential_calls = run(session, "off")
    batched, batched_calls = run(session, "on")
    steps = sequential.settings.steps
    assert sequential_calls == [1] * (2 * steps) and batched_calls == [2] * steps  # two calls of 1 vs one call of 2
    assert (batched.latents - sequential.latents).abs().max().item() <= LATENT_TOLERANCE
    assert (batched.frames - sequential.frames).abs().max().item() <= TOLERANCE
    # still the same video, not a video that happens to be close: a different seed is far away
    other, _ = run(session, "off", seed=8)
    assert (other.frames - sequential.frames).abs().max().item() > 100 * TOLERANCE


def test_a_batched_pair_counts_two_forwards_and_the_report_says_how_it_ran(session):
    sequential, _ = run(session, "off")
    batched, _ = run(session, "on")
    assert batched.stats.forwards == sequential.stats.forwards == 2 * batched.settings.steps
    forwards_line = re.compile(r"(transformer|expert): \d+ steps?, (\d+) forwards?")
    assert forwards_line.findall(batched.report) == forwards_line.findall(sequential.report)
    assert "CFG pair: one batch of 2 per guided step (cfg_batch on); forwards count samples" in batched.report
    assert "CFG pair: two forwards one after the other (cfg_batch off)" in sequential.report


def test_stages_without_cfg_run_one_forward_in_either_mode():
    session = tiny_session("A14B")
    for mode in ("on", "off"):
        result, sizes = run(session, mode, cfg_high=1.0, cfg_low=1.0)
        assert sizes == [1] * result.settings.steps and "CFG pair" not in result.report
    # CFG in the low stage only: batched there, one forward in the high stage
    result, sizes = run(session, "on", cfg_high=1.0, cfg_low=3.0)
    high = result.stats.stages["high"].steps
    assert sizes == [1] * high + [2] * (result.settings.steps - high)


def test_predict_noise_combines_the_pair_the_same_way_batched_or_not():
    """Several prompts at once too (the benchmark's 'as one batch'): each sample equals its own pair."""
    session = tiny_session("TI2V-5B")
    expert = session.transformer
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn((2, 48, 2, 2, 2), generator=generator)
    prompt = torch.randn((2, 512, 32), generator=generator)
    negative = torch.randn((2, 512, 32), generator=generator)
    tokens = guidance.video_tokens(latents, expert.config.patch_size)
    timestep = torch.full((2, tokens), 700.0)  # per token, as TI2V-5B's expand_timesteps
    with torch.no_grad():
        together = predict_noise(expert, latents, timestep, prompt, negative, 5.0, batched=True)
        for i in range(2):
            one = slice(i, i + 1)
            cond = expert(hidden_states=latents[one], timestep=timestep[one], encoder_hidden_states=prompt[one], return_dict=False)[0]
            uncond = expert(hidden_states=latents[one], timestep=timestep[one], encoder_hidden_states=negative[one], return_dict=False)[0]
            alone = predict_noise(expert, latents[one], timestep[one], prompt[one], negative[one], 5.0, batched=False)
            assert torch.equal(alone, uncond + 5.0 * (cond - uncond))
            assert (together[one] - alone).abs().max().item() <= TOLERANCE
        # no CFG: one forward on the prompt, whatever `batched` says
        plain = expert(hidden_states=latents, timestep=timestep, encoder_hidden_states=prompt, return_dict=False)[0]
        assert torch.equal(predict_noise(expert, latents, timestep, prompt, None, 1.0, batched=True), plain)


def test_auto_batches_only_where_measured_faster():
    assert batch_cfg_pair("auto", torch.device("cpu"), 24 * 24)[0] is True
    assert batch_cfg_pair("auto", torch.device("cpu"), AUTO_CPU_MAX_ELEMENTS)[0] is True
    batched, why = batch_cfg_pair("auto", "cpu", 1170 * 512)  # the benchmark's mid config: no reliable gain
    assert batched is False and "599,040 > 32,768" in why
    assert AUTO_CPU_MAX_ELEMENTS >= 1170 * 24 and AUTO_CPU_MAX_ELEMENTS < 1170 * 512  # between the measured points
    batched, why = batch_cfg_pair("auto", torch.device("cuda", 0), 24)
    assert batched is False and "unmeasured" in why  # the GPU keeps the sequential pair
    assert batch_cfg_pair("on", torch.device("cuda", 0), 10**6) == (True, "cfg_batch on")
    assert batch_cfg_pair("off", "cpu", 24) == (False, "cfg_batch off")
    with pytest.raises(WanLeanError, match="cfg_batch must be one of auto, on, off; got 'yes'"):
        batch_cfg_pair("yes", "cpu", 24)


def test_the_tiny_run_is_batched_by_default_and_a_bad_mode_is_refused_by_name():
    session = tiny_session("A14B")
    result, sizes = run(session, "auto")
    # 32×32×5: 2 latent frames × 2 × 2 patches = 8 tokens, width 2 heads × 12 = 24
    assert guidance.hidden_elements(session.transformer, torch.zeros(1, 16, 2, 4, 4)) == 8 * 24
    assert set(sizes) == {2} and "auto: batched on the CPU, video tokens × model width 192 ≤ 32,768" in result.report
    with pytest.raises(WanLeanError, match="cfg_batch must be one of auto, on, off; got 'fast'"):
        resolve_settings(session, tiny_request(cfg_batch="fast"))
