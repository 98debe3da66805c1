"""Test support for comfyui-wanlean: tiny models built in code, a real-ComfyUI harness, pack loading."""

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str):
    """A script from benchmarks/ (e.g. "bench_fit_table") imported as a module, for tests that run it small."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses (and pickling) look their module up there
    spec.loader.exec_module(module)
    return module
