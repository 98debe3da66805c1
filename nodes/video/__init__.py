"""Nodes of the Wan2.2 video path: the two loaders, LoRA, the sampler and the cost estimate.

torch and diffusers are imported only when a node runs: without diffusers the nodes still load and say,
when run, which package to install.
"""

import importlib.util
import sys

from .. import _comfy


def _diffusers_missing() -> bool:
    if "diffusers" in sys.modules:
        return sys.modules["diffusers"] is None
    try:
        return importlib.util.find_spec("diffusers") is None
    except (ImportError, ValueError):
        return True


if _diffusers_missing():
    _comfy.log.warning(
        "[WanLean] the Python package 'diffusers' is missing: WanLeanLoadDiffusers and WanLeanSampler load but "
        "refuse to run until it is there. Install it into ComfyUI's Python: pip install -r requirements.txt in the pack folder."
    )
