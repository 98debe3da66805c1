"""Issue 10's two speed figures: truncation time grows linearly with the text, and a small token request
is answered quickly while a burst of long ones arrives.

    python benchmarks/bench_hardening.py                                  # truncation only
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_hardening.py    # adds the route burst

1. Truncation of mixed English/Chinese text with weight groups, estimate tokenizer, to 512 tokens: time at
   25 KB … 200 KB through `truncate()` (200,000 characters is the input cap), then the same cutting code on
   1 MB and 2 MB texts (past the cap, to show the growth; before this issue 1 MB took 1.3 s and 2 MB 7.8 s).
   Target: linear (ms per KB roughly constant).
2. POST /wanlean/tokens on loopback during a burst of 200 long requests (150,000 characters each, 16 client
   threads): latency of a small request sent every 25 ms, and of ComfyUI's own /system_stats. Target: small
   request median < 100 ms. Long requests are counted or turned away with 503 "busy" (counted here).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from wanlean import tokens  # noqa: E402
from wanlean.prompt import truncate  # noqa: E402

UNIT = "a red fox (runs fast:1.2) through deep snow, the camera pans left slowly, 一只狐狸在雪地里奔跑。 "


def text_of(chars: int) -> str:
    return (UNIT * (chars // len(UNIT) + 1))[:chars]


def best_seconds(function, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def bench_truncation() -> None:
    estimate = tokens.load_tokenizer(None)
    print("1. truncation to 512 tokens, estimate tokenizer (best of 3)")
    for kb in (25, 50, 100, 200):
        text = text_of(kb * 1000)
        seconds = best_seconds(lambda: truncate.truncate(text, 512, tokenizer=estimate))
        print(f"   truncate() {kb:>5} KB: {seconds * 1000:8.1f} ms  ({seconds * 1e6 / (kb * 1000):.2f} µs/char)")
    for kb in (1000, 2000):  # past the input cap: the cutting code itself
        text = text_of(kb * 1000)

        def cut():
            result = truncate.TruncateResult(text, "", estimate.label, estimate.count(text), 0, 512, 192, notes=[])
            return truncate._Cutter(text, estimate).cut(result)

        seconds = best_seconds(cut, repeat=1)
        print(f"   cutter     {kb:>5} KB: {seconds * 1000:8.1f} ms  ({seconds * 1e6 / (kb * 1000):.2f} µs/char)")


def bench_route_burst(long_requests: int = 200, clients: int = 16) -> None:
    from wltest.comfy import ComfyServer, comfyui_path

    comfy_path = comfyui_path()
    if comfy_path is None:
        print("2. route during a burst: skipped (set COMFYUI_PATH to a ComfyUI checkout to measure it)")
        return
    import requests

    server = ComfyServer(comfy_path, Path(tempfile.mkdtemp(prefix="wanlean-bench-burst-")))
    server.start()
    try:
        url = f"{server.url}/wanlean/tokens"
        long_body = {"text": text_of(150_000), "tokenizer": "estimate"}
        small_body = {"text": "a red fox runs through deep snow at dawn", "tokenizer": "estimate"}
        for _ in range(5):
            requests.post(url, json=small_body, timeout=30).raise_for_status()
        statuses: list[int] = []
        done = threading.Event()

        def send_long(_):
            statuses.append(requests.post(url, json=long_body, timeout=300).status_code)

        small_ms, stats_ms = [], []

        def probe():
            with requests.Session() as session:
                while not done.is_set():
                    started = time.perf_counter()
                    session.post(url, json=small_body, timeout=60).raise_for_status()
                    small_ms.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    session.get(f"{server.url}/system_stats", timeout=60).raise_for_status()
                    stats_ms.append((time.perf_counter() - started) * 1000)
                    time.sleep(0.025)

        prober = threading.Thread(target=probe)
        started = time.perf_counter()
        prober.start()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(send_long, range(long_requests)))
        done.set()
        prober.join()
        burst_s = time.perf_counter() - started
        print(f"2. POST /wanlean/tokens during a burst of {long_requests} requests of 150,000 characters "
              f"({clients} client threads, {burst_s:.1f} s)")
        print(f"   long requests: {statuses.count(200)} counted, {statuses.count(503)} turned away (503 busy), "
              f"{len(statuses) - statuses.count(200) - statuses.count(503)} other")
        for name, values in (("small /wanlean/tokens", small_ms), ("ComfyUI /system_stats", stats_ms)):
            values.sort()
            print(f"   {name:<22} median {statistics.median(values):7.1f} ms, p90 {values[int(0.9 * len(values))]:7.1f} ms, "
                  f"max {values[-1]:7.1f} ms ({len(values)} requests)")
    finally:
        server.stop()


if __name__ == "__main__":
    bench_truncation()
    bench_route_burst()
