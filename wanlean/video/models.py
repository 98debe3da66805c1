"""The Wan2.2 models this pack runs, one table: official settings (Wan-Video/Wan2.2 `wan/configs/`) and
the architecture figures the cost model needs. Everything else imports these values from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OfficialDefaults:
    """The official Wan2.2 settings for a model (Wan-Video/Wan2.2 `wan/configs/`)."""

    steps: int
    shift: float
    cfg_high: float  # guidance in the high-noise stage (TI2V-5B: the only stage)
    cfg_low: float  # guidance in the low-noise stage (TI2V-5B: same as cfg_high)
    frames: int
    width: int
    height: int
    fps: int
    boundary: float | None  # expert switch at boundary × 1000; None for one transformer


@dataclass(frozen=True)
class ModelSpec:
    """A model's official settings and the architecture figures behind its cost."""

    name: str
    official: OfficialDefaults
    dim: int
    layers: int
    ffn_dim: int
    vae_spatial: int  # pixels per latent cell
    patch: tuple[int, int, int]  # (frames, height, width) latent cells per token
    sizes: str  # official sizes, for error messages

    @property
    def fps(self) -> int:
        return self.official.fps

    @property
    def two_experts(self) -> bool:
        return self.official.boundary is not None

    @property
    def size_multiple(self) -> int:
        return self.vae_spatial * self.patch[1]


MODELS = {
    "A14B": ModelSpec(
        "A14B",
        OfficialDefaults(steps=40, shift=12.0, cfg_high=4.0, cfg_low=3.0, frames=81, width=1280, height=720, fps=16, boundary=0.875),
        dim=5120, layers=40, ffn_dim=13824, vae_spatial=8, patch=(1, 2, 2), sizes="1280×720 or 832×480",
    ),
    "TI2V-5B": ModelSpec(
        "TI2V-5B",
        OfficialDefaults(steps=50, shift=5.0, cfg_high=5.0, cfg_low=5.0, frames=121, width=1280, height=704, fps=24, boundary=None),
        dim=3072, layers=30, ffn_dim=14336, vae_spatial=16, patch=(1, 2, 2), sizes="1280×704 or 704×1280",
    ),
}
MODEL_TYPES = tuple(MODELS)
OFFICIAL = {name: spec.official for name, spec in MODELS.items()}
A14B = OFFICIAL["A14B"]  # the reference run (cost) and the defaults the node inputs show

# Official Wan2.2 default negative prompt (wan/configs/shared_config.py), also in ComfyUI's templates.
OFFICIAL_NEGATIVE = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，"
    "多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
