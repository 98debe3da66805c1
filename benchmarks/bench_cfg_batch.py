"""Batching inside the sampler: the CFG pair as one batch of 2, and several prompts as one batch, against
one at a time, per denoising step of one expert.

    python benchmarks/bench_cfg_batch.py [--device cpu|cuda] [--configs tiny,mid] [--prompts 2,4]
                                         [--repeat 5] [--threads 1] [--tiny-size 64x32x9] [--mid-size 416x240x9]
                                         [--full-size 832x480x81] [--out results.json]

What runs is the sampler's own `wanlean.video.guidance.predict_noise` on a `WanTransformer3DModel` with
random weights (speed does not depend on the values), cfg 4, random 512-row text embeddings:
- `pair`: the CFG pair as two calls of batch 1 (sequential, what the sampler did before) vs one call of
  batch 2 (batched);
- `N prompts`: N prompts of the same settings, each one at a time (sequential pair, and batched pair) vs
  all N as one call of batch 2N, in ms per step for all N.
Configs: `tiny` (the tests' tiny expert: dim 24, 2 blocks, fp32, --tiny-size: 64×32×9 = 24 video tokens), `mid` (dim
512, 8 heads, ffn 2048, 4 blocks, fp32, --mid-size: compute dominates), and on `--device cuda` `full`
(one T2V-A14B expert: dim 5120, 40 blocks, bf16, --full-size, weights made on the GPU). Each variant is
warmed up once, then the variants run in turn --repeat times (5 × --repeat for tiny); the figure is the median.
Peak memory is what the step adds over what was resident before it: on the CPU the process's peak RSS (VmHWM, reset
through /proc/self/clear_refs before each measured call), on CUDA `torch.cuda.max_memory_allocated`.
On the CPU the process's CPU time per step is printed too: on a shared machine it moves less than the wall
time. Ratios below 1 mean batched is faster. Measured in one run, on whatever else the machine is doing.

On a GPU (one A14B expert at 832×480×81 is about 3.2 s per forward on an H200), a short run:
    python benchmarks/bench_cfg_batch.py --device cuda --repeat 2 --prompts 2 --out benchmarks/results/cfg_batch_gpu.json
runs 3 rounds of 16 forwards (about 3 minutes after building the expert).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from bench_a14b_gpu import A14B_EXPERT, TINY_EXPERT, build_expert  # noqa: E402

from wanlean.video.guidance import batch_cfg_pair, predict_noise, video_tokens  # noqa: E402

MID_EXPERT = dict(A14B_EXPERT, num_attention_heads=8, attention_head_dim=64, text_dim=512, ffn_dim=2048, num_layers=4)
CONFIGS = {
    "tiny": (TINY_EXPERT, "dim 24, 2 blocks"),
    "mid": (MID_EXPERT, "dim 512, 8 heads, ffn 2048, 4 blocks"),
    "full": (A14B_EXPERT, "one A14B expert: dim 5120, 40 blocks"),
}
CFG = 4.0
TIMESTEP = 900.0
TINY_REPEAT_FACTOR = 5  # a tiny step takes milliseconds: more repeats for a stable median


def log(message: str = "") -> None:
    print(message, flush=True)


def parse_size(text: str) -> tuple[int, int, int]:
    width, height, frames = (int(v) for v in text.lower().split("x"))
    return width, height, frames


class PeakMemory:
    """Bytes a call adds at its peak over what was resident before it (CPU: VmHWM after a reset)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def measure(self, fn) -> int | None:
        if self.cuda:
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - before
        try:
            _trim()  # freed heap goes back to the OS, so each call's own need shows in the RSS
            Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (Linux ≥ 4.0)
            before = _status_kb("VmRSS")
            fn()
            return (_status_kb("VmHWM") - before) * 1024
        except OSError:
            return None


def _trim() -> None:
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figures may then undercount later variants
        pass


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def variants(expert, latents, timestep, prompt, negative, prompts: list[int]) -> dict:
    """name → a function running one step's transformer work."""
    def pair(batched, count=1):
        return lambda: predict_noise(expert, latents.expand(count, -1, -1, -1, -1), timestep.expand(count), prompt.expand(count, -1, -1),
                                     negative.expand(count, -1, -1), CFG, batched)

    def one_at_a_time(count, batched):
        def run():
            for _ in range(count):
                predict_noise(expert, latents, timestep, prompt, negative, CFG, batched)
        return run

    table = {"pair sequential": pair(False), "pair batched": pair(True)}
    for count in prompts:
        table[f"{count} prompts one at a time, sequential pair"] = one_at_a_time(count, False)
        table[f"{count} prompts one at a time, batched pair"] = one_at_a_time(count, True)
        table[f"{count} prompts as one batch of {2 * count}"] = pair(True, count)
    return table


def run_config(name: str, size: str, device: str, dtype, repeat: int, prompts: list[int]) -> dict:
    config, description = CONFIGS[name]
    width, height, frames = parse_size(size)
    cuda = device.startswith("cuda")
    expert = build_expert(config, device, dtype, seed=1)
    latent_shape = (1, config["in_channels"], (frames - 1) // 4 + 1, height // 8, width // 8)
    generator = torch.Generator(device="cpu").manual_seed(0)
    latents = torch.randn(latent_shape, generator=generator).to(device, dtype)
    prompt = torch.randn((1, 512, config["text_dim"]), generator=generator).to(device, dtype)
    negative = torch.randn((1, 512, config["text_dim"]), generator=generator).to(device, dtype)
    timestep = torch.tensor([TIMESTEP], device=device)
    tokens = video_tokens(latents, config["patch_size"])
    elements = tokens * config["num_attention_heads"] * config["attention_head_dim"]
    table = variants(expert, latents, timestep, prompt, negative, prompts)

    def timed(fn) -> tuple[float, float]:
        if cuda:
            torch.cuda.synchronize()
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started, time.process_time() - cpu_started

    seconds = {key: [] for key in table}
    cpu_seconds = {key: [] for key in table}
    peaks = {}
    memory = PeakMemory(device)
    with torch.no_grad():
        for key, fn in table.items():  # warm-up, and the peak memory of each variant
            if not cuda:  # on CUDA the warm-up call itself is measured (one call fewer at full size)
                fn()
            peaks[key] = memory.measure(fn)
        for _ in range(repeat):
            for key, fn in table.items():
                wall, cpu = timed(fn)
                seconds[key].append(wall)
                cpu_seconds[key].append(cpu)
    del expert
    if cuda:
        torch.cuda.empty_cache()
    medians = {key: statistics.median(values) for key, values in seconds.items()}
    cpu_medians = {key: statistics.median(values) for key, values in cpu_seconds.items()}
    return {
        "config": name, "description": description, "size": size, "video_tokens": tokens,
        "hidden_elements": elements, "auto": batch_cfg_pair("auto", device, elements)[1], "dtype": str(dtype).replace("torch.", ""),
        "ms_per_step": {key: round(value * 1e3, 3) for key, value in medians.items()},
        "cpu_ms_per_step": {key: round(value * 1e3, 3) for key, value in cpu_medians.items()},
        "all_ms": {key: [round(v * 1e3, 3) for v in values] for key, values in seconds.items()},
        "peak_extra_mb": {key: (None if value is None else round(value / 2**20, 1)) for key, value in peaks.items()},
        "ratio_pair": round(medians["pair batched"] / medians["pair sequential"], 3),
        "ratio_pair_cpu_time": round(cpu_medians["pair batched"] / cpu_medians["pair sequential"], 3),
        "ratio_prompts": {
            str(count): {
                "one_batch_vs_sequential_pairs": round(medians[f"{count} prompts as one batch of {2 * count}"]
                                                       / medians[f"{count} prompts one at a time, sequential pair"], 3),
                "one_batch_vs_batched_pairs": round(medians[f"{count} prompts as one batch of {2 * count}"]
                                                    / medians[f"{count} prompts one at a time, batched pair"], 3),
            }
            for count in prompts
        },
    }


def print_result(result: dict, device: str, threads: int, repeat: int) -> None:
    log(f"\n{result['config']} ({result['description']}, {result['dtype']}) {result['size']} = {result['video_tokens']:,} video tokens, "
        f"{device}{f', {threads} threads' if device == 'cpu' else ''}, median of {repeat}")
    log(f"  video tokens × model width {result['hidden_elements']:,}; cfg_batch {result['auto']}")
    for key, ms in result["ms_per_step"].items():
        peak = result["peak_extra_mb"][key]
        cpu = "" if device != "cpu" else f" (CPU time {result['cpu_ms_per_step'][key]:.2f})"
        log(f"  {key:<45} {ms:>10.2f} ms/step{cpu}   peak +{'?' if peak is None else f'{peak:.1f}'} MB")
    log(f"  ratio pair batched / sequential: {result['ratio_pair']:.3f}"
        + (f" (CPU time: {result['ratio_pair_cpu_time']:.3f})" if device == "cpu" else ""))
    for count, ratios in result["ratio_prompts"].items():
        log(f"  ratio {count} prompts as one batch / one at a time (sequential pair): {ratios['one_batch_vs_sequential_pairs']:.3f}; "
            f"/ one at a time (batched pair): {ratios['one_batch_vs_batched_pairs']:.3f}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", default=None, help="comma-separated: tiny, mid, full (default: tiny,mid on the CPU, full on CUDA)")
    parser.add_argument("--prompts", default="2,4", help="prompt counts for the several-prompts comparison ('' for none)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU only)")
    parser.add_argument("--tiny-size", default="64x32x9")
    parser.add_argument("--mid-size", default="416x240x9")
    parser.add_argument("--full-size", default="832x480x81")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if not cuda:
        torch.set_num_threads(args.threads)
    names = (args.configs or ("full" if cuda else "tiny,mid")).split(",")
    prompts = [int(v) for v in args.prompts.split(",") if v.strip()]
    sizes = {"tiny": args.tiny_size, "mid": args.mid_size, "full": args.full_size}
    report = {
        "device": torch.cuda.get_device_name() if cuda else (platform.processor() or "cpu"),
        "torch": torch.__version__, "threads": None if cuda else args.threads, "repeat": args.repeat, "cfg": CFG, "results": [],
    }
    for name in names:
        if name not in CONFIGS:
            parser.error(f"--configs: unknown config '{name}' (tiny, mid, full)")
        if name == "full" and not cuda:
            parser.error("--configs full: the full-size expert (28.6 GB in bf16) runs on --device cuda only")
        dtype = torch.bfloat16 if cuda and name != "tiny" else torch.float32
        repeat = args.repeat * TINY_REPEAT_FACTOR if name == "tiny" else args.repeat
        result = run_config(name, sizes[name], args.device, dtype, repeat, prompts)
        report["results"].append(result)
        print_result(result, "cuda" if cuda else "cpu", args.threads, repeat)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
