"""Speed of real-token umT5 encoding vs diffusers' padded path, and of a cached prompt.

    python benchmarks/bench_text_encoding.py [--repeat 3] [--threads 1] [--lengths 32,64,128]

Encoder: a random umT5 about umT5-base size (d_model 768, 12 layers, 12 heads, d_ff 2048, gated-gelu,
relative attention bias per layer); the vocabulary is the tiny test one (speed does not depend on it).
For prompts of 32, 64 and 128 tokens it prints, best of --repeat (the two sides alternate), both the
process's CPU time (steady on a shared machine) and wall time:
1. prompt only: diffusers' `WanPipeline.encode_prompt` (pads to 512, then trims and zero-pads) vs
   `wanlean.video.text_encoding.encode_texts` on the real tokens; the speed-up and the max abs difference of the
   [1, 512, 768] embeddings (target: ≥ 4× at ≤ 128 tokens, identical embeddings);
2. prompt + negative of the same length: diffusers runs two padded forwards, we run one batched forward;
3. a cached prompt + negative: encoder forwards (target 0) and time (target < 1 ms).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from wltest.tiny_wan import base_like_text_encoder, tiny_transformer, tiny_vae, tokenizer_folder  # noqa: E402

from wanlean.video.embedding_cache import EmbeddingCache, MemoryCache  # noqa: E402
from wanlean.video.session import LazyTextEncoder  # noqa: E402
from wanlean.video.text_encoding import encode_texts, padded_batch  # noqa: E402
from wanlean.tokens import WAN_TEXT_LEN  # noqa: E402

WORDS = (
    "a red fox runs through deep snow at dawn the camera tracks it from a low angle close-up of an old man "
    "smiling warm colour tone soft light from a window cyberpunk city at night neon signs reflect on wet streets"
).split()


def text_with_tokens(tokenizer, tokens: int, offset: int = 0) -> str:
    """A prompt of exactly `tokens` umT5 tokens (`</s>` included) with this tokenizer."""
    words = []
    index = offset
    while len(tokenizer(" ".join(words)).input_ids) < tokens:
        words.append(WORDS[index % len(WORDS)])
        index += 1
    text = " ".join(words)
    while len(tokenizer(text).input_ids) > tokens:  # the last word may add several pieces: trim letters
        text = text[:-1].rstrip()
    return text


def measure(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call. On a shared machine wall time swings with
    other jobs; the process's CPU time counts only the work done (with one thread, no spin-waiting)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def best_of_pair(repeat: int, theirs, ours):
    """Best (wall, cpu) of two functions run alternately, so a busy machine slows both alike."""
    their_runs, our_runs = [], []
    for _ in range(repeat):
        their_runs.append(measure(theirs))
        our_runs.append(measure(ours))
    best = lambda runs: (min(r[0] for r in runs), min(r[1] for r in runs))  # noqa: E731
    return best(their_runs), best(our_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is a clean work measure)")
    parser.add_argument("--lengths", default="32,64,128")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import UniPCMultistepScheduler, WanPipeline
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder(Path(tempfile.mkdtemp(prefix="wanlean-tok-")))), local_files_only=True)
    encoder = base_like_text_encoder(vocab_size=len(tokenizer))
    pipe = WanPipeline(
        tokenizer=tokenizer, text_encoder=encoder, vae=tiny_vae(16), transformer=tiny_transformer(16),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=12.0),
    )
    source = LazyTextEncoder("bench-umt5-base", lambda text: tokenizer(text, verbose=False).input_ids, lambda: encoder)
    print(f"umT5-base-like encoder: {sum(p.numel() for p in encoder.parameters()) / 1e6:.0f}M parameters, "
          f"{args.threads} CPU threads, best of {args.repeat}", flush=True)

    def diffusers_encode(prompt, negative=None):
        return pipe.encode_prompt(prompt, negative, do_classifier_free_guidance=negative is not None,
                                  max_sequence_length=WAN_TEXT_LEN, device="cpu")

    with torch.no_grad():
        diffusers_encode("warm up")
        print(f"\n{'tokens':>6} | {'case':<18} | {'diffusers ms (cpu / wall)':>25} | {'wanlean ms (cpu / wall)':>23} | "
              f"{'speed-up cpu / wall':>19} | max abs diff")
        for tokens in (int(x) for x in args.lengths.split(",")):
            prompt = text_with_tokens(tokenizer, tokens)
            negative = text_with_tokens(tokenizer, tokens, offset=7)
            assert len(tokenizer(prompt).input_ids) == tokens, (tokens, len(tokenizer(prompt).input_ids))

            expected, _ = diffusers_encode(prompt)
            ours = padded_batch(encode_texts(source, [prompt])[0])
            theirs_s, ours_s = best_of_pair(args.repeat, lambda: diffusers_encode(prompt), lambda: encode_texts(source, [prompt]))
            diff = (ours - expected).abs().max().item()
            row(tokens, "prompt", theirs_s, ours_s, diff)

            expected_p, expected_n = diffusers_encode(prompt, negative)
            ours = padded_batch(encode_texts(source, [prompt, negative])[0])
            theirs_s, ours_s = best_of_pair(
                args.repeat, lambda: diffusers_encode(prompt, negative), lambda: encode_texts(source, [prompt, negative])
            )
            diff = max((ours[0:1] - expected_p).abs().max().item(), (ours[1:2] - expected_n).abs().max().item())
            row(tokens, "prompt + negative", theirs_s, ours_s, diff)

        cache = EmbeddingCache(MemoryCache())
        prompt, negative = text_with_tokens(tokenizer, 64), text_with_tokens(tokenizer, 64, offset=7)
        encode_texts(source, [prompt, negative], cache)
        forwards = []
        handle = encoder.register_forward_pre_hook(lambda *a: forwards.append(1))
        hit_s = min(measure(lambda: encode_texts(source, [prompt, negative], cache))[0] for _ in range(20))
        handle.remove()
        print(f"\ncached prompt + negative (64 tokens each): encoder forwards {len(forwards)}, encode {hit_s * 1e3:.3f} ms (wall, best of 20)")


def row(tokens, case, theirs, ours, diff) -> None:
    print(f"{tokens:>6} | {case:<18} | {theirs[1] * 1e3:>11.1f} / {theirs[0] * 1e3:>11.1f} | {ours[1] * 1e3:>10.1f} / {ours[0] * 1e3:>10.1f} | "
          f"{theirs[1] / ours[1]:>8.1f}× / {theirs[0] / ours[0]:>6.1f}× | {diff:.2e}", flush=True)


if __name__ == "__main__":
    main()
