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


def test_speed_sets_are_measured_in_one_run_with_ratios_to_the_baseline(bench):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on CUDA the script builds the full-size model; run it by hand")
    report = bench.main(["--steps", "1", "--sizes", "32x32x5", "--modes", "gpu", "--weight-storage", "fp8",
                         "--speed-sets", "baseline;step_cache=first_block,cache_threshold=0;fp8_matmul=on;attention=sage"])
    by_set = {r["speed"]: r for r in report["results"]}
    assert list(by_set) == ["baseline", "step_cache=first_block,cache_threshold=0", "fp8_matmul=on", "attention=sage"]
    cached = by_set["step_cache=first_block,cache_threshold=0"]
    assert cached["status"] == "ok" and "ratio_to_baseline" in cached
    assert any("skipped 0 of" in line for line in cached["speed_report"])
    assert by_set["fp8_matmul=on"]["status"].startswith("unavailable: fp8_matmul: needs an NVIDIA GPU")  # weights are fp8 here
    assert "pip install sageattention" in by_set["attention=sage"]["status"]


def test_fp8_weight_storage_turns_block_linears_into_fp8(bench):
    import torch

    from wanlean.video.fp8_matmul import fp8_layers

    session, _ = bench.build_session(False, "cpu", torch.float32, None, "fp8")
    assert not any(type(m) is torch.nn.Linear for m in session.transformer.blocks.modules())
    assert len(fp8_layers([session.transformer])) == 2 * 10  # 2 blocks × (q, k, v, out in 2 attentions + 2 ffn)
