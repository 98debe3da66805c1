"""Speed of the prompt log (issue 12): what logging adds to a node call, GET /wanlean/stats over 100,000
rows, and the anomaly detectors on a 200-word prompt.

    python benchmarks/bench_prompt_log.py [--rows 100000] [--calls 2000]

Everything runs in this process, in a temporary folder. The pack is imported the way ComfyUI imports it
and its log pointed at the temporary folder, so a node call pays exactly what it pays in ComfyUI (a
settings-file stat and a queue put; rows are made and written by the background thread). Printed:
- WanLeanTokenCount.run on a 200-word prompt with the log off and on (interleaved calls, each timed alone;
  the writer is given time to finish between calls, as between two node runs in ComfyUI), and the
  difference; `log_prompt` alone; and, for comparison, writing the row synchronously (make_row + one
  commit), which is what the background writer keeps off the node's thread, and the writer's own time
  per row in a burst (what it costs the process, off the node's thread);
- the route's answer (`answer_stats`: wait for the writer, then summarise) over --rows rows, unfiltered
  and with a source filter, median of 7;
- `anomalies.detect` on a 200-word English prompt and on Wan's official negative, median per call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from wanlean.prompt_log import anomalies  # noqa: E402
from wanlean.prompt_log.row import PromptEntry, make_row, now_iso  # noqa: E402
from wanlean.prompt_log.store import PromptLog  # noqa: E402
from wanlean.video.models import OFFICIAL_NEGATIVE  # noqa: E402
from wltest.pack import load_pack  # noqa: E402

CORPUS = [json.loads(line)["prompt"] for line in (ROOT / "benchmarks" / "corpus" / "prompts.jsonl").read_text().splitlines() if line.strip()]
SOURCES = ("WanLeanTokenCount", "WanLeanCompress", "WanLeanTruncate", "WanLeanSampler", "prep")


def words_200() -> str:
    english = " ".join(p for p in CORPUS if p.isascii())
    return " ".join(english.split()[:200])


def per_call_ms(function, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1000


def median_ms(function, repeat: int = 7, number: int = 1) -> float:
    return statistics.median(per_call_ms(function, number) for _ in range(repeat))


def cpu_ms(function, repeat: int = 7, number: int = 1) -> float:
    """Median CPU time of this thread per call: what the call costs on an idle core, whatever else the
    machine is running (wall times on a shared machine are printed beside it)."""
    times = []
    for _ in range(repeat):
        start = time.thread_time()
        for _ in range(number):
            function()
        times.append((time.thread_time() - start) / number * 1000)
    return statistics.median(times)


def node_overhead(folder: Path, calls: int) -> None:
    pack = load_pack()
    log_module = pack.nodes.prompt_log
    node = pack.NODE_CLASS_MAPPINGS["WanLeanTokenCount"]()
    text = words_200()
    log_module.use(str(folder / "node_log.sqlite3"), str(folder / "comfy.settings.json"))
    node.run(text, "estimate", 512)  # warm up (the writer thread starts, the database is made)
    target = log_module.current()
    target.writer.flush(30)
    off, on, off_cpu, on_cpu = [], [], [], []
    for _ in range(calls):  # interleaved, so a busy machine slows both alike
        for logging_on, times, cpu_times in ((False, off, off_cpu), (True, on, on_cpu)):
            log_module._current = target if logging_on else None  # off: as outside ComfyUI
            start, start_cpu = time.perf_counter(), time.thread_time()
            node.run(text, "estimate", 512)
            cpu_times.append((time.thread_time() - start_cpu) * 1000)
            times.append((time.perf_counter() - start) * 1000)
            if logging_on:
                log_module.current().writer.flush(30)
    off_ms, on_ms = statistics.median(off), statistics.median(on)
    added_cpu = statistics.median(on_cpu) - statistics.median(off_cpu)
    rows = log_module.current().store.count()
    entry = PromptEntry("WanLeanTokenCount", text, 260, False)
    writer = log_module.current().writer
    submit_ms = statistics.median(per_call_ms(lambda: log_module.log_prompt(entry), 500) for _ in range(7))
    writer.flush(60)
    burst = 5000
    start = time.perf_counter()
    for _ in range(burst):
        writer.submit(entry)
    writer.flush(120)
    writer_ms = (time.perf_counter() - start) / burst * 1000
    sync_store = PromptLog(folder / "sync.sqlite3")
    sync_ms = median_ms(lambda: sync_store.add(make_row(entry)), number=max(50, calls // 10))
    log_module.use(None)
    print(f"WanLeanTokenCount.run, 200-word prompt, estimate: log off {off_ms:.3f} ms, log on {on_ms:.3f} ms "
          f"(median of {calls} calls each) -> logging adds {on_ms - off_ms:+.3f} ms wall, {added_cpu:+.3f} ms CPU "
          f"per node call ({rows} rows written)")
    print(f"log_prompt alone (settings stat + queue put): {submit_ms * 1000:.1f} us per call")
    print(f"the background writer, {burst} rows in a burst: {writer_ms:.3f} ms per row (row made + batched commit), "
          "off the node's thread")
    print(f"for comparison, writing the row on the node's thread (make_row + its own commit): {sync_ms:.3f} ms per row")


def fill(path: Path, rows: int) -> PromptLog:
    """`rows` rows of corpus prompts (every 50th stuffed with a repeated word), log-normal token counts
    around 75, every 4th shortened, five sources."""
    store = PromptLog(path, max_rows=rows)
    rng = random.Random(12)
    made = {}
    batch = []
    for i in range(rows):
        key = (i % len(CORPUS), i % 50 == 0)
        if key not in made:
            text = CORPUS[key[0]] + (" " + (CORPUS[key[0]].split()[0] + " ") * 8 if key[1] else "")
            made[key] = make_row(PromptEntry("prep", text, 10, True))
        tokens = max(3, int(rng.lognormvariate(4.3, 0.6)))
        before = tokens + rng.randint(1, 200) if i % 4 == 0 else None
        flags = ",".join(f for f in made[key].flag_list + (["over_512"] if tokens > 512 else []))
        batch.append(dataclasses.replace(
            made[key], time=now_iso(), source=SOURCES[i % len(SOURCES)], tokens=tokens, over_budget=tokens > 512,
            over_512=tokens > 512, tokens_before=before, tokens_after=tokens if before else None, flags=flags))
        if len(batch) == 5000:
            store.add_many(batch)
            batch = []
    store.add_many(batch)
    return store


def stats_speed(folder: Path, rows: int) -> None:
    pack = load_pack()
    log_module = pack.nodes.prompt_log
    path = folder / "big.sqlite3"
    started = time.perf_counter()
    fill(path, rows)
    filled_s = time.perf_counter() - started
    log_module.use(str(path), str(folder / "comfy.settings.json"))
    routes = pack.nodes.stats_routes
    status, answer = routes.answer_stats({})
    assert status == 200 and answer["prompts"] == rows, (status, answer.get("prompts"))
    shown = []
    for name, query in (("all", {}), ("source filter", {"source": "WanLeanSampler"}), ("since filter", {"since": "3600"})):
        wall = median_ms(lambda: routes.answer_stats(query))
        cpu = cpu_ms(lambda: routes.answer_stats(query))
        shown.append(f"{name} {wall:.1f} ms wall ({cpu:.1f} ms CPU)")
    csv_ms = median_ms(lambda: routes.answer_csv({}), repeat=3)
    log_module.use(None)
    print(f"GET /wanlean/stats over {rows:,} rows (answer_stats, median of 7): " + "; ".join(shown)
          + f" (log filled in {filled_s:.1f} s)")
    print(f"GET /wanlean/stats.csv over {rows:,} rows: {csv_ms:.0f} ms")


def detector_speed() -> None:
    text = words_200()
    assert anomalies.detect(text) == []
    junk = (text + " ") + "masterpiece best quality " * 30
    cases = (("200-word English prompt", text, 260), ("official Chinese negative", OFFICIAL_NEGATIVE, 80),
             ("290 words with a stuffed phrase", junk, 400))
    shown = []
    for name, prompt, tokens in cases:
        wall = median_ms(lambda: anomalies.detect(prompt, tokens), number=1000)
        cpu = cpu_ms(lambda: anomalies.detect(prompt, tokens), number=1000)
        shown.append(f"{name} {cpu:.3f} ms CPU ({wall:.3f} ms wall)")
    print("anomalies.detect, median per call: " + "; ".join(shown))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="wanlean-bench-log-") as folder:
        detector_speed()
        node_overhead(Path(folder), args.calls)
        stats_speed(Path(folder), args.rows)


if __name__ == "__main__":
    main()
