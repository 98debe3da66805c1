"""Load a Wan2.2 diffusers pipeline folder (the layout `WanPipeline.save_pretrained` writes) into a
`WanSession`, offline (`local_files_only`), with the text encoder loaded only when a prompt needs it.

Accepted: T2V-A14B (`transformer` + `transformer_2` + `boundary_ratio`) and TI2V-5B (`expand_timesteps`).
Refused with a message: a folder without `model_index.json`, another pipeline class, Wan2.1 (one
transformer, no boundary, no expand_timesteps).
"""

from __future__ import annotations

import hashlib
import json
import os

from ...errors import WanLeanError, missing_package
from ...safetensors_header import read_header
from ..embedding_cache import RowSpec
from ..devices import resolve_device, resolve_dtype
from ..memory import MEMORY_MODES
from ..session import LazyTextEncoder, WanSession
from .identity import folder_identity

def read_model_index(folder: str) -> tuple[str, dict]:
    """(model_type, model_index) of a Wan2.2 diffusers folder, or a WanLeanError saying what it is instead."""
    name = os.path.basename(os.path.normpath(folder)) or folder
    if not os.path.isdir(folder):
        raise WanLeanError(f"folder: '{folder}' is not a folder. Put the diffusers pipeline folder in models/diffusers.")
    index_path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index_path):
        raise WanLeanError(
            f"folder: '{name}' has no model_index.json, so it is not a diffusers pipeline folder. Download a "
            "Wan2.2 diffusers repository (e.g. Wan-AI/Wan2.2-T2V-A14B-Diffusers) into models/diffusers, or load "
            "ComfyUI single files with WanLeanLoadComfyFiles."
        )
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as exc:
        raise WanLeanError(f"folder: '{name}/model_index.json' cannot be read ({exc}).") from None
    class_name = index.get("_class_name")
    if class_name != "WanPipeline":
        raise WanLeanError(
            f"folder: '{name}' holds a {class_name or 'unknown'} pipeline; this loader needs a Wan2.2 text-to-video "
            "WanPipeline (T2V-A14B or TI2V-5B)."
        )
    has_low_noise = _component_present(index, "transformer_2")
    if has_low_noise and index.get("boundary_ratio") is not None:
        model_type = "A14B"
    elif index.get("expand_timesteps"):
        model_type = "TI2V-5B"
    else:
        raise WanLeanError(
            f"folder: '{name}' is a Wan2.1 pipeline (one transformer, no boundary_ratio, no expand_timesteps). "
            "This sampler runs Wan2.2 T2V-A14B or TI2V-5B; download e.g. Wan-AI/Wan2.2-T2V-A14B-Diffusers."
        )
    needed = ["transformer", "vae", "text_encoder", "tokenizer"] + (["transformer_2"] if model_type == "A14B" else [])
    missing = [part for part in needed if not os.path.isdir(os.path.join(folder, part))]
    if missing:
        raise WanLeanError(f"folder: '{name}' lacks the subfolder(s) {', '.join(missing)}; the download may be incomplete.")
    return model_type, index


def check_weight_files(folder: str, parts: list[str]) -> None:
    """Read the header of every .safetensors file in the `parts` subfolders (a few KB each), so a damaged
    file is named with its tensor (`read_header` checks each tensor's shape and dtype against its bytes)
    before diffusers or transformers read it and fail without naming either."""
    name = os.path.basename(os.path.normpath(folder)) or folder
    for part in parts:
        root = os.path.join(folder, part)
        for file_name in sorted(os.listdir(root)):
            if file_name.endswith(".safetensors"):
                read_header(os.path.join(root, file_name), what=f"folder: '{name}/{part}'")


def _component_present(index: dict, key: str) -> bool:
    entry = index.get(key)
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] is not None and entry[1] is not None


def load_diffusers_folder(folder: str, dtype: str = "auto", memory_mode: str = "gpu", device: str = "auto") -> WanSession:
    """A `WanSession` from a Wan2.2 diffusers folder. Weights load on the CPU; the sampler places them on
    `device` for `memory_mode` before its first run. The VAE stays fp32 (as official Wan runs it)."""
    if memory_mode not in MEMORY_MODES:
        raise WanLeanError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}; got '{memory_mode}'.")
    model_type, index = read_model_index(folder)
    try:
        import torch
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
    except ImportError as exc:
        raise missing_package(exc.name or "diffusers", "WanLean's Wan2.2 loader") from None
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    check_weight_files(folder, ["transformer", "vae", "text_encoder"] + (["transformer_2"] if model_type == "A14B" else []))
    folder = os.path.realpath(folder)
    transformer_parts = ["transformer"] + (["transformer_2"] if model_type == "A14B" else [])
    weights_identity = folder_identity(folder, transformer_parts)  # before loading: the files as they are read

    def load_transformer(subfolder):
        if _accelerate_available():
            return WanTransformer3DModel.from_pretrained(folder, subfolder=subfolder, torch_dtype=torch_dtype, local_files_only=True, use_safetensors=True).eval()
        # ComfyUI does not install accelerate, without which diffusers cannot load a Wan transformer.
        config = WanTransformer3DModel.load_config(folder, subfolder=subfolder, local_files_only=True)
        return wan_transformer_from_state_dict(config, read_state_dict(os.path.join(folder, subfolder)), torch_dtype)

    transformer = load_transformer("transformer")
    transformer_2 = load_transformer("transformer_2") if model_type == "A14B" else None
    # Without accelerate, say low_cpu_mem_usage=False ourselves: diffusers would otherwise log that it
    # "cannot initialize model with low cpu memory usage", as if accelerate were needed (it is not).
    vae = AutoencoderKLWan.from_pretrained(
        folder, subfolder="vae", torch_dtype=torch.float32, local_files_only=True, use_safetensors=True,
        low_cpu_mem_usage=_accelerate_available(),
    ).eval()
    return WanSession(
        model_type=model_type,
        transformer=transformer,
        transformer_2=transformer_2,
        vae=vae,
        text_encoder=diffusers_text_encoder(folder, torch_dtype),
        boundary_ratio=float(index["boundary_ratio"]) if model_type == "A14B" else None,
        expand_timesteps=bool(index.get("expand_timesteps", False)),
        dtype=torch_dtype,
        device=torch_device,
        memory_mode=memory_mode,
        source=f"diffusers folder {os.path.basename(folder)}",
        extras={"folder": folder},
        weights_identity=weights_identity,
    )


def diffusers_text_encoder(folder: str, torch_dtype) -> LazyTextEncoder:
    """The folder's tokenizer and umT5 encoder, both loaded on first use."""
    tokenizer_holder: list = []

    def token_ids(text: str) -> list[int]:
        if not tokenizer_holder:
            from transformers import AutoTokenizer

            tokenizer_holder.append(AutoTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True))
        # verbose=False: over-long prompts are expected here; the cut at 512 is ours, and reported
        return tokenizer_holder[0](text, add_special_tokens=True, verbose=False).input_ids

    def load_encoder():
        from transformers import UMT5EncoderModel

        return UMT5EncoderModel.from_pretrained(folder, subfolder="text_encoder", torch_dtype=torch_dtype, local_files_only=True, use_safetensors=True).eval()

    row_spec = RowSpec(_encoder_width(folder), str(torch_dtype).removeprefix("torch."))
    return LazyTextEncoder(_encoder_identity(folder, torch_dtype), token_ids, load_encoder, row_spec=row_spec)


def _encoder_width(folder: str) -> int:
    """d_model from text_encoder/config.json: the width of every embedding row the encoder makes."""
    path = os.path.join(folder, "text_encoder", "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["d_model"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WanLeanError(f"{path} cannot be read as a umT5 config with d_model ({exc}).") from None


def _encoder_identity(folder: str, torch_dtype) -> str:
    """Changes when the encoder's weights, config, tokenizer or dtype change."""
    digest = hashlib.sha256()
    for part in ("text_encoder", "tokenizer"):
        root = os.path.join(folder, part)
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if os.path.isfile(path):
                stat = os.stat(path)
                digest.update(f"{part}/{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"diffusers:{os.path.basename(folder)}:{str(torch_dtype).removeprefix('torch.')}:{digest.hexdigest()[:16]}"


def _accelerate_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def read_state_dict(component_folder: str) -> dict:
    """The tensors of a diffusers component folder: one safetensors file or an index of shards."""
    from safetensors.torch import load_file

    names = os.listdir(component_folder)
    index = [n for n in names if n.endswith(".safetensors.index.json")]
    if index:
        with open(os.path.join(component_folder, index[0]), encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    else:
        shards = [n for n in names if n.endswith(".safetensors")]
    if not shards:
        raise WanLeanError(
            f"folder: '{component_folder}' has no .safetensors weights (only safetensors diffusers folders are supported)."
        )
    state_dict = {}
    for shard in shards:
        state_dict.update(load_file(os.path.join(component_folder, shard)))
    return state_dict


def wan_transformer_from_state_dict(config: dict, state_dict: dict, torch_dtype, device="cpu"):
    """A `WanTransformer3DModel` from a config and a diffusers-named state dict, without accelerate and
    without initialising random weights first: built on the meta device, then the tensors are assigned.
    Like diffusers' `from_pretrained(torch_dtype=...)`, the modules in `_keep_in_fp32_modules` stay fp32.
    (Single-file loaders can use this too, after converting key names.)"""
    import torch
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(config)
    keep_fp32 = WanTransformer3DModel._keep_in_fp32_modules or []
    converted = {}
    for name, tensor in state_dict.items():
        dtype = torch.float32 if any(part in name.split(".") for part in keep_fp32) else torch_dtype
        converted[name] = tensor.to(device=device, dtype=dtype) if tensor.is_floating_point() else tensor.to(device)
    missing, unexpected = model.load_state_dict(converted, strict=False, assign=True)
    if missing or unexpected:
        raise WanLeanError(
            f"transformer weights do not match the config: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})."
        )
    restore_rope(model, device)
    return model.eval()


def restore_rope(model, device="cpu") -> None:
    """The rotary tables are non-persistent buffers computed in __init__: on a model built on the meta
    device they must be computed again (in float64, as diffusers does)."""
    import torch

    rope = model.rope
    with torch.device(device):
        model.rope = type(rope)(rope.attention_head_dim, rope.patch_size, rope.max_seq_len)
    leftover = [name for name, tensor in list(model.named_parameters()) + list(model.named_buffers()) if tensor.is_meta]
    if leftover:
        raise WanLeanError(f"transformer: {len(leftover)} tensors were never loaded (e.g. {leftover[:3]}).")
