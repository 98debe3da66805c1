"""`load_comfy_files`: ComfyUI's single files → the same `WanSession` the diffusers-folder loader builds.

Everything is checked from the files' headers before a weight is read: what each file is, that the
experts, the VAE and the text encoder belong together, and that the same expert was not chosen twice.
Weights then stream into meta-initialised modules (`build.py`); the text encoder is only read when a prompt
misses the embedding cache.
"""

from __future__ import annotations

import gc
import os
import re

import torch

from ....errors import WanLeanError, missing_package
from ...devices import TEXT_ENCODER_DEVICES, WEIGHT_STORAGES, resolve_device, resolve_dtype
from ...memory import MEMORY_MODES
from ...models import OFFICIAL
from ...session import WanSession
from .build import empty_weights, load_module
from ..identity import files_identity
from .detect import A14B_FILES, ModelFile, fingerprint, inspect_diffusion_model, inspect_text_encoder, inspect_vae
from .keymaps import transformer_map, vae_map
from .umt5 import comfy_text_encoder

NONE = "none"


def load_comfy_files(
    high_noise_model: str,
    low_noise_model: str | None,
    text_encoder: str,
    vae: str,
    dtype: str = "auto",
    memory_mode: str = "gpu",
    weight_storage: str = "as_file",
    text_encoder_device: str = "cpu",
    device: str = "auto",
    progress=None,
    low_noise_default: str | None = None,
) -> WanSession:
    """A `WanSession` from full paths to ComfyUI's files. `low_noise_model` is None (or "none") for TI2V-5B.

    - `low_noise_default`: the low-noise expert to use when `low_noise_model` is None and the high-noise
      file turns out to be an A14B expert (the node passes the file named like it, see `low_noise_partner`);
      ignored otherwise. The report's source names the file used.

    - `dtype`: what the transformers compute in ("auto": bf16 on a GPU, fp32 on the CPU). The VAE runs in
      fp32, the text encoder in `dtype`.
    - `weight_storage`: "as_file" turns every weight into `dtype` (an fp8 file takes twice its size in bf16);
      "fp8" keeps the transformer blocks' Linear weights float8 with their scales and dequantizes one layer
      at a time while computing in `dtype` (an fp16/bf16 file is quantized to fp8 on load).
    - `text_encoder_device`: "cpu" (saves GPU memory; umT5-XXL runs once per new prompt) or "gpu".
    - `progress(done, total)`: called after each tensor.
    """
    if memory_mode not in MEMORY_MODES:
        raise WanLeanError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}; got '{memory_mode}'.")
    if weight_storage not in WEIGHT_STORAGES:
        raise WanLeanError(f"weight_storage must be one of {', '.join(WEIGHT_STORAGES)}; got '{weight_storage}'.")
    if text_encoder_device not in TEXT_ENCODER_DEVICES:
        raise WanLeanError(f"text_encoder_device must be one of {', '.join(TEXT_ENCODER_DEVICES)}; got '{text_encoder_device}'.")
    if low_noise_model in ("", NONE):
        low_noise_model = None
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)

    high = inspect_diffusion_model(high_noise_model, "high_noise_model")
    picked = None
    if low_noise_model is None and low_noise_default and high.family == "A14B":
        low_noise_model = picked = low_noise_default
    low = inspect_diffusion_model(low_noise_model, "low_noise_model") if low_noise_model else None
    check_experts(high, low)
    vae_file = inspect_vae(vae, "vae")
    check_vae(high, vae_file)
    te_file = inspect_text_encoder(text_encoder, "text_encoder")
    if te_file.config["d_model"] != high.config["text_dim"]:
        raise WanLeanError(
            f"text_encoder: '{te_file.name}' produces {te_file.config['d_model']}-wide embeddings but "
            f"'{high.name}' expects {high.config['text_dim']}; choose the umT5-XXL file that belongs to Wan2.2."
        )

    try:
        from diffusers import AutoencoderKLWan
    except ImportError as exc:
        raise missing_package(exc.name or "diffusers", "Loading Wan2.2 files") from None

    experts = {"high_noise_model": high.path, **({"low_noise_model": low.path} if low is not None else {})}
    weights_identity = files_identity(experts, weight_storage)  # before loading: the files as they are read
    total = sum(len(f.names()) for f in (high, low, vae_file) if f is not None)
    counter = [0]

    def tick():
        counter[0] += 1
        if progress is not None:
            progress(counter[0], total)

    transformer_1 = load_transformer(high, torch_dtype, weight_storage, "high_noise_model", progress=tick)
    transformer_2 = load_transformer(low, torch_dtype, weight_storage, "low_noise_model", progress=tick) if low is not None else None
    with empty_weights():
        vae_model = AutoencoderKLWan.from_config(vae_file.config)
    vae_model = load_module(vae_model, vae_file, vae_map(vae_file.names(), vae_file.family if vae_file.layout == "wan" else "diffusers"), torch.float32, "vae", progress=tick)

    model_type = high.family
    pinned_encoder_device = "cpu" if text_encoder_device == "cpu" else None  # None: the memory mode places umT5
    files = {"high_noise_model": high, "low_noise_model": low, "vae": vae_file, "text_encoder": te_file}
    return WanSession(
        model_type=model_type,
        transformer=transformer_1,
        transformer_2=transformer_2,
        vae=vae_model,
        text_encoder=comfy_text_encoder(te_file, torch_dtype, weight_storage, pinned_device=pinned_encoder_device),
        boundary_ratio=OFFICIAL[model_type].boundary,
        expand_timesteps=model_type == "TI2V-5B",
        dtype=torch_dtype,
        device=torch_device,
        memory_mode=memory_mode,
        source="ComfyUI files " + " + ".join(
            f.name + (" (picked by name for low_noise_model 'none')" if slot == "low_noise_model" and picked else "")
            for slot, f in files.items() if f is not None
        ),
        extras={
            "files": {slot: f.path for slot, f in files.items() if f is not None},
            "formats": {slot: f.description for slot, f in files.items() if f is not None},
            "weight_storage": weight_storage,
            "text_encoder_device": pinned_encoder_device,  # reported; the encoder's pinned_device decides
            "low_noise_model_picked": picked,  # low_noise_model was 'none': the file named like the high-noise one
        },
        weights_identity=weights_identity,
    )


def load_transformer(file: ModelFile, torch_dtype, weight_storage: str = "as_file", what: str = "high_noise_model", progress=None):
    """One WanTransformer3DModel from an inspected file, streamed tensor by tensor."""
    from diffusers import WanTransformer3DModel

    with empty_weights():
        model = WanTransformer3DModel.from_config(file.config)
    fp8 = block_linear_names(model) if weight_storage == "fp8" else set()
    loaded = load_module(model, file, transformer_map(file.names(), file.layout, what), torch_dtype, what, fp8, progress=progress)
    gc.collect()
    return loaded


def block_linear_names(model) -> set[str]:
    """The transformer blocks' Linear layers (attention projections and feed-forward): ~99% of the
    weights. Embedders, modulation and the head stay in `dtype` (diffusers reads the time embedder's
    weight dtype to cast its input, so it must stay a compute dtype)."""
    return {name for name, module in model.named_modules() if name.startswith("blocks.") and isinstance(module, torch.nn.Linear)}


_NOISE_WORD = re.compile(r"(?<![a-z])(high|low)(?![a-z])", re.IGNORECASE)


def _noise_words(path: str) -> set[str]:
    return {word.lower() for word in _NOISE_WORD.findall(os.path.basename(path))}


def low_noise_partner(high_noise_name: str, names: list[str]) -> str | None:
    """The name in `names` of the low-noise expert named like `high_noise_name`: the same name with its one
    word 'high' (as in `wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors`) read 'low', in the same folder
    (case of the word kept; an exact match first, then one differing only in case). None when the name has
    no single 'high' word, says 'low' too, or no such file is listed."""
    cut = max(high_noise_name.rfind("/"), high_noise_name.rfind("\\")) + 1  # ComfyUI lists "sub/name" ("sub\name" on Windows)
    folder, base = high_noise_name[:cut], high_noise_name[cut:]
    words = [word.lower() for word in _NOISE_WORD.findall(base)]
    if words != ["high"]:
        return None
    low_base = _NOISE_WORD.sub(lambda m: {"high": "low", "HIGH": "LOW", "High": "Low"}.get(m.group(1), "low"), base)
    wanted = folder + low_base
    if wanted in names:
        return wanted
    folded = [name for name in names if name.lower() == wanted.lower() and name != high_noise_name]
    return folded[0] if len(folded) == 1 else None


def check_experts(high: ModelFile, low: ModelFile | None) -> None:
    """Both experts present for A14B, one model for TI2V-5B, the same architecture, different weights.

    The two A14B experts have identical names and shapes, so no tensor says which is the high-noise one.
    Same weights in both slots are caught by content (`fingerprint`); a swapped or doubled pair is caught
    by a documented file-name heuristic: the official names say `high_noise` / `low_noise`, and a name that
    says only the other one is refused (rename a file if it is wrong)."""
    if high.family == "TI2V-5B":
        if low is not None:
            raise WanLeanError(
                f"low_noise_model: '{high.name}' is TI2V-5B, a single model; set low_noise_model to 'none'."
            )
        return
    if low is None:
        raise WanLeanError(
            f"low_noise_model: 'none', but high_noise_model '{high.name}' is an A14B expert, and Wan2.2 T2V-A14B "
            f"needs both experts. Choose the low-noise expert in low_noise_model ({A14B_FILES})."
        )
    if low.family != "A14B":
        raise WanLeanError(f"low_noise_model: '{low.name}' is {low.description}, not an A14B expert like '{high.name}'.")
    if high.config != low.config:
        raise WanLeanError(
            f"low_noise_model: '{low.name}' ({low.description}) and '{high.name}' ({high.description}) have different "
            "architectures; choose the two experts of the same Wan2.2 T2V-A14B release."
        )
    if os.path.realpath(high.path) == os.path.realpath(low.path) or fingerprint(high) == fingerprint(low):
        raise WanLeanError(
            f"low_noise_model: '{low.name}' holds the same weights as high_noise_model '{high.name}'. Choose the "
            "high-noise expert for high_noise_model and the low-noise expert for low_noise_model."
        )
    high_words, low_words = _noise_words(high.path), _noise_words(low.path)
    if high_words == {"low"} and low_words == {"high"}:
        raise WanLeanError(
            f"high_noise_model / low_noise_model: '{high.name}' and '{low.name}' look swapped (by their names). "
            "Put the high-noise expert in high_noise_model; rename the files if their names are wrong."
        )
    if high_words == low_words and len(high_words) == 1:
        which = next(iter(high_words))
        raise WanLeanError(
            f"high_noise_model / low_noise_model: both '{high.name}' and '{low.name}' are named as {which}-noise "
            "experts. Choose one high-noise and one low-noise expert; rename the files if their names are wrong."
        )


def check_vae(transformer: ModelFile, vae: ModelFile) -> None:
    wanted = "2.1" if transformer.family == "A14B" else "2.2"
    if vae.family != wanted:
        example = "wan_2.1_vae.safetensors" if wanted == "2.1" else "wan2.2_vae.safetensors"
        raise WanLeanError(
            f"vae: '{vae.name}' is the Wan{vae.family} VAE ({vae.config['z_dim']} latent channels), but "
            f"{transformer.description} needs the Wan{wanted} VAE ({transformer.config['in_channels']} channels), "
            f"e.g. {example}."
        )
