"""WanLeanLoadDiffusers: a Wan2.2 diffusers pipeline folder from models/diffusers."""

from __future__ import annotations

from ...wanlean.errors import WanLeanError
from .. import _comfy
from .._shared import DEVICE_INPUT, PIPE, dtype_input, memory_mode_input, require_diffusers

KIND, MARKER = "diffusers", "model_index.json"


def diffusers_folder_names() -> list[str]:
    """Folders in ComfyUI's models/diffusers (one or two levels down) that hold a model_index.json."""
    return _comfy.model_subfolders(KIND, MARKER)


def diffusers_folder_path(name: str) -> str:
    """The full path of a listed folder name (only listed names are accepted)."""
    if not name or name not in diffusers_folder_names():
        raise WanLeanError(
            f"folder: '{name}' is not a diffusers folder in models/diffusers. Put the Wan2.2 diffusers folder "
            "there (or list its parent in extra_model_paths.yaml under 'diffusers'), then refresh."
        )
    path = _comfy.find_subfolder(KIND, name, MARKER)
    if path is None:
        raise WanLeanError(f"folder: '{name}' was listed but is gone; refresh and pick again.")
    return path


class WanLeanLoadDiffusers:
    """Loads a Wan2.2 diffusers folder (T2V-A14B or TI2V-5B) for WanLeanSampler."""

    CATEGORY = "WanLean/loaders"
    FUNCTION = "run"
    RETURN_TYPES = (PIPE,)
    RETURN_NAMES = ("pipe",)
    OUTPUT_TOOLTIPS = ("The loaded Wan2.2 model (transformers, VAE, lazily loaded text encoder) for WanLeanSampler.",)
    DESCRIPTION = (
        "Loads a Wan2.2 diffusers pipeline folder from models/diffusers, offline. The text encoder is read "
        "only when a prompt is not in the embedding cache."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "folder": (diffusers_folder_names(), {"tooltip": "A Wan2.2 diffusers folder (with model_index.json) in models/diffusers, e.g. Wan2.2-T2V-A14B-Diffusers or Wan2.2-TI2V-5B-Diffusers."}),
                "dtype": dtype_input("Weights' compute dtype. auto: bf16 on a GPU, fp32 on the CPU. The VAE always runs in fp32, as in official Wan."),
                "memory_mode": memory_mode_input(),
                "device": DEVICE_INPUT,
            }
        }

    def run(self, folder, dtype, memory_mode, device):
        require_diffusers()
        from ...wanlean.video.loaders.diffusers_folder import load_diffusers_folder

        return (load_diffusers_folder(diffusers_folder_path(folder), dtype=dtype, memory_mode=memory_mode, device=device),)


NODE_CLASS_MAPPINGS = {"WanLeanLoadDiffusers": WanLeanLoadDiffusers}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanLoadDiffusers": "WanLean Load Diffusers (Wan2.2)"}
