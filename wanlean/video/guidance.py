"""One step's noise prediction: one forward without CFG; with CFG the conditional and unconditional pair,
run one after the other or as one batch of 2, split and combined the same way either way.

Batched, the expert sees the latents twice, the prompt and negative embeddings concatenated and the
timestep twice (TI2V-5B's per-token timestep too), so it runs one call of batch 2 instead of two calls of
batch 1. The arithmetic per sample is the same; only the order of float operations inside the batched
kernels may differ (tests: frames equal within 1e-5 on the tiny models in fp32).

Whether it pays was measured (`benchmarks/bench_cfg_batch.py`, figures in the README). On the CPU one
call of batch 2 saves the per-call overhead of a forward and nothing else: the pair took 0.55–0.61× the
time on the tests' tiny model at 24 video tokens, 0.91–0.98× where a step took 40–400 ms, and 0.93× in one
run, 1.04× in another on a 512-wide 4-block model at 1,170 tokens, where compute dominates (no reliable
gain). So `auto` batches on the CPU only while a sample's hidden state (video tokens × model width) is at
most AUTO_CPU_MAX_ELEMENTS, the largest measured faster; the extra memory is then under a few MB. On a GPU at full size it is unmeasured
here, so `auto` keeps the pair sequential there. `on` forces the batch (twice the transformer's
activation memory; the memory check before a run still counts one sample), `off` the sequential pair.
"""

from __future__ import annotations

from ..errors import WanLeanError
from .schedule import cfg_enabled

CFG_BATCH_MODES = ("auto", "on", "off")
# auto batches the pair on the CPU up to this many hidden-state elements per sample (video tokens × model
# width): measured faster at 576, 12,288 and 28,080; at 599,040 0.93× and 1.04× in two runs (no reliable
# gain). Above it, and on a GPU, sequential.
AUTO_CPU_MAX_ELEMENTS = 32_768


def predict_noise(expert, latent_input, timestep, prompt_embeds, negative_embeds, cfg: float, batched: bool):
    """The guided noise prediction of `expert` for `latent_input` `[B, C, f, h, w]` at `timestep` (`[B]`, or
    `[B, tokens]` for `expand_timesteps`), with `prompt_embeds` / `negative_embeds` `[B, 512, d]`.

    Without CFG (`cfg` ≤ 1) one forward on the prompt; with CFG `uncond + cfg · (cond − uncond)`, the pair
    run as one call of batch 2B when `batched`, else as two calls of batch B.
    """
    if not cfg_enabled(cfg):
        return _forward(expert, latent_input, timestep, prompt_embeds)
    if batched:
        import torch

        count = latent_input.shape[0]
        both = _forward(
            expert, torch.cat([latent_input, latent_input]), torch.cat([timestep, timestep]),
            torch.cat([prompt_embeds, negative_embeds]),
        )
        noise_cond, noise_uncond = both[:count], both[count:]
    else:
        noise_cond = _forward(expert, latent_input, timestep, prompt_embeds)
        noise_uncond = _forward(expert, latent_input, timestep, negative_embeds)
    return noise_uncond + cfg * (noise_cond - noise_uncond)


def _forward(expert, hidden_states, timestep, encoder_hidden_states):
    return expert(hidden_states=hidden_states, timestep=timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


def video_tokens(latents, patch_size) -> int:
    """Video tokens per sample of `latents` `[B, C, f, h, w]` for the transformer's `patch_size` (t, h, w)."""
    _, _, frames, height, width = latents.shape
    return (frames // patch_size[0]) * (height // patch_size[1]) * (width // patch_size[2])


def hidden_elements(transformer, latents) -> int:
    """Elements of one sample's hidden state in `transformer` for `latents`: video tokens × model width."""
    config = transformer.config
    return video_tokens(latents, config.patch_size) * int(config.num_attention_heads) * int(config.attention_head_dim)


def check_mode(mode: str) -> None:
    """Refuse a `cfg_batch` value that is not one of CFG_BATCH_MODES, naming the input."""
    if mode not in CFG_BATCH_MODES:
        raise WanLeanError(f"cfg_batch must be one of {', '.join(CFG_BATCH_MODES)}; got '{mode}'.")


def batch_cfg_pair(mode: str, device, elements: int) -> tuple[bool, str]:
    """(run the CFG pair as one batch of 2, why) for `cfg_batch` `mode` on `device`, with `elements` in one
    sample's hidden state (`hidden_elements`)."""
    check_mode(mode)
    if mode == "on":
        return True, "cfg_batch on"
    if mode == "off":
        return False, "cfg_batch off"
    on_cpu = str(getattr(device, "type", device)) == "cpu"
    if not on_cpu:
        return False, "auto: sequential on a GPU (batching the pair is unmeasured there)"
    size = f"video tokens × model width {elements:,}"
    if elements > AUTO_CPU_MAX_ELEMENTS:
        return False, f"auto: sequential on the CPU, {size} > {AUTO_CPU_MAX_ELEMENTS:,} (no reliable gain measured where compute dominates)"
    return True, f"auto: batched on the CPU, {size} ≤ {AUTO_CPU_MAX_ELEMENTS:,} (measured faster)"
