"""What several node modules share, written once: the tokenizer choice, the WANLEAN_PIPE type and the
video loaders' common inputs and checks."""

from __future__ import annotations

from ..wanlean import tokens
from ..wanlean.errors import missing_package
from ..wanlean.video.devices import DEVICES, DTYPES
from ..wanlean.video.memory import MEMORY_MODES
from . import _comfy

PIPE = "WANLEAN_PIPE"
NONE = "none"
TOKENIZER_TOOLTIP = (
    "Your umT5 text-encoder file from models/text_encoders for exact counts (only its built-in tokenizer is read), "
    "or 'estimate'."
)
DEVICE_INPUT = (list(DEVICES), {"default": "auto", "tooltip": "Where denoising runs. auto: the GPU if there is one."})


def tokenizer_choices() -> list[str]:
    # "estimate" first: a fresh graph works before any file is chosen, and it is the default.
    return [tokens.ESTIMATE] + [name for name in _comfy.model_files("text_encoders") if name != tokens.ESTIMATE]


def resolve_tokenizer(name: str) -> tokens.Tokenizer:
    """The tokenizer for a COMBO value: "estimate", or a file ComfyUI lists in models/text_encoders."""
    if tokens.is_estimate_name(name):
        return tokens.load_tokenizer(None)
    return tokens.load_tokenizer(_comfy.model_path("text_encoders", name, "tokenizer"))


def dtype_input(tooltip: str) -> tuple:
    return (list(DTYPES), {"default": "auto", "tooltip": tooltip})


MEMORY_MODE_TOOLTIP = (
    "auto (default): at each run, the fastest of the three below that fits the GPU's free memory for that "
    "size and frame count (after ComfyUI's own models are unloaded); the report says which and why. "
    "gpu: everything on the GPU (fastest; A14B bf16 needs ~57 GB for the experts). model_offload: one expert "
    "on the GPU at a time, the other waits in pinned CPU memory (about half the GPU memory; a swap at the "
    "expert switch). sequential_offload: blocks streamed to the GPU one by one (least GPU memory, slowest; "
    "needs accelerate)."
)


def memory_mode_input(tooltip: str = MEMORY_MODE_TOOLTIP) -> tuple:
    return (list(MEMORY_MODES), {"default": "auto", "tooltip": tooltip})


def require_diffusers() -> None:
    """Raise the install hint when diffusers is missing (the video nodes load without it, and say so when run)."""
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise missing_package("diffusers", "WanLean's Wan2.2 video nodes") from None
