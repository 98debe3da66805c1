"""benchmarks/bench_cfg_batch.py runs its real code path (the sampler's predict_noise) on the tiny config."""

import json

from wltest import load_benchmark


def test_tiny_run_measures_every_variant_and_prints_ratios(tmp_path, capsys):
    bench = load_benchmark("bench_cfg_batch")
    out = tmp_path / "cfg_batch.json"
    report = bench.main(["--device", "cpu", "--configs", "tiny", "--repeat", "1", "--prompts", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    (result,) = report["results"]
    assert result["video_tokens"] == 24  # 64×32×9: 3 latent frames × 2 × 4 patches
    assert result["hidden_elements"] == 24 * 24 and result["auto"].startswith("auto: batched on the CPU")
    assert list(result["ms_per_step"]) == [
        "pair sequential", "pair batched", "2 prompts one at a time, sequential pair",
        "2 prompts one at a time, batched pair", "2 prompts as one batch of 4",
    ]
    assert all(len(values) == 5 for values in result["all_ms"].values())  # 5 × --repeat for tiny
    assert all(value > 0 for value in result["ms_per_step"].values())
    ms = result["ms_per_step"]
    assert abs(result["ratio_pair"] - ms["pair batched"] / ms["pair sequential"]) < 0.01
    assert all(peak is not None and peak >= 0 for peak in result["peak_extra_mb"].values())
    printed = capsys.readouterr().out
    assert "ratio pair batched / sequential:" in printed and "ratio 2 prompts as one batch / one at a time" in printed
