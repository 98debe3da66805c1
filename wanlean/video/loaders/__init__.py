"""Loaders that build a `WanSession`: a diffusers folder (`diffusers_folder`) or ComfyUI's single files
(`comfy_files`)."""
