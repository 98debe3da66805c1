"""Speed of exact umT5 token counting: per prompt, tokenizer load vs file size, and the editor's route.

    python benchmarks/bench_tokens.py [--text-encoder umt5_xxl_fp8_e4m3fn_scaled.safetensors] [--pad-mb 300]
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_tokens.py      # adds the route's latency

Prints three figures (targets from issue 3):
1. exact count of a 200-word prompt, after the tokenizer is loaded (target ≤ 0.1 ms). No real umT5
   vocabulary ships offline, so it is measured with the tiny test vocabulary (~180 pieces) and with a
   32,000-piece unigram vocabulary trained here on English (Python's own docs) and Chinese text. umT5 has
   256,384 pieces; sentencepiece's cost per character grows with the pieces that match at each position,
   so pass --text-encoder with your real file to measure that one.
2. tokenizer load time from a small text-encoder file vs the same file padded with --pad-mb MB of other
   tensors (target: independent of the file's size; only the header and `spiece_model` are read).
3. median latency of POST /wanlean/tokens on loopback, client included (target < 20 ms); needs
   COMFYUI_PATH (and ComfyUI's requirements in this Python, or COMFYUI_PYTHON), otherwise skipped.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from wanlean import token_report, tokens  # noqa: E402
from wltest.tiny import train_spiece, write_text_encoder_file  # noqa: E402

PROMPT_200_WORDS = " ".join(
    (
        "A lone red fox trots across a frozen lake at dawn, its breath rising in small white clouds while "
        "thin mist drifts over the ice. The camera starts low behind the fox and slowly pushes forward as "
        "it pauses, lifts one paw and turns its head toward a distant line of snow-covered pine trees. "
        "Soft golden sidelight from the rising sun catches the frost on its fur and throws long blue "
        "shadows across the cracked surface. In the background a wooden cabin with a smoking chimney sits "
        "at the edge of the forest, and a flock of black birds lifts from the trees and circles once before "
        "settling again. The fox sniffs the air, then breaks into an easy run, kicking up fine powder that "
        "sparkles in the light. Close-up details show ice crystals, the texture of the fur and the amber of "
        "its eyes. Mood: quiet, cold and hopeful. Shot on a 50mm lens with shallow depth of field, gentle "
        "handheld movement, natural colours with cool shadows and warm highlights, cinematic film grain, "
        "smooth motion, realistic physics, high detail, no text, no watermark, steady exposure, soft "
        "contrast, a calm winter morning in the mountains, wide establishing shot at the end as the fox "
        "disappears among the trees."
    ).split()[:200]
)


def per_call_ms(function, argument, calls: int) -> float:
    """Median over 7 batches of the mean time per call, in ms."""
    batches = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(calls):
            function(argument)
        batches.append((time.perf_counter() - start) / calls * 1000)
    return statistics.median(batches)


def trained_vocabulary(pieces: int = 32000) -> bytes:
    """A unigram model with umT5's conventions, trained on English (stdlib docs) and Chinese text."""
    import sentencepiece as spm

    lines = []
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py"))[:400]:
        for line in path.read_text(errors="ignore").splitlines():
            line = line.strip().lstrip("#").strip()
            if len(line) > 30 and " " in line:
                lines.append(line)
    rng = random.Random(0)
    hanzi = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    weights = [1 / (i + 1) for i in range(len(hanzi))]  # Zipf-like, as in real text
    lines += ["".join(rng.choices(hanzi, weights, k=rng.randint(8, 40))) for _ in range(20000)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=pieces, hard_vocab_limit=False,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, model_type="unigram",
        minloglevel=2, num_threads=1,
    )
    return model.getvalue()


def load_ms(path: Path, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        tokens._CACHE.clear()  # a cold load each time (the OS page cache stays warm, as in real use)
        start = time.perf_counter()
        tokens.load_tokenizer(path)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_counts(vocabularies: dict) -> None:
    print(f"1. exact count of a {len(PROMPT_200_WORDS.split())}-word prompt ({len(PROMPT_200_WORDS)} characters), after load")
    for name, tokenizer in vocabularies.items():
        ms = per_call_ms(tokenizer.count, PROMPT_200_WORDS, 2000)
        print(f"   {name:<34} {len(tokenizer):>7,} pieces  {tokenizer.count(PROMPT_200_WORDS):>4} tokens  {ms:.4f} ms per count")
    long_text = (PROMPT_200_WORDS + " 一只红色的狐狸在雪地里奔跑。") * 70
    tokenizer = list(vocabularies.values())[-1]
    print(
        f"   (for scale: {len(long_text):,} characters, {list(vocabularies)[-1]}: count "
        f"{per_call_ms(tokenizer.count, long_text, 5):.1f} ms, count + cut at 512 "
        f"{per_call_ms(lambda t: token_report.count_text(tokenizer, t), long_text, 3):.1f} ms)"
    )


def bench_load(folder: Path, model_bytes: bytes, pad_mb: int) -> None:
    small = write_text_encoder_file(folder / "small.safetensors", model_bytes)
    padded = write_text_encoder_file(folder / "padded.safetensors", model_bytes, extra_mb=pad_mb)
    print(f"2. tokenizer load (header + spiece_model only; {len(model_bytes) / 1e6:.2f} MB sentencepiece model)")
    for path in (small, padded):
        print(f"   {path.stat().st_size / 1e6:>9.1f} MB file  {load_ms(path):.2f} ms per load")
    tokens.load_tokenizer(padded)
    cached = per_call_ms(tokens.load_tokenizer, padded, 2000)
    print(f"   cached (path + size + mtime unchanged): {cached:.4f} ms")
    padded.unlink()


def bench_route(folder: Path, model_bytes: bytes, requests_per_case: int = 200) -> None:
    from wltest.comfy import ComfyServer, comfyui_path

    comfy_path = comfyui_path()
    if comfy_path is None:
        print("3. route latency: skipped (set COMFYUI_PATH to a ComfyUI checkout to measure it)")
        return
    import requests

    server = ComfyServer(comfy_path, folder / "comfy")
    server.start()
    try:
        write_text_encoder_file(server.model_dir("text_encoders") / "umt5_bench.safetensors", model_bytes)
        print(f"3. POST /wanlean/tokens on loopback, {requests_per_case} requests each, 200-word prompt (client time included)")
        with requests.Session() as session:
            for tokenizer in ("estimate", "umt5_bench.safetensors"):
                body = {"text": PROMPT_200_WORDS, "tokenizer": tokenizer, "budget": 512}
                for _ in range(10):  # warm-up: first load of the tokenizer, connection set-up
                    session.post(f"{server.url}/wanlean/tokens", json=body, timeout=30).raise_for_status()
                times = []
                for _ in range(requests_per_case):
                    start = time.perf_counter()
                    session.post(f"{server.url}/wanlean/tokens", json=body, timeout=30).raise_for_status()
                    times.append((time.perf_counter() - start) * 1000)
                times.sort()
                print(
                    f"   {tokenizer:<24} median {statistics.median(times):.2f} ms, "
                    f"p90 {times[int(0.9 * len(times))]:.2f} ms"
                )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-encoder", help="a real umT5 text-encoder .safetensors (or tokenizer folder) to time as well")
    parser.add_argument("--pad-mb", type=int, default=300, help="MB of other tensors in the padded file (default 300)")
    args = parser.parse_args()

    print("training the vocabularies (tiny test one, and 32,000 pieces)…", flush=True)
    tiny_bytes = train_spiece()
    big_bytes = trained_vocabulary()
    vocabularies = {
        "tiny test vocabulary": tokens.SentencePieceTokenizer(tiny_bytes, "tiny"),
        "trained 32k vocabulary": tokens.SentencePieceTokenizer(big_bytes, "32k"),
    }
    if args.text_encoder:
        vocabularies[os.path.basename(args.text_encoder)] = tokens.load_tokenizer(args.text_encoder)
    folder = Path(tempfile.mkdtemp(prefix="wanlean-bench-"))
    try:
        bench_counts(vocabularies)
        bench_load(folder, big_bytes, args.pad_mb)
        bench_route(folder, big_bytes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
