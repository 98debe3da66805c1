"""comfyui-wanlean core: umT5 tokens, prompt tools, Wan2.2 loading and sampling.

Nothing in this package imports ComfyUI. The node layer (`nodes/` beside it) adapts it to ComfyUI types.
All imports inside the package are relative so it works both as the installed package `wanlean` and as
a subpackage of the ComfyUI custom-node folder.
"""

import os

from .errors import WanLeanError  # the one user-facing exception, shown by ComfyUI as "wanlean.WanLeanError"

__version__ = "0.1.0"

# Shipped data files are found by path, not importlib.resources: ComfyUI imports the pack under a module
# name derived from its folder.
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
CONFIGS_DIR = os.path.join(PACKAGE_DIR, "configs")  # model configs (comfy_files builds modules from them)
DATA_DIR = os.path.join(PACKAGE_DIR, "data")  # template presets
