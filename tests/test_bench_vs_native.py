"""benchmarks/bench_vs_native.py: WanLean against ComfyUI's own Wan path, run small on the tiny config."""

import math
import os
import re
import subprocess
import sys

import pytest
from wltest import BENCHMARKS, load_benchmark
from wltest.comfy import SKIP_REASON, comfyui_path

SCRIPT = BENCHMARKS / "bench_vs_native.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_vs_native")


def run_script(*args, comfy=None):
    env = {key: value for key, value in os.environ.items() if key != "COMFYUI_PATH"}
    if comfy is not None:
        env["COMFYUI_PATH"] = str(comfy)
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    return subprocess.run([python, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=900, check=False)


def test_tiny_config_prints_finite_ratios_and_same_latent_shapes(bench):
    comfy = comfyui_path()
    if comfy is None:
        pytest.skip(SKIP_REASON)
    # One format and one timed run keep it to a minute on two shared cores; fp8_scaled is the format of the
    # files ComfyUI users have, and it exercises ComfyUI's scaled-fp8 loader against ours.
    done = run_script("--config", "tiny", "--formats", "fp8_scaled", "--repeats", "1", "--threads", "1", comfy=comfy)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ratios = [float(m.group(1)) for m in re.finditer(r"^ratio (\S+) ", done.stdout, re.MULTILINE)]
    assert len(ratios) == len(bench.OPTION_SETS), done.stdout  # one per option set
    assert all(math.isfinite(r) and r > 0 for r in ratios), ratios
    # 64×32×5 → 16 latent channels, (5 - 1) / 4 + 1 = 2 latent frames, 32/8 × 64/8.
    assert done.stdout.count("latents: both [1, 16, 2, 4, 8], finite") == len(ratios), done.stdout
    sides = [line for line in done.stdout.splitlines() if line.strip().startswith(("native (ComfyUI):", "wanlean:"))]
    assert len(sides) == 2 * len(ratios), done.stdout
    for line in sides:
        seconds = float(re.search(r"([\d.]+) s/step", line).group(1))
        memory = float(re.search(r"peak RSS ([\d.]+) GiB", line).group(1))
        assert seconds > 0 and memory > 0, line
        # cfg 4/3 on both experts: every step runs the conditional and the unconditional pass
        assert "2.00 sample-forwards/step" in line, line


def test_latent_check_refuses_other_shapes_and_non_finite_values(bench, tmp_path):
    import torch
    from safetensors.torch import save_file

    def result(name, tensor):
        path = tmp_path / f"{name}.safetensors"
        save_file({"latents": tensor}, str(path))
        return {"latents": str(path)}

    good = result("good", torch.randn(1, 16, 2, 4, 8))
    assert "both [1, 16, 2, 4, 8], finite" in bench.check_latents(good, result("other", torch.randn(1, 16, 2, 4, 8)))
    with pytest.raises(SystemExit, match="shapes differ"):
        bench.check_latents(good, result("wide", torch.randn(1, 16, 2, 4, 16)))
    nan = torch.randn(1, 16, 2, 4, 8)
    nan[0, 3, 1, 2, 5] = float("nan")
    with pytest.raises(SystemExit, match="wanlean latents are not finite"):
        bench.check_latents(good, result("nan", nan))


def test_full_config_refuses_a_machine_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --config full would build the full-size pair")
    done = run_script("--config", "full")
    assert done.returncode == 2
    assert "needs a CUDA GPU" in done.stderr and "--config mid" in done.stderr


def test_missing_comfyui_is_named(tmp_path):
    done = run_script("--config", "tiny", "--comfyui", str(tmp_path))
    assert done.returncode == 2
    assert "COMFYUI_PATH" in done.stderr
