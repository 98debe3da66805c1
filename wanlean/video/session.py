"""A loaded Wan2.2 model: what the sampler needs, however it was loaded.

Two loaders build it: from a diffusers folder (`wanlean.video.loaders.diffusers_folder.load_diffusers_folder`, node
`WanLeanLoadDiffusers`) and from the single files ComfyUI users have (`WanLeanLoadComfyFiles`). The
sampler (`wanlean.video.sampler`) only ever sees a `WanSession`.

What a loader must provide:
- the transformer(s) and the VAE as diffusers modules (`WanTransformer3DModel`, `AutoencoderKLWan`),
  anywhere (CPU is fine): the sampler places them on `device` according to `memory_mode` before the first
  run (`wanlean.video.memory`), so loaders never move weights for a memory mode themselves;
- a `TextEncoderSource` that tokenizes and loads the umT5 encoder lazily (`LazyTextEncoder` does the lazy
  part for you: give it an identity, a tokenize function and a load function);
- `model_type`, `boundary_ratio`, `expand_timesteps`, `dtype`, `device`, `memory_mode`, `source`.

Interface stable since the first commit of issue 5; later changes stay backwards compatible.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from ..errors import WanLeanError
from .memory import MEMORY_MODES, MemoryState
from .models import MODEL_TYPES, OFFICIAL, OfficialDefaults
from .speed import BASELINE, SpeedOptions

@runtime_checkable
class TextEncoderSource(Protocol):
    """Where prompt embeddings come from. Loading is lazy: on an embedding-cache hit the encoder is
    never loaded (for single files: never read from disk), and the tokenizer is not needed either."""

    identity: str  # stable id of the encoder weights and dtype, part of every embedding-cache key

    def token_ids(self, text: str) -> list[int]:
        """umT5 ids for `text` with `</s>` appended, not truncated and not padded. `text` arrives already
        cleaned the way diffusers and official Wan clean prompts (`wanlean.video.text_encoding.clean_prompt`)."""

    def encoder(self) -> Any:
        """The `transformers.UMT5EncoderModel`, loaded on first use (on any device: the sampler moves it)."""

    @property
    def loaded(self) -> bool:
        """True once `encoder()` has loaded the weights (reports and tests use it)."""


class LazyTextEncoder:
    """A `TextEncoderSource` from three pieces: an identity, a function text → ids (with `</s>`), and a
    function that loads the encoder. Both functions run at most once per need; the encoder is kept."""

    def __init__(self, identity: str, token_ids: Callable[[str], list[int]], load_encoder: Callable[[], Any], pad_id: int = 0,
                 pinned_device: str | None = None, row_spec: Any = None):
        self.identity = identity
        self.pad_id = pad_id
        self.pinned_device = pinned_device  # a device the encoder always runs on, whatever the memory mode
        self.row_spec = row_spec  # embedding_cache.RowSpec: the rows this encoder makes (cache entries must match)
        self._token_ids = token_ids
        self._load_encoder = load_encoder
        self._encoder = None
        self._lock = threading.Lock()

    def token_ids(self, text: str) -> list[int]:
        return list(self._token_ids(text))

    def encoder(self) -> Any:
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load_encoder()
            return self._encoder

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def unload(self) -> None:
        """Drop the encoder (it is loaded again when next needed)."""
        with self._lock:
            self._encoder = None


@dataclass
class WanSession:
    model_type: str  # "A14B" (two experts) or "TI2V-5B" (one transformer, Wan2.2 VAE)
    transformer: Any  # WanTransformer3DModel: the high-noise expert, or TI2V-5B's only transformer
    transformer_2: Any | None  # the low-noise expert (A14B); None for TI2V-5B
    vae: Any  # AutoencoderKLWan (z_dim 16 for A14B, 48 for TI2V-5B)
    text_encoder: TextEncoderSource
    boundary_ratio: float | None  # 0.875 for A14B; None for one transformer
    expand_timesteps: bool  # TI2V-5B: timestep given per token
    dtype: Any  # torch dtype the transformers compute in
    device: Any  # torch.device the denoising runs on
    memory_mode: str = "gpu"  # one of MEMORY_MODES; applied by wanlean.video.memory before the first run
    source: str = ""  # where it was loaded from, for reports
    extras: dict = field(default_factory=dict)  # loader notes for reports (files, formats, LoRAs); never read to decide
    speed: SpeedOptions = BASELINE  # speed levers (node WanLeanSpeed, `speed.with_speed`), applied by the sampler per run

    @property
    def memory_state(self) -> MemoryState:
        """Where `wanlean.video.memory` has put this session's weights. Not a field: a copy
        (`dataclasses.replace`, a LoRA's new pipe) starts unplaced and is placed on its own."""
        state = self.__dict__.get("_memory_state")
        if state is None:
            state = self.__dict__["_memory_state"] = MemoryState()
        return state

    @property
    def official(self) -> OfficialDefaults:
        """The official settings for this model."""
        return OFFICIAL[self.model_type]

    @property
    def fps(self) -> int:
        return self.official.fps

    @property
    def vae_scale_temporal(self) -> int:
        return int(getattr(self.vae.config, "scale_factor_temporal", 4))

    @property
    def vae_scale_spatial(self) -> int:
        return int(getattr(self.vae.config, "scale_factor_spatial", 8))

    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this: VAE downscale × transformer patch (16 for A14B,
        32 for TI2V-5B)."""
        patch = self.transformer.config.patch_size
        return self.vae_scale_spatial * int(max(patch[1], patch[2]))

    @property
    def latent_channels(self) -> int:
        return int(self.transformer.config.in_channels)

    def check(self) -> None:
        """Raise WanLeanError if this is not a usable Wan2.2 session (e.g. another model family)."""
        if not isinstance(self.model_type, str) or self.model_type not in MODEL_TYPES:
            raise WanLeanError(
                f"pipe: model type '{self.model_type}' is not a Wan2.2 model this sampler runs "
                f"({', '.join(MODEL_TYPES)}). Load a Wan2.2 T2V-A14B or TI2V-5B model."
            )
        if self.memory_mode not in MEMORY_MODES:
            raise WanLeanError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}; got '{self.memory_mode}'.")
        if self.model_type == "A14B" and (self.transformer_2 is None or self.boundary_ratio is None):
            raise WanLeanError("pipe: an A14B session needs both experts (transformer_2) and a boundary_ratio.")
        if self.model_type == "TI2V-5B" and not self.expand_timesteps:
            raise WanLeanError("pipe: a TI2V-5B session must set expand_timesteps (timestep per token).")
        if self.transformer is None or self.vae is None or self.text_encoder is None:
            raise WanLeanError("pipe: the session is missing its transformer, VAE or text encoder; load the model again.")
