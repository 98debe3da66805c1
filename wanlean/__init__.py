"""comfyui-wanlean core: umT5 tokens, prompt tools, Wan2.2 loading and sampling.

Nothing in this package imports ComfyUI. The node layer (`nodes/` beside it) adapts it to ComfyUI types.
All imports inside the package are relative so it works both as the installed package `wanlean` and as
a subpackage of the ComfyUI custom-node folder.
"""

__version__ = "0.1.0"
