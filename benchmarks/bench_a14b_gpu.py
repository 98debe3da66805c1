"""Seconds per step and peak GPU memory of the pack's sampler on a full-size Wan2.2 T2V-A14B expert pair.

    python benchmarks/bench_a14b_gpu.py [--sizes 832x480x81,1280x720x81] [--modes gpu,model_offload,sequential_offload]
                                        [--steps 2] [--time-budget 420] [--out results.json] [--attention OPTION]
                                        [--compile off|blocks] [--fp8-matmul off|on] [--weight-storage bf16|fp8]
                                        [--step-cache off|first_block] [--cache-threshold 0.05]
                                        [--speed-sets "baseline;attention=auto;attention=auto,compile=blocks"]

Speed levers (WanLeanSpeed's options, `wanlean.video.speed`): `--attention` takes the node's choices
(auto, sdpa, sdpa_cudnn, flash, sage; any other name is passed to diffusers' set_attention_backend as
before), `--compile`, `--fp8-matmul` (needs `--weight-storage fp8`: the block Linears become `Fp8Linear`,
quantized on the GPU with one scale per tensor, as an fp8_scaled file loads), `--step-cache` and
`--cache-threshold`. `--speed-sets` measures several option sets in one run ("baseline" or
comma-separated name=value pairs, sets separated by ";"); each result names its set, and the table
prints the ratio of its s/step to the baseline set's at the same size and mode.

Speed does not depend on the weights' values, so the two experts (Wan2.1-14B architecture each: dim
5120, 40 layers, 40 heads, ffn 13824, in/out 16, text_dim 4096) are built with random bf16 weights
directly on the GPU (built on the meta device, then each tensor is allocated on the GPU and filled in
place: no slow CPU initialisation). The text encoder and the VAE decode are skipped: the loop gets random
512×4096 prompt and negative embeddings. What runs is the pack's own code: `wanlean.video.sampler.denoise`
(per-stage CFG, expert switch) with `wanlean.video.memory` placing the weights for each memory mode.

For each memory mode (outer loop, in the order given: gpu, then model_offload, then sequential_offload,
since each moves the weights further off the GPU) and each size, it runs 1 warm-up step + --steps timed
steps with official settings (UniPC, shift 12, cfg 4.0 high / 3.0 low: 2 forwards per step) and a
boundary placed so that the last timed step runs on the low-noise expert (the switch is measured). It
prints per-step seconds, which expert ran, weight-move seconds, and peak GPU memory
(torch.cuda.max_memory_allocated) per config. It stops starting configs after --time-budget seconds (and
stops a running config at a step boundary once the budget is spent), then prints what it has.

Without CUDA the same code runs on a tiny config (2 layers, dim 24) at small sizes: that is how it is
tested (`tests/test_bench_a14b_gpu.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from wanlean.errors import WanLeanError  # noqa: E402

A14B_EXPERT = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
)
TINY_EXPERT = dict(A14B_EXPERT, num_attention_heads=2, attention_head_dim=12, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=32)
FULL_SIZES = "832x480x81,1280x720x81"
TINY_SIZES = "64x32x5,64x64x9"
MODES = ("gpu", "model_offload", "sequential_offload")


def log(message: str) -> None:
    print(message, flush=True)


class TimeBudgetSpent(Exception):
    pass


def build_expert(config: dict, device, dtype, seed: int):
    """A WanTransformer3DModel with random weights made where it will run (no CPU init)."""
    from diffusers import WanTransformer3DModel

    from wanlean.video.loaders.diffusers_folder import restore_rope

    with torch.device("meta"):
        model = WanTransformer3DModel(**config)
    keep_fp32 = WanTransformer3DModel._keep_in_fp32_modules or []
    generator = torch.Generator(device=device).manual_seed(seed)
    for module_name, module in model.named_modules():
        for name, parameter in list(module.named_parameters(recurse=False)):
            full_name = f"{module_name}.{name}" if module_name else name
            param_dtype = torch.float32 if any(part in full_name.split(".") for part in keep_fp32) else dtype
            tensor = torch.empty(parameter.shape, device=device, dtype=param_dtype)
            tensor.normal_(0.0, 0.02, generator=generator)
            module._parameters[name] = torch.nn.Parameter(tensor, requires_grad=False)
    restore_rope(model, device)
    return model.eval()


def build_session(full_size: bool, device, dtype, attention: str | None, weight_storage: str = "bf16"):
    from diffusers import AutoencoderKLWan

    from wanlean.video.session import LazyTextEncoder, WanSession

    config = A14B_EXPERT if full_size else TINY_EXPERT
    high = build_expert(config, device, dtype, seed=1)
    low = build_expert(config, device, dtype, seed=2)
    if attention:  # a diffusers backend name (the node's own choices go through --speed-sets / SpeedOptions)
        for expert in (high, low):
            expert.set_attention_backend(attention)
    if weight_storage == "fp8":
        for expert in (high, low):
            store_blocks_in_fp8(expert, dtype)
    # The VAE only supplies its scale factors here (decode is skipped): a tiny one, never run.
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1).eval()

    def no_encoder():
        raise RuntimeError("the benchmark feeds random embeddings; the text encoder is never loaded")

    session = WanSession(
        model_type="A14B", transformer=high, transformer_2=low, vae=vae,
        text_encoder=LazyTextEncoder("bench-random", lambda text: [1], no_encoder),
        boundary_ratio=0.875, expand_timesteps=False, dtype=dtype, device=torch.device(device),
        memory_mode="gpu", source="random full-size A14B pair" if full_size else "random tiny pair",
    )
    return session, config["text_dim"]


def store_blocks_in_fp8(expert, dtype) -> None:
    """Every nn.Linear inside the transformer blocks becomes an `Fp8Linear` (float8 e4m3 weight, one fp32
    scale per tensor), quantized where the weight lies (the GPU), one layer at a time."""
    from wanlean.video.loaders.comfy_files.quant import Fp8Linear

    fp8_max = torch.finfo(torch.float8_e4m3fn).max
    for block in expert.blocks:
        for name, module in list(block.named_modules()):
            if type(module) is not torch.nn.Linear:
                continue
            weight = module.weight.detach()
            scale = (weight.abs().amax().float() / fp8_max).clamp(min=torch.finfo(torch.float32).tiny)
            quantized = (weight.float() / scale).clamp(-fp8_max, fp8_max).to(torch.float8_e4m3fn)
            replacement = Fp8Linear(quantized, scale.reshape(()), module.bias, dtype)
            parent = block.get_submodule(name.rsplit(".", 1)[0]) if "." in name else block
            setattr(parent, name.rsplit(".", 1)[-1], replacement)
            del weight, quantized, module


def parse_speed_sets(text: str, defaults: dict) -> list[tuple[str, object]]:
    """[(label, SpeedOptions)] from "baseline;attention=auto,compile=blocks"; `defaults` from the single flags."""
    from wanlean.video.speed import SpeedOptions

    sets = []
    for item in [part.strip() for part in text.split(";") if part.strip()]:
        values = {} if item == "baseline" else dict(defaults)
        if item != "baseline":
            for pair in item.split(","):
                name, _, value = pair.partition("=")
                name = name.strip().replace("-", "_")
                values[name] = float(value) if name == "cache_threshold" else value.strip()
        sets.append((item, SpeedOptions(**values)))
    return sets


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    sizes = []
    for item in text.split(","):
        width, height, frames = (int(v) for v in item.lower().split("x"))
        sizes.append((width, height, frames))
    return sizes


def boundary_for_last_step_low(steps_total: int, shift: float) -> float:
    """A boundary between the last two timesteps, so the final step runs on the low-noise expert."""
    from wanlean.video.schedule import plan_steps

    timesteps = plan_steps(steps_total, shift, None).timesteps
    if len(timesteps) < 2:
        return 0.875
    return (timesteps[-2] + timesteps[-1]) / 2 / 1000


def run_config(session, text_dim, size, mode, timed_steps, deadline, on_cuda, speed_set: str = "baseline"):
    from wanlean.video import memory
    from wanlean.video.sampler import RunStats, VideoRequest, denoise, resolve_settings

    width, height, frames = size
    steps_total = 1 + timed_steps
    session.memory_mode = mode
    result = {"size": f"{width}x{height}x{frames}", "mode": mode, "speed": speed_set, "steps": [], "status": "ok"}
    started = time.perf_counter()
    memory.prepare(session)
    if on_cuda:
        torch.cuda.synchronize()
    result["placement_s"] = round(time.perf_counter() - started, 3)

    settings = resolve_settings(session, VideoRequest(
        prompt="", negative="", width=width, height=height, frames=frames, steps=steps_total,
        cfg_high=4.0, cfg_low=3.0, shift=12.0, seed=0, boundary=boundary_for_last_step_low(steps_total, 12.0),
    ))
    generator = torch.Generator(device="cpu").manual_seed(0)
    prompt_embeds = torch.randn((1, 512, text_dim), generator=generator).to(session.device, session.dtype)
    negative_embeds = torch.randn((1, 512, text_dim), generator=generator).to(session.device, session.dtype)
    tokens = ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)
    result["video_tokens"] = tokens
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    last = {"time": time.perf_counter(), "moves": memory.move_stats(session)}

    def on_step(index, total, stage):
        if on_cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        moves = memory.move_stats(session)
        step = {
            "index": index, "expert": stage, "warm_up": index == 0, "seconds": round(now - last["time"], 3),
            "weight_moves": moves[0] - last["moves"][0], "move_seconds": round(moves[1] - last["moves"][1], 3),
        }
        result["steps"].append(step)
        log(f"    step {index + 1}/{total} ({stage}-noise expert{', warm-up' if index == 0 else ''}): {step['seconds']:.2f} s"
            + (f" (incl. {step['weight_moves']} weight moves, {step['move_seconds']:.2f} s)" if step["weight_moves"] else ""))
        last["time"], last["moves"] = now, moves
        if time.monotonic() > deadline and index + 1 < total:
            raise TimeBudgetSpent()

    stats = RunStats()
    try:
        denoise(session, settings, prompt_embeds, negative_embeds, on_step=on_step, stats=stats)
    except TimeBudgetSpent:
        result["status"] = "stopped: time budget spent"
    except torch.OutOfMemoryError as exc:
        result["status"] = f"out of memory: {str(exc).splitlines()[0][:160]}"
    finally:
        del prompt_embeds, negative_embeds
        memory.release(session)
    timed = [s for s in result["steps"] if not s["warm_up"]]
    without_moves = [s["seconds"] for s in timed if not s["weight_moves"]]
    result["mean_step_s"] = round(sum(s["seconds"] for s in timed) / len(timed), 3) if timed else None
    result["mean_step_s_without_moves"] = round(sum(without_moves) / len(without_moves), 3) if without_moves else None
    result["forwards_per_step"] = 2
    if stats.speed is not None:
        result["speed_report"] = stats.speed.report_lines({"high": "high-noise expert", "low": "low-noise expert"})
    if on_cuda:
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=None, help=f"WxHxF list (default {FULL_SIZES} on CUDA, {TINY_SIZES} on CPU)")
    parser.add_argument("--modes", default=",".join(MODES), help="memory modes, in this order (default: all three)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after 1 warm-up step (default 2)")
    parser.add_argument("--time-budget", type=float, default=420.0, help="seconds after which no new config starts")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--attention", default=None, help="auto, sdpa, sdpa_cudnn, flash, sage (WanLeanSpeed), or a diffusers backend name; default SDPA")
    parser.add_argument("--compile", default="off", choices=("off", "blocks"), help="regional torch.compile of the blocks")
    parser.add_argument("--fp8-matmul", default="off", choices=("off", "on"), help="fp8 matrix multiplies (needs --weight-storage fp8)")
    parser.add_argument("--weight-storage", default="bf16", choices=("bf16", "fp8"), help="fp8: block Linears stored as Fp8Linear")
    parser.add_argument("--step-cache", default="off", choices=("off", "first_block"), help="diffusers' First Block Cache")
    parser.add_argument("--cache-threshold", type=float, default=0.05, help="the step cache's threshold")
    parser.add_argument("--speed-sets", default=None, help='option sets to measure in one run, e.g. "baseline;attention=auto;attention=auto,compile=blocks"')
    parser.add_argument("--tiny", action="store_true", help="the tiny config even on CUDA (a quick check)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    from wanlean.video.speed import ATTENTION, with_speed

    speed_flags = {"compile": args.compile, "fp8_matmul": args.fp8_matmul, "step_cache": args.step_cache,
                   "cache_threshold": args.cache_threshold}
    backend_name = None
    if args.attention in ATTENTION:
        speed_flags["attention"] = args.attention
    else:
        backend_name = args.attention
    single = ",".join(f"{k}={v}" for k, v in speed_flags.items() if k != "cache_threshold" and v not in ("off", "sdpa"))
    single += f",cache_threshold={args.cache_threshold}" if args.step_cache != "off" else ""
    speed_sets = parse_speed_sets(args.speed_sets or (single or "baseline"), speed_flags)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown memory mode(s) {unknown}; choose from {', '.join(MODES)}")

    t0 = time.monotonic()
    deadline = t0 + args.time_budget
    on_cuda = torch.cuda.is_available()
    full_size = on_cuda and not args.tiny
    device = "cuda" if on_cuda else "cpu"
    dtype = torch.bfloat16 if on_cuda else torch.float32
    sizes = parse_sizes(args.sizes or (FULL_SIZES if full_size else TINY_SIZES))
    import diffusers

    report = {
        "device": torch.cuda.get_device_name() if on_cuda else platform.processor() or "cpu",
        "config": "full-size A14B expert pair" if full_size else "tiny A14B-style pair (no CUDA)",
        "torch": torch.__version__, "diffusers": diffusers.__version__, "dtype": str(dtype).removeprefix("torch."),
        "attention": args.attention or "default (SDPA)", "timed_steps": args.steps, "results": [],
        "weight_storage": args.weight_storage, "speed_sets": [label for label, _ in speed_sets],
    }
    log(f"[bench_a14b_gpu] {report['config']} on {report['device']}, torch {torch.__version__}, diffusers {diffusers.__version__}")
    started = time.perf_counter()
    session, text_dim = build_session(full_size, device, dtype, backend_name, args.weight_storage)
    if on_cuda:
        torch.cuda.synchronize()
    params = sum(p.numel() for p in session.transformer.parameters())
    report["build_s"] = round(time.perf_counter() - started, 2)
    report["params_per_expert"] = params
    log(f"built 2 experts × {params / 1e9:.2f} B parameters in {report['build_s']:.1f} s"
        + (f"; GPU memory {torch.cuda.memory_allocated() / 2**30:.1f} GiB" if on_cuda else ""))

    for mode, size, (speed_label, options) in [(m, z, o) for m in modes for z in sizes for o in speed_sets]:
        label = f"{size[0]}x{size[1]}x{size[2]} {mode}" + (f" [{speed_label}]" if len(speed_sets) > 1 else "")
        if time.monotonic() > deadline:
            log(f"  {label}: skipped (time budget of {args.time_budget:.0f} s spent)")
            report["results"].append({"size": label.split()[0], "mode": mode, "speed": speed_label, "status": "skipped: time budget spent"})
            continue
        log(f"  {label}: 1 warm-up + {args.steps} timed steps, cfg 4/3 (2 forwards per step)")
        try:
            run_session = session if options.is_baseline else with_speed(session, options)
            result = run_config(run_session, text_dim, size, mode, args.steps, deadline, on_cuda, speed_label)
        except torch.OutOfMemoryError as exc:
            from wanlean.video import memory

            memory.release(session)
            result = {"size": label.split()[0], "mode": mode, "speed": speed_label, "status": f"out of memory: {str(exc).splitlines()[0][:160]}"}
        except WanLeanError as exc:  # e.g. sequential_offload without accelerate, sage not installed
            result = {"size": label.split()[0], "mode": mode, "speed": speed_label, "status": f"unavailable: {exc}"}
        report["results"].append(result)
        peak = f", peak {result['peak_gib']:.1f} GiB" if "peak_gib" in result else ""
        mean = result.get("mean_step_s")
        log(f"  {label}: {result['status']}; mean {mean if mean is not None else '-'} s/step"
            f" (without weight moves {result.get('mean_step_s_without_moves', '-')}){peak}; placement {result.get('placement_s', '-')} s")

    report["total_s"] = round(time.monotonic() - t0, 1)
    log("\nsize           mode                 s/step  s/step(no moves)  peak GiB  status")
    for r in report["results"]:
        log(f"{r['size']:<14} {r['mode']:<20} {_fmt(r.get('mean_step_s')):>6}  {_fmt(r.get('mean_step_s_without_moves')):>16}  "
            f"{_fmt(r.get('peak_gib')):>8}  {r['status']}" + (f"  [{r.get('speed')}]" if len(speed_sets) > 1 else ""))
    for r in report["results"]:  # each set against the baseline set at the same size and mode
        base = next((b for b in report["results"] if b.get("speed") == "baseline" and b["size"] == r["size"] and b["mode"] == r["mode"]), None)
        if r.get("speed") != "baseline" and base and base.get("mean_step_s") and r.get("mean_step_s"):
            r["ratio_to_baseline"] = round(r["mean_step_s"] / base["mean_step_s"], 3)
            log(f"ratio {r['ratio_to_baseline']} ({r['size']} {r['mode']} [{r['speed']}] / [baseline], s/step)")
    log(f"total {report['total_s']} s")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
        log(f"wrote {args.out}")
    return report


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
