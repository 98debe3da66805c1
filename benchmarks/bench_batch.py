"""Issue 13's runner figure: what `wanlean batch` adds per job over queuing by hand.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_batch.py [--jobs 60]

A headless ComfyUI runs a trivial workflow (a text node titled [prompt] into PreviewAny: a few ms per
job), so the server is as fast as it gets and only the runner's own cost shows. "By hand" POSTs every job
to /prompt at once and then polls /history/<id> for each (5 ms apart), the fastest a script can go. The
runner does the real thing: prompts file, ledger with fsync per event, 2 jobs pending on the server,
polling. Overhead per job = (runner time - by-hand time) / jobs; target ≤ 50 ms. Prompts differ in each
run so ComfyUI's cache never answers. Without COMFYUI_PATH the fake server of the tests stands in (said so).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from wanlean.batch.client import ComfyClient  # noqa: E402
from wanlean.batch.command import BatchOptions, run_batch  # noqa: E402

WORKFLOW = {
    "1": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": ""}, "_meta": {"title": "Text [prompt]"}},
    "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
}


def by_hand(client: ComfyClient, texts: list[str]) -> float:
    started = time.perf_counter()
    ids = []
    for text in texts:
        workflow = json.loads(json.dumps(WORKFLOW))
        workflow["1"]["inputs"]["value"] = text
        prompt_id, refusal = client.queue_prompt(workflow)
        assert prompt_id, refusal
        ids.append(prompt_id)
    for prompt_id in ids:
        while client.history(prompt_id) is None:
            time.sleep(0.005)
    return time.perf_counter() - started


def with_runner(url: str, texts: list[str], folder: str) -> float:
    prompts = os.path.join(folder, f"p{uuid.uuid4().hex[:6]}.txt")
    Path(prompts).write_text("".join(text + "\n" for text in texts), encoding="utf-8")
    workflow = os.path.join(folder, "w.json")
    Path(workflow).write_text(json.dumps(WORKFLOW))
    started = time.perf_counter()
    result = run_batch(BatchOptions(prompts, workflow, [url], use_tqdm=False, stream=io.StringIO(), out=io.StringIO()))
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0 and all(job.state == "done" for job in result.jobs)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from wltest.comfy import ComfyServer, comfyui_path

    comfy_path = comfyui_path()
    server, what = None, "fake ComfyUI (tests/wltest/fake_comfy.py, 5 ms per job)"
    if comfy_path:
        server = ComfyServer(comfy_path, Path(tempfile.mkdtemp(prefix="wanlean-bench-batch-")))
        server.start()
        url, what = server.url, f"ComfyUI at {comfy_path} (--cpu), trivial workflow"
    else:
        from wltest.fake_comfy import FakeComfy

        fake = FakeComfy(job_seconds=0.005)
        url = fake.url
    try:
        client = ComfyClient(url)
        folder = tempfile.mkdtemp(prefix="wanlean-bench-batch-")
        by_hand(client, [f"warm-up {i}" for i in range(5)])
        hand_times, runner_times = [], []
        for round_number in range(args.rounds):
            hand_times.append(by_hand(client, [f"hand {round_number} {i}" for i in range(args.jobs)]))
            runner_times.append(with_runner(url, [f"batch {round_number} {i}" for i in range(args.jobs)], folder))
        hand, runner = min(hand_times), min(runner_times)
        overhead_ms = (runner - hand) / args.jobs * 1000
        print(f"server: {what}; {args.jobs} jobs, best of {args.rounds}")
        print(f"by hand (POST all, poll /history): {hand:.2f} s ({hand / args.jobs * 1000:.1f} ms per job)")
        print(f"wanlean batch (ledger, 2 pending): {runner:.2f} s ({runner / args.jobs * 1000:.1f} ms per job)")
        print(f"runner overhead: {overhead_ms:.1f} ms per job (target <= 50 ms)")
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
