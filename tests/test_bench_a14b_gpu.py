"""benchmarks/bench_a14b_gpu.py runs its real code path on a tiny config when there is no CUDA."""

import importlib.util
import json

import pytest
from wltest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_a14b_gpu")


def test_tiny_run_measures_every_mode_and_size(bench, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on CUDA the script builds the full-size model; run it by hand")
    out = tmp_path / "results.json"
    report = bench.main(["--steps", "1", "--sizes", "32x32x5,64x32x5", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    assert [(r["size"], r["mode"]) for r in report["results"]] == [
        (size, mode) for mode in ("gpu", "model_offload", "sequential_offload") for size in ("32x32x5", "64x32x5")
    ]
    has_accelerate = importlib.util.find_spec("accelerate") is not None
    for result in report["results"]:
        if result["mode"] == "sequential_offload" and not has_accelerate:  # ComfyUI's environment
            assert result["status"].startswith("unavailable") and "accelerate" in result["status"]
            continue
        assert result["status"] == "ok"
        # 1 warm-up + 1 timed step; the boundary puts the timed (last) step on the low-noise expert.
        assert [(s["expert"], s["warm_up"]) for s in result["steps"]] == [("high", True), ("low", False)]
        assert result["mean_step_s"] is not None
    printed = capsys.readouterr().out
    assert "s/step" in printed and "sequential_offload" in printed


def test_time_budget_stops_starting_configs(bench):
    report = bench.main(["--steps", "1", "--sizes", "32x32x5", "--modes", "gpu,model_offload", "--time-budget", "0"])
    assert [r["status"] for r in report["results"]] == ["skipped: time budget spent"] * 2


def test_full_size_config_is_wan22_a14b(bench):
    config = bench.A14B_EXPERT
    assert (config["num_attention_heads"] * config["attention_head_dim"], config["num_layers"], config["ffn_dim"]) == (5120, 40, 13824)
    assert (config["in_channels"], config["out_channels"], config["text_dim"], config["freq_dim"]) == (16, 16, 4096, 256)
    assert config["patch_size"] == (1, 2, 2) and config["cross_attn_norm"] and config["qk_norm"] == "rms_norm_across_heads"
