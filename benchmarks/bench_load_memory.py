"""Peak host memory while loading a ~1 GB Wan expert file, and resident weight memory with fp8 storage.

Writes Wan-architecture expert files in ComfyUI's original layout (random weights, A14B-style blocks at a
smaller width so one file is ~1 GB): bf16, and fp8_scaled with real per-layer scales. Each load runs in a
fresh Python process; its peak resident memory (`ru_maxrss`) minus the process's resident memory just
before loading (torch and diffusers imported) is the load's own peak, compared with the file's size.

    python benchmarks/bench_load_memory.py                 # ~1 GB files in a temporary folder
    python benchmarks/bench_load_memory.py --gb 2 --keep   # bigger files, kept for reruns

Targets (issue 6): peak ≤ 1.5 × the file for a same-dtype load (no second copy of the model anywhere);
with weight_storage=fp8 the resident weights ≈ the fp8 file's size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

WIDTH = 2048  # 16 heads of 128, as every Wan model
FFN = 8192
TEXT_DIM = 4096
BYTES_PER_BLOCK_BF16 = 2 * (8 * WIDTH * WIDTH + 2 * WIDTH * FFN)  # attention (2 × q,k,v,o) + feed-forward


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def write_files(folder: str, gigabytes: float) -> dict:
    """The same random expert as bf16 and as fp8_scaled (ComfyUI's names, per-layer scale_weight)."""
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from wltest.comfy_formats import QUANTIZABLE_TRANSFORMER, original_transformer_names

    from wanlean.video.loaders.comfy_files.build import empty_weights
    from wanlean.video.loaders.comfy_files.quant import quantize_fp8

    layers = max(1, round(gigabytes * 1e9 / BYTES_PER_BLOCK_BF16))
    with empty_weights():
        model = WanTransformer3DModel(
            num_attention_heads=WIDTH // 128, attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=TEXT_DIM, freq_dim=256, ffn_dim=FFN, num_layers=layers,
        )
    names = original_transformer_names(model)
    shapes = {names[n]: tuple(p.shape) for n, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    paths = {}
    for fmt in ("bf16", "fp8_scaled"):
        tensors = {}
        for name, shape in shapes.items():
            value = torch.randn(shape, generator=generator) * 0.02
            if fmt == "fp8_scaled" and QUANTIZABLE_TRANSFORMER.search(name):
                tensors[name], tensors[name[: -len("weight")] + "scale_weight"] = quantize_fp8(value)
            else:
                tensors[name] = value.to(torch.bfloat16)
            del value
        if fmt == "fp8_scaled":
            tensors["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
        paths[fmt] = os.path.join(folder, f"wan_expert_{layers}layers_{fmt}.safetensors")
        save_file(tensors, paths[fmt])
        del tensors
    return paths


def child(path: str, dtype_name: str, storage: str, method: str) -> None:
    """Runs in a fresh process: load once, print one JSON line."""
    import torch

    from wanlean.video.loaders.comfy_files.detect import inspect_diffusion_model
    from wanlean.video.loaders.comfy_files.load import load_transformer

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    file = inspect_diffusion_model(path)
    # everything the load imports, imported before the baseline (inside ComfyUI it already is)
    from diffusers import WanTransformer3DModel  # noqa: F401
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers  # noqa: F401

    baseline = rss_bytes()
    started = time.perf_counter()
    if method == "wanlean":
        model = load_transformer(file, dtype, storage)
    else:  # the naive way: whole file into a dict, convert, then a full model built and filled
        from diffusers import WanTransformer3DModel
        from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
        from safetensors.torch import load_file

        state = convert_wan_transformer_to_diffusers(load_file(path))
        model = WanTransformer3DModel.from_config(file.config).to(dtype)
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()})
        del state
    seconds = time.perf_counter() - started
    resident = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    print(json.dumps({"baseline": baseline, "peak": peak_rss_bytes(), "resident": resident, "seconds": seconds}))


def run_child(path: str, dtype: str, storage: str, method: str) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", path, dtype, storage, method],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="bf16 file size to build, in GB (default 1)")
    parser.add_argument("--folder", help="where to write the files (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the files (and reuse them next time)")
    parser.add_argument("--naive", action="store_true", help="also measure the whole-dict load for comparison")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    folder = args.folder or (os.path.join(tempfile.gettempdir(), "wanlean-bench-load") if args.keep else tempfile.mkdtemp(prefix="wanlean-bench-"))
    os.makedirs(folder, exist_ok=True)
    existing = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if args.keep and len(existing) == 2:
        paths = {("bf16" if "bf16" in f else "fp8_scaled"): os.path.join(folder, f) for f in existing}
    else:
        print(f"writing ~{args.gb:g} GB test files to {folder} ...", flush=True)
        paths = write_files(folder, args.gb)

    cases = [
        ("bf16 file → bf16 (as_file)", paths["bf16"], "bf16", "as_file", "wanlean"),
        ("fp8_scaled file → fp8 storage", paths["fp8_scaled"], "bf16", "fp8", "wanlean"),
        ("fp8_scaled file → bf16 (as_file)", paths["fp8_scaled"], "bf16", "as_file", "wanlean"),
        ("bf16 file → fp8 storage (quantized on load)", paths["bf16"], "bf16", "fp8", "wanlean"),
    ]
    if args.naive:
        cases.append(("bf16 file, naive whole-dict load", paths["bf16"], "bf16", "as_file", "naive"))
    gib = 1024**3
    print(f"{'case':46} {'file GiB':>8} {'peak−base GiB':>13} {'× file':>7} {'resident GiB':>12} {'× file':>7} {'s':>6}")
    for label, path, dtype, storage, method in cases:
        size = os.path.getsize(path)
        result = run_child(path, dtype, storage, method)
        load_peak = result["peak"] - result["baseline"]
        print(
            f"{label:46} {size / gib:8.3f} {load_peak / gib:13.3f} {load_peak / size:7.2f} "
            f"{result['resident'] / gib:12.3f} {result['resident'] / size:7.2f} {result['seconds']:6.1f}",
            flush=True,
        )
    print(f"(torch {__import__('torch').__version__}; peak = ru_maxrss of a fresh process, base = its RSS just before loading)")
    if not args.keep and not args.folder:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
