"""WanLean against ComfyUI's own Wan2.2 path on the same files: seconds per step, peak memory, ratio.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_vs_native.py --config mid
        [--formats bf16,fp8_scaled] [--sizes 416x240x9] [--steps 4] [--repeats 3] [--threads N]
        [--workdir DIR] [--out results.json]

It writes a random-weight Wan2.2 T2V-A14B expert pair in ComfyUI's file format (original Wan names, bare
keys; `bf16`, and `fp8_scaled` as ComfyUI's published files: every Linear F8_E4M3 with `scale_weight` and
`scale_input`, the rest F16; tests/wltest/bench_pair.py with comfy_formats.py), a Wan2.1 VAE and a thin umT5
file (4096 wide, as the experts' `text_embedding` expects, tokenizer inside). For each format, each side
runs in its own process (its own peak memory):

- **native**: ComfyUI imported in process from `COMFYUI_PATH` (`--cpu` when there is no CUDA):
  `comfy.sd.load_diffusion_model` (what UNETLoader calls) for each expert, `ModelSamplingSD3` with the shift,
  and `KSamplerAdvanced` twice as ComfyUI's Wan2.2 template does (high-noise expert with noise added and
  leftover noise returned, then the low-noise expert), sampler `uni_pc`, scheduler `simple`. ComfyUI's umT5
  loader only builds the full XXL model, so its conditioning is the embeddings WanLean's encoder made of
  the same prompt and negative (text encoding is not timed on either side).
- **wanlean**: `wanlean.video.loaders.comfy_files.load_comfy_files` + `wanlean.video.sampler.generate`
  (UniPC with the same shift, cfg per expert, the same split between the experts).

Both use the same size, steps, cfg pair (4.0 / 3.0), shift (12), seed and expert split (the steps at
t >= 875 run on the high-noise expert). Only denoising is timed: WanLean's `stats.denoise_seconds`, and
for ComfyUI the wall time of its two KSamplerAdvanced calls (text encoding, loading and VAE decode are
left out). Each process loads and runs one 2-step warm-up (1 step per expert), then --repeats timed runs;
the reported s/step is the median over runs. On the CPU the two processes' timed runs alternate (native
first, then wanlean first, ...), so both meet the same background load; on CUDA one side runs after the
other. Peak memory is the largest RSS sampled every 5 ms during the timed runs on the CPU,
`torch.cuda.max_memory_allocated` on CUDA. Each (format, option set, size) ends with a line `ratio <WanLean/native s/step> ...`.

The two sides draw their noise with different generators, so their latents are not expected to be equal;
the script checks that both have the same shape and are finite.

Configs: `tiny` (seconds; what tests/test_bench_vs_native.py runs), `mid` (CPU: dim 512, 4 blocks,
416×240×9: 832×480×9 took over a minute per step on 2 shared cores), `full` (CUDA only: the real A14B
shape, 2 × 14.3 B parameters, at 832×480×81 and 1280×720×81; its results go to `benchmarks/results/`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROMPT = "a red fox runs through deep snow at dawn, the camera tracks it from a low angle"
NEGATIVE = "blurry, static, low quality"
SHIFT, CFG_HIGH, CFG_LOW, SEED, BOUNDARY = 12.0, 4.0, 3.0, 7, 0.875
WARMUP_BOUNDARY = 0.95  # with 2 steps at shift 12 (t = 999, 923): one step on each expert


FORMATS = ("bf16", "fp8_scaled")


@dataclass(frozen=True)
class Config:
    dim: int  # hidden width (heads of 128, as every Wan model)
    ffn_dim: int
    num_layers: int
    sizes: tuple[tuple[int, int, int], ...]
    steps: int
    repeats: int
    formats: tuple[str, ...] = FORMATS
    needs_cuda: bool = False


# The A14B expert: dim 5120, ffn 13824, 40 blocks (text_dim 4096 and freq_dim 256, fixed by ComfyUI's loader).
# The full pair is 28.6 GB in fp8_scaled and 57.2 GB in bf16: bf16 only with --formats where the disk allows.
CONFIGS = {
    "tiny": Config(dim=128, ffn_dim=256, num_layers=2, sizes=((64, 32, 5),), steps=4, repeats=2),
    "mid": Config(dim=512, ffn_dim=1536, num_layers=4, sizes=((416, 240, 9),), steps=4, repeats=4),
    "full": Config(dim=5120, ffn_dim=13824, num_layers=40, sizes=((832, 480, 81), (1280, 720, 81)), steps=4, repeats=2,
                   formats=("fp8_scaled",), needs_cuda=True),
}
SIDES = ("native", "wanlean")


@dataclass(frozen=True)
class OptionSet:
    """One way of running both sides. `load`: keyword arguments for WanLean's `load_comfy_files`; `wanlean`:
    `SpeedOptions` fields (the levers, set with `with_speed`); `request`: `VideoRequest` fields (`cfg_batch`);
    `native`: ComfyUI `comfy.cli_args` values set before its model management is imported."""

    name: str
    load: dict = field(default_factory=dict)
    wanlean: dict = field(default_factory=dict)
    request: dict = field(default_factory=dict)
    native: dict = field(default_factory=dict)


# One line per option set, e.g. OptionSet("attention_auto", wanlean={"attention": "auto"}).
OPTION_SETS = (
    OptionSet("baseline"),
    OptionSet("cfg_batch", request={"cfg_batch": "on"}),  # the CFG pair as one batch of 2, as ComfyUI runs it
    # WanLean keeps the blocks' Linear weights float8 and dequantizes per layer, as ComfyUI does with fp8 files.
    OptionSet("fp8_storage", load={"weight_storage": "fp8"}),
    OptionSet("fp8_storage_cfg_batch", load={"weight_storage": "fp8"}, request={"cfg_batch": "on"}),  # one dequantize per step
)


def apply_wanlean_options(session, options: dict):
    """The loaded WanLean session with the option set's levers on (`wanlean.video.speed.with_speed`)."""
    if not options:
        return session
    from wanlean.video.speed import SpeedOptions, with_speed

    return with_speed(session, SpeedOptions(**options))


def log(message: str = "") -> None:
    print(message, flush=True)


# --- measuring ---------------------------------------------------------------------------------------------
class PeakMemory:
    """Peak RSS (CPU; sampled every 5 ms from /proc/self/statm) or peak allocated CUDA memory, while open."""

    def __init__(self, cuda: bool):
        self.cuda, self.peak, self._stop = cuda, 0, threading.Event()

    def __enter__(self):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as statm:
                self.peak = max(self.peak, int(statm.read().split()[1]) * page)
            self._stop.wait(0.005)

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()


def count_rows(modules, rows: list):
    """Forward pre-hooks adding each forward's batch size to `rows` (ComfyUI batches cond and uncond)."""
    def hook(module, args, kwargs):
        first = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
        rows.append(int(first.shape[0]))

    return [module.register_forward_pre_hook(hook, with_kwargs=True) for module in modules]


def prepare_native(files: dict, fmt: str, size, steps: int, options: OptionSet, cuda: bool):
    """ComfyUI's path, loaded and warmed up; returns `run()` → (seconds, sample-forwards, latents)."""
    import comfy.cli_args

    comfy.cli_args.args.cpu = not cuda
    for key, value in options.native.items():
        setattr(comfy.cli_args.args, key, value)
    import comfy.sd
    import torch
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    from safetensors.torch import load_file

    import nodes  # ComfyUI's nodes.py: its folder is first on sys.path (see main)
    from wanlean.video.schedule import plan_steps

    experts = [ModelSamplingSD3().patch(comfy.sd.load_diffusion_model(files[fmt][w]), SHIFT)[0] for w in ("high", "low")]
    embeds = load_file(files["embeds"])["embeds"]
    positive, negative = [[embeds[0:1], {}]], [[embeds[1:2], {}]]
    width, height, frames = size
    latent = {"samples": torch.zeros((1, 16, (frames - 1) // 4 + 1, height // 8, width // 8))}
    rows: list = []
    count_rows([e.model.diffusion_model for e in experts], rows)
    sampler = nodes.KSamplerAdvanced()

    def sample(total_steps: int, high_steps: int):
        first = sampler.sample(experts[0], "enable", SEED, total_steps, CFG_HIGH, "uni_pc", "simple", positive, negative, latent, 0, high_steps, "enable")[0]
        return sampler.sample(experts[1], "disable", SEED, total_steps, CFG_LOW, "uni_pc", "simple", positive, negative, first, high_steps, 10000, "disable")[0]["samples"]

    sample(2, 1)  # warm-up: one step on each expert
    high_steps = plan_steps(steps, SHIFT, BOUNDARY).high_noise_steps

    def run():
        rows.clear()
        started = time.perf_counter()
        samples = sample(steps, high_steps)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started, sum(rows), samples

    return run


def prepare_wanlean(files: dict, fmt: str, size, steps: int, options: OptionSet, cuda: bool):
    """WanLean's loader and `generate`, warmed up; returns `run()` → (denoise seconds, sample-forwards, latents)."""
    from wanlean.video.loaders.comfy_files.load import load_comfy_files
    from wanlean.video.sampler import VideoRequest, generate

    session = load_comfy_files(files[fmt]["high"], files[fmt]["low"], files["text_encoder"], files["vae"], memory_mode="gpu", **options.load)
    session = apply_wanlean_options(session, options.wanlean)
    rows: list = []
    count_rows([session.transformer, session.transformer_2], rows)
    width, height, frames = size

    def sample(total_steps: int, boundary: float):
        request = VideoRequest(prompt=PROMPT, negative=NEGATIVE, width=width, height=height, frames=frames, steps=total_steps,
                               cfg_high=CFG_HIGH, cfg_low=CFG_LOW, shift=SHIFT, seed=SEED, sampler="unipc", boundary=boundary,
                               **options.request)
        return generate(session, request)

    sample(2, WARMUP_BOUNDARY)

    def run():
        rows.clear()
        result = sample(steps, BOUNDARY)
        return result.stats.denoise_seconds, sum(rows), result.latents

    return run


def worker(args) -> None:
    """One side, format, option set and size in this process. Prints READY once loaded and warmed up, then
    one timed run per `run` line on stdin (`RUN {json}`), and `RESULT {json}` at `done` or end of input."""
    import torch
    from safetensors.torch import save_file

    if args.threads:
        torch.set_num_threads(args.threads)
    files = json.loads(Path(args.files).read_text())
    options = {o.name: o for o in OPTION_SETS}[args.options[0]]
    cuda = torch.cuda.is_available()
    prepare = prepare_native if args.worker == "native" else prepare_wanlean
    run = prepare(files, args.format, parse_size(args.size), args.steps, options, cuda)
    print("READY", flush=True)
    seconds, rows, latents = [], [], None
    with PeakMemory(cuda) as peak:
        for line in sys.stdin:
            if line.strip() != "run":
                break
            run_seconds, run_rows, latents = run()
            seconds.append(run_seconds)
            rows.append(run_rows)
            print("RUN " + json.dumps({"seconds": run_seconds}), flush=True)
    latents_path = Path(args.files).parent / f"latents-{args.worker}-{args.format}-{options.name}-{args.size}.safetensors"
    if latents is not None:
        save_file({"latents": latents.float().cpu().contiguous()}, str(latents_path))
    print("RESULT " + json.dumps({
        "side": args.worker, "format": args.format, "options": options.name, "size": args.size, "steps": args.steps,
        "run_seconds": seconds, "sample_forwards": rows, "peak_bytes": peak.peak, "latents": str(latents_path),
        "memory": "cuda max_memory_allocated" if cuda else "peak RSS",
    }), flush=True)


# --- orchestration -----------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int, int]:
    width, height, frames = (int(v) for v in text.lower().split("x"))
    return width, height, frames


class Worker:
    """One side in its own process (its own peak memory), driven line by line: start, `run()`, `finish()`."""

    def __init__(self, side: str, fmt: str, options: str, size: str, files_json: Path, args, comfy: Path):
        self.side, self.what = side, f"{side} ({fmt}, {options}, {size})"
        command = [sys.executable, __file__, "--worker", side, "--files", str(files_json), "--format", fmt, "--options", options,
                   "--size", size, "--steps", str(args.steps), "--threads", str(args.threads)]
        # ComfyUI's log and progress bars, read only on failure; open as long as the worker lives
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.process = subprocess.Popen(command, env=dict(os.environ, COMFYUI_PATH=str(comfy)), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True)

    def expect(self, prefix: str) -> str:
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        self.process.wait()
        self.log.seek(0)
        raise SystemExit(f"bench_vs_native: the {self.what} process ended (exit {self.process.returncode}) before '{prefix.strip()}':\n"
                         f"{self.log.read()[-5000:]}")

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def run(self) -> float:
        self.send("run")
        return json.loads(self.expect("RUN "))["seconds"]

    def finish(self) -> dict:
        self.send("done")
        result = json.loads(self.expect("RESULT "))
        self.process.wait()
        return result


def measure(fmt: str, option_name: str, size: str, files_json: Path, args, comfy: Path, interleave: bool) -> dict:
    """{side: worker result}. On the CPU both processes load, then their timed runs alternate (native first on
    even runs), so both meet the same background load; on CUDA each side runs alone (two processes would share
    the GPU's memory, and ComfyUI sizes its offloading by what is free)."""
    results = {}
    if interleave:
        workers = {side: Worker(side, fmt, option_name, size, files_json, args, comfy) for side in SIDES}
        for worker_ in workers.values():
            worker_.expect("READY")
        for index in range(args.repeats):
            for side in (SIDES if index % 2 == 0 else SIDES[::-1]):
                workers[side].run()
        return {side: worker_.finish() for side, worker_ in workers.items()}
    for side in SIDES:
        worker_ = Worker(side, fmt, option_name, size, files_json, args, comfy)
        worker_.expect("READY")
        for _ in range(args.repeats):
            worker_.run()
        results[side] = worker_.finish()
    return results


def check_latents(native: dict, wanlean: dict) -> str:
    import torch
    from safetensors.torch import load_file

    a, b = (load_file(r["latents"])["latents"] for r in (native, wanlean))
    problems = [f"{side} latents are not finite" for side, t in (("native", a), ("wanlean", b)) if not bool(torch.isfinite(t).all())]
    if a.shape != b.shape:
        problems.append(f"shapes differ: native {list(a.shape)}, wanlean {list(b.shape)}")
    if problems:
        raise SystemExit("bench_vs_native: " + "; ".join(problems))
    return f"latents: both {list(a.shape)}, finite; std native {a.std():.3f}, wanlean {b.std():.3f} (different noise generators: not compared)"


def describe(result: dict) -> tuple[float, str]:
    per_step = [s / result["steps"] for s in result["run_seconds"]]
    median = statistics.median(per_step)
    forwards = statistics.median(result["sample_forwards"]) / result["steps"]
    runs = " ".join(f"{s:.3f}" for s in per_step)
    return median, (f"{median:.3f} s/step (median; runs {runs}), {forwards:.2f} sample-forwards/step, "
                    f"{result['memory']} {result['peak_bytes'] / 2**30:.2f} GiB")


def names_of(known):
    """An argparse type: comma-separated names, each one of `known` (argparse names the bad one and exits 2)."""
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names or set(names) - set(known):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(known)}; got '{text}'")
        return names

    return parse


def device_name() -> str:
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="mid")
    parser.add_argument("--formats", type=names_of(FORMATS), help="comma-separated: bf16, fp8_scaled; default: the config's")
    parser.add_argument("--sizes", help="WxHxF[,WxHxF...]; default: the config's")
    parser.add_argument("--steps", type=int, help="timed steps per run; default: the config's")
    parser.add_argument("--repeats", type=int, help="timed runs per process; default: the config's")
    parser.add_argument("--options", type=names_of([o.name for o in OPTION_SETS]), default=[o.name for o in OPTION_SETS],
                        help="comma-separated option sets to run; default: all")
    parser.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0: torch's default)")
    parser.add_argument("--workdir", help="folder for the files (default: a temporary folder, removed at the end)")
    parser.add_argument("--out", help="write the results as JSON here (the full config: benchmarks/results/ by default)")
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI checkout (default: $COMFYUI_PATH)")
    for name in ("--worker", "--files", "--format", "--size"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    config = CONFIGS[args.config]
    if not args.worker and config.needs_cuda and not torch.cuda.is_available():
        print("bench_vs_native: --config full builds two 14.3 B-parameter experts and needs a CUDA GPU (about 60 GB of "
              "GPU memory); this machine has none. On the CPU run --config mid.", file=sys.stderr)
        return 2
    if not args.comfyui or not (Path(args.comfyui) / "comfy" / "sd.py").is_file():
        print("bench_vs_native: set COMFYUI_PATH (or --comfyui) to a ComfyUI checkout; the native side runs ComfyUI's own code.", file=sys.stderr)
        return 2
    comfy = Path(args.comfyui).resolve()
    # This pack's folder holds a `nodes/` package: ComfyUI's top-level `nodes` module must come first.
    sys.path[:0] = [str(comfy), str(ROOT), str(ROOT / "tests")]
    if args.worker:
        worker(args)
        return 0
    from wltest.bench_pair import expert_config, write_pair

    formats = args.formats or list(config.formats)
    sizes = [f"{w}x{h}x{f}" for w, h, f in ([parse_size(s) for s in args.sizes.split(",")] if args.sizes else config.sizes)]
    args.steps = args.steps or config.steps
    args.repeats = args.repeats or config.repeats

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="wanlean-vs-native-"))
    log(f"device: {device_name()}; config {args.config} (dim {config.dim}, {config.num_layers} blocks, ffn {config.ffn_dim}); "
        f"{args.steps} steps (uni_pc/unipc, shift {SHIFT:g}, cfg {CFG_HIGH:g}/{CFG_LOW:g}), {args.repeats} timed runs per side")
    started = time.perf_counter()
    results = []
    try:
        for fmt in formats:  # one format's files at a time: the full pair is 29-57 GB
            files = write_pair(expert_config(config.dim, config.ffn_dim, config.num_layers), [fmt], workdir / fmt, [PROMPT, NEGATIVE],
                               device="cuda" if config.needs_cuda else "cpu", dtype=torch.bfloat16 if config.needs_cuda else None)
            files_json = workdir / fmt / "files.json"
            files_json.write_text(json.dumps(files))
            log(f"files ({fmt}) written in {workdir / fmt} ({time.perf_counter() - started:.0f} s so far)")
            for option_name in args.options:
                for size in sizes:
                    merged = measure(fmt, option_name, size, files_json, args, comfy, interleave=not torch.cuda.is_available())
                    native_median, native_text = describe(merged["native"])
                    wanlean_median, wanlean_text = describe(merged["wanlean"])
                    ratio = wanlean_median / native_median
                    memory_ratio = merged["wanlean"]["peak_bytes"] / merged["native"]["peak_bytes"]
                    log(f"{fmt} · {size} · {args.steps} steps · option set {option_name}")
                    log(f"  native (ComfyUI): {native_text}")
                    log(f"  wanlean:          {wanlean_text}")
                    log(f"  {check_latents(merged['native'], merged['wanlean'])}")
                    log(f"ratio {ratio:.3f} (WanLean/native s/step; format {fmt}, size {size}, options {option_name}; peak memory ratio {memory_ratio:.3f})")
                    results.append({"format": fmt, "size": size, "options": option_name, "ratio": ratio, "memory_ratio": memory_ratio,
                                    "native": merged["native"], "wanlean": merged["wanlean"]})
            if not args.workdir:
                for path in (workdir / fmt).glob("*.safetensors"):
                    path.unlink()
    finally:
        if not args.workdir:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    out = args.out or (str(RESULTS / f"bench_vs_native_{args.config}_{device_name().split(' (')[0].replace(' ', '_')}.json")
                       if config.needs_cuda else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({"device": device_name(), "config": args.config, "steps": args.steps, "results": results}, indent=1))
        log(f"results written to {out}")
    log(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
