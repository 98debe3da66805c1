"""comfyui-wanlean: Wan2.2 text-to-video on diffusers, and umT5-exact prompt tools, for ComfyUI.

ComfyUI imports this folder as a package; everything below uses relative imports because ComfyUI has a
top-level module of its own named `nodes`.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
