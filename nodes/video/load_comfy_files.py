"""WanLeanLoadComfyFiles: Wan2.2 from the single files in ComfyUI's model folders.

Thin: file names become paths (only names ComfyUI lists), everything else is
`wanlean.video.loaders.comfy_files`. torch and diffusers are imported only when the node runs.
"""

from __future__ import annotations

from ...wanlean.video.devices import TEXT_ENCODER_DEVICES, WEIGHT_STORAGES
from .. import _comfy
from .._shared import DEVICE_INPUT, NONE, PIPE, dtype_input, memory_mode_input, require_diffusers

class _LoadProgress:
    """ComfyUI's progress bar over the tensors loaded; Cancel stops the load between two tensors."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = _comfy.progress_bar(total)
        if done % 16 == 0 or done == total:
            self.bar.update_absolute(done, total)
            _comfy.throw_if_interrupted()


class WanLeanLoadComfyFiles:
    """Loads Wan2.2 (T2V-A14B or TI2V-5B) from the files ComfyUI users have, fp8_scaled included."""

    CATEGORY = "WanLean/loaders"
    FUNCTION = "run"
    RETURN_TYPES = (PIPE,)
    RETURN_NAMES = ("pipe",)
    OUTPUT_TOOLTIPS = ("The loaded Wan2.2 model (experts, VAE, lazily loaded text encoder) for WanLeanSampler or WanLeanLoRA.",)
    DESCRIPTION = (
        "Loads Wan2.2 from ComfyUI's own files: the two A14B experts (or TI2V-5B alone) from "
        "models/diffusion_models, the umT5 text encoder (with its tokenizer inside) from models/text_encoders "
        "and the Wan VAE from models/vae. fp16, bf16, fp32, fp8 and fp8_scaled files; what each file is, is "
        "read from its tensors, and a wrong file is named with the fix. Nothing is downloaded."
    )

    @classmethod
    def INPUT_TYPES(cls):
        diffusion_models = _comfy.model_files("diffusion_models")
        return {
            "required": {
                "high_noise_model": (diffusion_models, {"tooltip": "The Wan2.2 T2V-A14B high-noise expert, e.g. wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors, or the TI2V-5B model (wan2.2_ti2v_5B_fp16.safetensors)."}),
                "low_noise_model": ([NONE] + diffusion_models, {"tooltip": "The T2V-A14B low-noise expert, e.g. wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors. 'none' for TI2V-5B, which is a single model. With an A14B expert, 'none' picks the low-noise file named like the high-noise one (high_noise → low_noise) when it is listed; the report names it."}),
                "text_encoder": (_comfy.model_files("text_encoders"), {"tooltip": "ComfyUI's umT5-XXL file, e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors (its tokenizer is inside). It is read only when a prompt is not in the embedding cache."}),
                "vae": (_comfy.model_files("vae"), {"tooltip": "wan_2.1_vae.safetensors for T2V-A14B, wan2.2_vae.safetensors for TI2V-5B."}),
                "dtype": dtype_input("What the experts and the text encoder compute in. auto: bf16 on a GPU, fp32 on the CPU. The VAE always runs in fp32. An fp8 file is dequantized to this dtype."),
                "memory_mode": memory_mode_input(),
            },
            "optional": {
                "weight_storage": (list(WEIGHT_STORAGES), {"default": "as_file", "tooltip": "as_file: every weight becomes the dtype above (an fp8_scaled 14 GB expert takes ~28 GB in bf16). fp8: the experts' block weights stay float8 with their scales and are dequantized one layer at a time while computing in the dtype above: memory ≈ the fp8 file's size, slightly slower. An fp16/bf16 file is quantized to fp8 on load."}),
                "text_encoder_device": (list(TEXT_ENCODER_DEVICES), {"default": "cpu", "tooltip": "Where umT5-XXL (6-11 GB) runs. cpu: keeps GPU memory for the experts; it runs once per new prompt (cached after). gpu: faster encoding, needs the GPU memory while it runs."}),
                "device": DEVICE_INPUT,
            },
        }

    def run(self, high_noise_model, low_noise_model, text_encoder, vae, dtype, memory_mode,
            weight_storage="as_file", text_encoder_device="cpu", device="auto"):
        require_diffusers()
        from ...wanlean.video.loaders.comfy_files.load import load_comfy_files, low_noise_partner

        high = _comfy.model_path("diffusion_models", high_noise_model, "high_noise_model")
        low = None if low_noise_model in (None, "", NONE) else _comfy.model_path("diffusion_models", low_noise_model, "low_noise_model")
        # A combo's default is fixed in INPUT_TYPES, so 'none' is matched here: the core uses this file
        # only if the high-noise file is an A14B expert.
        partner = low_noise_partner(high_noise_model, _comfy.model_files("diffusion_models")) if low is None else None
        session = load_comfy_files(
            high, low, _comfy.model_path("text_encoders", text_encoder, "text_encoder"), _comfy.model_path("vae", vae, "vae"),
            dtype=dtype, memory_mode=memory_mode, weight_storage=weight_storage,
            text_encoder_device=text_encoder_device, device=device, progress=_LoadProgress(),
            low_noise_default=_comfy.model_path("diffusion_models", partner, "low_noise_model") if partner else None,
        )
        return (session,)


NODE_CLASS_MAPPINGS = {"WanLeanLoadComfyFiles": WanLeanLoadComfyFiles}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanLoadComfyFiles": "WanLean Load ComfyUI Files (Wan2.2)"}
