"""Which memory mode fits which card: the fit table, what `auto` chooses, and what previews cost.

    python benchmarks/bench_fit_table.py [--cards 12,16,24,32,48] [--sizes 832x480x81,1280x720x81]
                                         [--modes gpu,model_offload,sequential_offload,auto] [--storage bf16,fp8]
                                         [--steps 2] [--time-budget 1800] [--out results.json] [--tiny]

On CUDA: the full-size Wan2.2 T2V-A14B expert pair (random weights built on the device, as
`bench_a14b_gpu.py` builds them, then moved to the host), in bf16 or with the blocks' Linear weights stored
as float8 (`Fp8Linear`, computing in bf16). Each card size is emulated with
`torch.cuda.set_per_process_memory_fraction(card / total)`; for each storage, card, size and mode the
sampler's own loop runs 1 warm-up step + --steps timed steps (median per step) (cfg 4/3, the last step on the low-noise
expert, so the swap is inside) and the row says: fits or out of memory, seconds per step, peak memory
(torch.cuda.max_memory_allocated), and, for `auto`, which mode it chose and why (free memory given to it:
the card minus what this process holds besides the session's weights).

On the CPU: the tiny A14B-style pair; there is no card to emulate (the rows say "host"), every mode runs,
`auto` chooses `gpu` (the CPU device) and the table adds the preview overhead: each mode once more with a
latent2rgb preview made after every step (the clean estimate, a 16→3 colour projection of the first latent
frame, a JPEG) — ComfyUI's own previewer when ComfyUI is importable, the same arithmetic otherwise. That is
how the tests run it (`tests/test_bench_fit_table.py`).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import bench_a14b_gpu as a14b  # noqa: E402
from wanlean.errors import WanLeanError  # noqa: E402

CARDS_GB = "12,16,24,32,48"
MODES = ("gpu", "model_offload", "sequential_offload", "auto")
GIB = 2**30


def log(message: str) -> None:
    print(message, flush=True)


def to_fp8_storage(expert, compute_dtype) -> None:
    """The blocks' Linear layers become `Fp8Linear` (float8 weight, scale 1.0: random weights, speed only)."""
    from wanlean.video.loaders.comfy_files.quant import Fp8Linear

    for block in expert.blocks:
        for name, module in list(block.named_modules()):
            if isinstance(module, torch.nn.Linear):
                parent_name, _, child = name.rpartition(".")
                parent = block.get_submodule(parent_name) if parent_name else block
                weight = module.weight.detach().to(torch.float8_e4m3fn)
                scale = torch.ones((), device=weight.device)
                setattr(parent, child, Fp8Linear(weight, scale, module.bias, compute_dtype))


def make_previewer():
    """A function clean latents → JPEG bytes: ComfyUI's latent2rgb previewer when importable, else the same
    arithmetic (a 16→3 projection of the first latent frame, scaled to 0–255, JPEG)."""
    try:
        import comfy.cli_args

        if not torch.cuda.is_available():
            comfy.cli_args.args.cpu = True  # before comfy.model_management is imported (by latent_preview)
        import comfy.latent_formats
        import latent_preview

        previewer = latent_preview.Latent2RGBPreviewer(comfy.latent_formats.Wan21.latent_rgb_factors, comfy.latent_formats.Wan21.latent_rgb_factors_bias)
        source = "ComfyUI latent2rgb"

        def to_image(x0):
            return previewer.decode_latent_to_preview(x0.float())
    except Exception:  # ComfyUI not importable here
        from PIL import Image

        factors = torch.randn(3, 16, generator=torch.Generator().manual_seed(0)) * 0.2
        source = "latent2rgb arithmetic (ComfyUI not importable)"

        def to_image(x0):
            rgb = torch.nn.functional.linear(x0[0, :, 0].float().movedim(0, -1), factors.to(x0.device))
            return Image.fromarray(((rgb + 1) / 2).clamp(0, 1).mul(255).to("cpu", torch.uint8).numpy())

    def preview(progress) -> int:
        buffer = io.BytesIO()
        to_image(progress.clean_latents()).save(buffer, format="JPEG", quality=95)
        return len(buffer.getvalue())

    return preview, source


def run_row(session, text_dim, size, mode, steps, deadline, on_cuda, card_bytes=None, preview=None):
    """One table row: a run of the sampler's loop in `mode` (auto: chosen first), or why it did not run."""
    from wanlean.video import auto_memory, memory, request_memory
    from wanlean.video.sampler import RunStats, VideoRequest, denoise, resolve_settings

    width, height, frames = size
    row = {"size": f"{width}x{height}x{frames}", "mode": mode, "card_gib": card_bytes / GIB if card_bytes else None}
    session.memory_mode = mode
    session.memory_state.auto_choice = None
    if mode == "auto":
        resident = sum(request_memory._module_bytes(m, session.device) for m in memory._big_modules(session)) if on_cuda else 0
        free = (card_bytes - torch.cuda.memory_allocated() + resident) if card_bytes else None
        try:
            choice = auto_memory.choose(session, width, height, frames, free=free)
        except WanLeanError as exc:
            return dict(row, status="refused by auto", detail=str(exc)[:300])
        session.memory_state.auto_choice = choice
        row.update(auto_chose=choice.mode, auto_reason=choice.reason)
    total_steps = 1 + steps
    settings = resolve_settings(session, VideoRequest(
        prompt="", negative="", width=width, height=height, frames=frames, steps=total_steps, cfg_high=4.0, cfg_low=3.0,
        shift=12.0, seed=0, boundary=a14b.boundary_for_last_step_low(total_steps, 12.0),
    ))
    generator = torch.Generator(device="cpu").manual_seed(0)
    prompt = torch.randn((1, 512, text_dim), generator=generator).to(session.device, session.dtype)
    negative = torch.randn((1, 512, text_dim), generator=generator).to(session.device, session.dtype)
    step_seconds, preview_seconds = [], []

    def on_progress(progress):
        if on_cuda:
            torch.cuda.synchronize()
        step_seconds.append(progress.step_seconds)
        if preview is not None:
            started = time.perf_counter()
            preview(progress)
            preview_seconds.append(time.perf_counter() - started)
        if time.monotonic() > deadline and progress.index + 1 < progress.total:
            raise a14b.TimeBudgetSpent()

    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        memory.prepare(session)
        denoise(session, settings, prompt, negative, stats=RunStats(), on_progress=on_progress)
        row["status"] = "fits"
    except a14b.TimeBudgetSpent:
        row["status"] = "stopped: time budget spent"
    except torch.OutOfMemoryError as exc:
        row["status"] = "out of memory"
        row["detail"] = str(exc).splitlines()[0][:200]
    except WanLeanError as exc:  # e.g. sequential_offload without accelerate
        row["status"] = "unavailable"
        row["detail"] = str(exc)[:200]
    finally:
        del prompt, negative
        memory.release(session)
    row["seconds"] = round(time.perf_counter() - started, 3)
    timed = step_seconds[1:]
    row["s_per_step"] = round(statistics.median(timed), 4) if timed else None  # median: CPU timings are noisy
    if preview_seconds:
        row["preview_s_per_step"] = round(statistics.median(preview_seconds), 5)
    if on_cuda:
        row["peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
    row["swap_s"] = round(session.memory_state.swap_seconds, 3)
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", default=CARDS_GB, help=f"emulated card sizes in GB (CUDA only; default {CARDS_GB})")
    parser.add_argument("--sizes", default=None, help=f"WxHxF list (default {a14b.FULL_SIZES} on CUDA, 32x32x5,64x32x9 on CPU)")
    parser.add_argument("--modes", default=",".join(MODES), help="memory modes (default: all three and auto)")
    parser.add_argument("--storage", default="bf16,fp8", help="weight storage: bf16, fp8 (default both)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after 1 warm-up step (default 2)")
    parser.add_argument("--time-budget", type=float, default=1800.0, help="seconds after which no new row starts")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--tiny", action="store_true", help="the tiny pair even on CUDA (a quick check)")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"unknown memory mode(s) {unknown}; choose from {', '.join(MODES)}")
    storages = [s.strip() for s in args.storage.split(",") if s.strip()]
    if unknown := [s for s in storages if s not in ("bf16", "fp8")]:
        parser.error(f"unknown storage {unknown}; choose bf16 or fp8")
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    deadline = time.monotonic() + args.time_budget
    on_cuda = torch.cuda.is_available()
    full_size = on_cuda and not args.tiny
    device = "cuda" if on_cuda else "cpu"
    dtype = torch.bfloat16 if on_cuda else torch.float32
    sizes = a14b.parse_sizes(args.sizes or (a14b.FULL_SIZES if full_size else "32x32x5,64x32x9"))
    cards = [float(c) for c in args.cards.split(",")] if on_cuda else [None]
    total_memory = torch.cuda.get_device_properties(0).total_memory if on_cuda else None
    report = {
        "device": torch.cuda.get_device_name() if on_cuda else platform.processor() or "cpu",
        "config": "full-size A14B expert pair" if full_size else "tiny A14B-style pair",
        "torch": torch.__version__, "timed_steps": args.steps, "accelerate": importlib.util.find_spec("accelerate") is not None,
        "rows": [],
    }
    preview, preview_source = (None, None) if on_cuda else make_previewer()
    if preview_source:
        report["preview"] = preview_source
    log(f"[bench_fit_table] {report['config']} on {report['device']}")
    for storage in storages if on_cuda else ["fp32"]:
        session, text_dim = a14b.build_session(full_size, device, dtype, None)
        if storage == "fp8":
            for expert in (session.transformer, session.transformer_2):
                to_fp8_storage(expert, dtype)
        for expert in (session.transformer, session.transformer_2):
            expert.to("cpu")  # the loaders leave weights on the host; the mode places them
        if on_cuda:
            torch.cuda.empty_cache()
        for card in cards:
            if on_cuda:
                torch.cuda.set_per_process_memory_fraction(min(1.0, card * 1e9 / total_memory))
            for size in sizes:
                for mode in modes:
                    label = f"{storage} {'host' if card is None else f'{card:g} GB'} {size[0]}x{size[1]}x{size[2]} {mode}"
                    if time.monotonic() > deadline:
                        report["rows"].append({"storage": storage, "card_gb": card, "size": "x".join(map(str, size)), "mode": mode,
                                               "status": "skipped: time budget spent"})
                        continue
                    row = run_row(session, text_dim, size, mode, args.steps, deadline, on_cuda, card_bytes=int(card * 1e9) if card else None)
                    row.update(storage=storage, card_gb=card)
                    report["rows"].append(row)
                    log(f"  {label}: {row['status']}, {row.get('s_per_step')} s/step"
                        + (f", peak {row['peak_gib']} GiB" if "peak_gib" in row else "")
                        + (f" — {row['auto_reason']}" if "auto_reason" in row else ""))
                    if preview is not None and row["status"] == "fits":
                        with_preview = run_row(session, text_dim, size, mode, args.steps, deadline, on_cuda, preview=preview)
                        row["s_per_step_with_preview"] = with_preview.get("s_per_step")
                        row["preview_s_per_step"] = with_preview.get("preview_s_per_step")
                        log(f"    with a latent2rgb preview per step: {row['s_per_step_with_preview']} s/step "
                            f"(the preview itself {row['preview_s_per_step']} s)")
        if on_cuda:
            torch.cuda.set_per_process_memory_fraction(1.0)
        del session
    log("\nstorage card     size           mode                status              s/step   peak GiB  auto chose")
    for r in report["rows"]:
        card = "host" if r.get("card_gb") is None else f"{r['card_gb']:g} GB"
        log(f"{r['storage']:<7} {card:<8} {r['size']:<14} {r['mode']:<19} {r['status']:<19} {str(r.get('s_per_step', '-')):>7}  "
            f"{str(r.get('peak_gib', '-')):>8}  {r.get('auto_chose', '')}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
        log(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
