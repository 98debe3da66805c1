"""The sampler vs a bare `WanPipeline` call on the tiny A14B-style pipeline, and forward counts per CFG pair.

    python benchmarks/bench_sampler.py [--steps 10] [--repeat 5] [--threads 1]

Prints:
1. wall time of `wanlean.video.sampler.generate` vs `WanPipeline(...)` with identical settings (same seed,
   cfg_low == cfg_high == 4, UniPC with flow_shift 12, a tiny 64×32×9 video, text cache off
   so both encode the text), best of --repeat run alternately; the ratio (target ≤ 1.03) and the max abs
   difference of the frames (target: equal at float precision);
2. for (cfg_high, cfg_low) = (4,3), (3.5,1), (1,3.5), (1,1): transformer forwards run by the sampler, the
   per-stage minimum (steps per stage from the scheduler, ×2 where that stage's cfg > 1), and what a bare
   WanPipeline call runs (it decides CFG once, from the high-noise scale).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from wltest.tiny_wan import reference_pipeline, tiny_folder  # noqa: E402

from wanlean.video.loaders.diffusers_folder import load_diffusers_folder  # noqa: E402
from wanlean.video.sampler import VideoRequest, expected_forwards, generate  # noqa: E402
from wanlean.video.schedule import make_scheduler, plan_steps  # noqa: E402

PROMPT = "a red fox runs through deep snow at dawn, the camera tracks it from a low angle"
NEGATIVE = "blurry, static, low quality"
WIDTH, HEIGHT, FRAMES, SHIFT, SEED = 64, 32, 9, 12.0, 7
CFG_PAIRS = ((4.0, 3.0), (3.5, 1.0), (1.0, 3.5), (1.0, 1.0))


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def count_forwards(modules, fn) -> int:
    calls = []
    handles = [m.register_forward_pre_hook(lambda *a: calls.append(1)) for m in modules]
    try:
        fn()
    finally:
        for handle in handles:
            handle.remove()
    return len(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    # One thread: the tiny model's ops are too small to split, and on a shared machine extra threads
    # mostly wait for each other.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folder = str(tiny_folder("A14B"))
    pipe = reference_pipeline("A14B")
    pipe.set_progress_bar_config(disable=True)
    session = load_diffusers_folder(folder, device="cpu")

    def bare(cfg_high, cfg_low):
        pipe.scheduler = make_scheduler("unipc", SHIFT)
        return pipe(PROMPT, negative_prompt=NEGATIVE, height=HEIGHT, width=WIDTH, num_frames=FRAMES,
                    num_inference_steps=args.steps, guidance_scale=cfg_high, guidance_scale_2=cfg_low,
                    generator=torch.Generator().manual_seed(SEED), output_type="np").frames[0]

    def ours(cfg_high, cfg_low):
        request = VideoRequest(PROMPT, NEGATIVE, WIDTH, HEIGHT, FRAMES, args.steps, cfg_high, cfg_low, SHIFT, SEED)
        return generate(session, request, cache=None)

    bare(4.0, 4.0), ours(4.0, 4.0)  # warm-up: first-call costs on both sides
    bare_times, our_times = [], []
    for _ in range(args.repeat):
        seconds, expected = timed(lambda: bare(4.0, 4.0))
        bare_times.append(seconds)
        seconds, result = timed(lambda: ours(4.0, 4.0))
        our_times.append(seconds)
    diff = (result.frames - torch.from_numpy(expected)).abs().max().item()
    plan = plan_steps(args.steps, SHIFT, session.boundary_ratio)
    print(f"tiny A14B-style pipeline, {WIDTH}×{HEIGHT}×{FRAMES}, {args.steps} UniPC steps at shift {SHIFT:g} "
          f"({plan.high_noise_steps} high + {plan.low_noise_steps} low), cfg 4/4, {args.threads} threads, best of {args.repeat}")
    print(f"bare WanPipeline: {min(bare_times) * 1e3:.1f} ms   wanlean sampler: {min(our_times) * 1e3:.1f} ms   "
          f"ratio {min(our_times) / min(bare_times):.3f}   frames max abs diff {diff:.2e}", flush=True)

    print(f"\n{'cfg_high':>8} {'cfg_low':>7} | {'per-stage minimum':>17} | {'wanlean':>7} | {'bare WanPipeline':>16}")
    experts = [session.transformer, session.transformer_2]
    for cfg_high, cfg_low in CFG_PAIRS:
        minimum = expected_forwards(args.steps, SHIFT, session.boundary_ratio, cfg_high, cfg_low)
        ours_count = count_forwards(experts, lambda: ours(cfg_high, cfg_low))
        bare_count = count_forwards([pipe.transformer, pipe.transformer_2], lambda: bare(cfg_high, cfg_low))
        print(f"{cfg_high:>8g} {cfg_low:>7g} | {minimum:>17} | {ours_count:>7} | {bare_count:>16}", flush=True)


if __name__ == "__main__":
    main()
