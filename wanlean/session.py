"""A loaded Wan2.2 model: what the sampler needs, however it was loaded.

Two loaders build it: from a diffusers folder (`WanLeanLoadDiffusers`) and from the single files
ComfyUI users have (`WanLeanLoadComfyFiles`). The sampler only ever sees a `WanSession`.

INTERFACE DRAFT (lead): the sampler issue fleshes this out; the single-file issue builds the same object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

MODEL_TYPES = ("A14B", "TI2V-5B")
MEMORY_MODES = ("gpu", "model_offload", "sequential_offload")


class TextEncoderSource(Protocol):
    """Where prompt embeddings come from. Loading is lazy: on an embedding-cache hit the encoder is
    never loaded (for single files: never read from disk)."""

    identity: str  # stable id of the encoder weights, part of every embedding-cache key

    def token_ids(self, text: str) -> list[int]:
        """umT5 ids for `text` with `</s>`, not truncated and not padded."""

    def encoder(self) -> Any:
        """The UMT5EncoderModel, loaded on first use."""


@dataclass
class WanSession:
    model_type: str  # "A14B" (two experts) or "TI2V-5B" (one transformer, Wan2.2 VAE)
    transformer: Any  # WanTransformer3DModel: the high-noise expert, or TI2V-5B's only transformer
    transformer_2: Any | None  # the low-noise expert (A14B); None for TI2V-5B
    vae: Any  # AutoencoderKLWan
    text_encoder: TextEncoderSource
    boundary_ratio: float | None  # 0.875 for A14B; None for one transformer
    expand_timesteps: bool  # TI2V-5B: timestep given per token
    dtype: Any  # torch dtype the transformers compute in
    device: Any  # torch.device the denoising runs on
    memory_mode: str = "gpu"
    source: str = ""  # where it was loaded from, for reports
    extras: dict = field(default_factory=dict)
