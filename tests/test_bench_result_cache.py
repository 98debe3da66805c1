"""benchmarks/bench_result_cache.py runs (small): its hits run 0 forwards and give the stored run's frames."""

from wltest import load_benchmark


def test_the_benchmark_runs_small_and_its_hits_skip_denoising(capsys):
    measured = load_benchmark("bench_result_cache").main(["--steps", "2", "--repeat", "1", "--blocks", "2"])
    assert measured["forwards"] == {"uncached": 4, "memory hit": 0, "disk hit": 0} and measured["identical"]
    out = capsys.readouterr().out
    assert "memory hit / uncached: " in out and "disk hit / uncached: " in out
