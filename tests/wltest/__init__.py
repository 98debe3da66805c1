"""Test support for comfyui-wanlean: tiny models built in code, a real-ComfyUI harness, pack loading."""
