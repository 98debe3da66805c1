"""The shape rules every Wan2.2 video obeys, checked in one place (the sampler and the cost node).

Frames must be 4k+1 (the VAE compresses time 4×, keeping the first frame); width and height must be
multiples of the model's spatial step (16 for A14B, 32 for TI2V-5B).
"""

from __future__ import annotations

from ..errors import WanLeanError

VAE_TEMPORAL = 4


def check_frames(frames: int, example: int = 81) -> int:
    """`frames` if it is 4k+1, else a WanLeanError naming the nearest valid counts."""
    if frames < 1 or (frames - 1) % VAE_TEMPORAL:
        below = max(1, (frames - 1) // VAE_TEMPORAL * VAE_TEMPORAL + 1)
        raise WanLeanError(
            f"frames must be 4k+1, e.g. {example}; got {frames} (nearest valid: {below} or {below + VAE_TEMPORAL})."
        )
    return frames


def check_size(name: str, value: int, multiple: int, model: str, hint: str) -> int:
    """`value` if it is a positive multiple of `multiple`; `hint` follows in the message (official sizes…)."""
    if value <= 0 or value % multiple:
        nearest = max(multiple, round(value / multiple) * multiple)
        raise WanLeanError(
            f"{name} must be a positive multiple of {multiple} for {model} ({hint}); got {value}, nearest {nearest}."
        )
    return value


def latent_frames(frames: int) -> int:
    return (frames - 1) // VAE_TEMPORAL + 1


def latent_shape(session, settings) -> tuple[int, int, int, int, int]:
    """`[1, C, latent_frames, h, w]` of the model-space latents a session samples for `settings`."""
    latent_count = (settings.frames - 1) // session.vae_scale_temporal + 1
    spatial = session.vae_scale_spatial
    return (1, session.latent_channels, latent_count, settings.height // spatial, settings.width // spatial)
