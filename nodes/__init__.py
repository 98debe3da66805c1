"""The node layer: each module adapts one core capability to ComfyUI.

A module whose optional dependency is missing is skipped with a log line naming the package; the rest
of the pack still loads.
"""

from ._registry import collect

# Node modules, in menu order. Each exports NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS.
NODE_MODULES = (
    "prompt_template",
    "compress",
    "truncate",
    "token_count",
    "generation_cost",
    "wan_sampler",
    "wan_files",
)

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, DISABLED = collect(__name__, NODE_MODULES)
