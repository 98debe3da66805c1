"""benchmarks/bench_fit_table.py runs its real code path on the tiny pair when there is no CUDA: every mode,
auto's choice and why, and the preview overhead."""

import json

import pytest
import torch
from wltest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_fit_table")


def test_tiny_table_has_every_mode_auto_and_the_preview_overhead(bench, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("on CUDA the script builds the full-size pair and emulates cards; run it by hand")
    out = tmp_path / "fit.json"
    report = bench.main(["--steps", "2", "--sizes", "32x32x5", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    rows = {row["mode"]: row for row in report["rows"]}
    assert list(rows) == ["gpu", "model_offload", "sequential_offload", "auto"]
    for mode in ("gpu", "model_offload", "auto"):
        assert rows[mode]["status"] == "fits" and rows[mode]["s_per_step"] > 0
        assert rows[mode]["preview_s_per_step"] > 0 and rows[mode]["s_per_step_with_preview"] > 0
    assert rows["sequential_offload"]["status"] == ("fits" if report["accelerate"] else "unavailable")
    assert rows["auto"]["auto_chose"] == "gpu" and "the device is the CPU" in rows["auto"]["auto_reason"]


def test_fp8_storage_keeps_the_blocks_linears_float8(bench):
    from wltest.tiny_wan import tiny_transformer

    from wanlean.video.loaders.comfy_files.quant import Fp8Linear

    expert = tiny_transformer()
    bench.to_fp8_storage(expert, torch.float32)
    linears = [m for m in expert.blocks.modules() if isinstance(m, Fp8Linear)]
    assert linears and all(m.weight.dtype == torch.float8_e4m3fn for m in linears)
    assert not any(type(m) is torch.nn.Linear for m in expert.blocks.modules())
