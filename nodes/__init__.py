"""The node layer: each module adapts one core capability to ComfyUI.

A module whose optional dependency is missing is skipped with a log line naming the package; the rest
of the pack still loads.
"""

from . import routes
from ._registry import collect

# Node modules, in menu order; `prompt/` and `video/` mirror the core's two products. Each exports
# NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS.
NODE_MODULES = (
    "prompt.template",
    "prompt.compress",
    "prompt.truncate",
    "prompt.token_count",
    "video.cost",
    "video.load_diffusers",
    "video.sampler",
    "video.load_comfy_files",
    "video.lora",
    "video.speed",
    "video.aigc_label",
)

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, DISABLED = collect(__name__, NODE_MODULES)
routes.register()  # POST /wanlean/tokens (the editor's live readout), /wanlean/stats (no-op outside ComfyUI)
