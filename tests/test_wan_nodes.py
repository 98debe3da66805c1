"""WanLeanLoadDiffusers and WanLeanSampler as ComfyUI calls them (in-process, tiny pipelines)."""

import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch
from wltest.pack import PACK_ROOT
from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, tiny_folder

from wanlean.video.sampler import OFFICIAL_NEGATIVE


@pytest.fixture()
def nodes(pack, monkeypatch, tmp_path):
    """The pack's diffusers-loader and sampler node modules with models/diffusers pointing at the tiny folders and the output
    folder at tmp_path."""
    module = types.SimpleNamespace(**{**vars(pack.nodes.video.load_diffusers), "WanLeanSampler": pack.nodes.video.sampler.WanLeanSampler})
    root = tmp_path / "diffusers"
    (root / "wan22").mkdir(parents=True)
    os.symlink(tiny_folder("A14B"), root / "wan22" / "tiny-a14b")
    os.symlink(tiny_folder("TI2V-5B"), root / "tiny-ti2v")
    monkeypatch.setattr(module._comfy, "model_folders", lambda kind: [str(root)] if kind == "diffusers" else [])
    monkeypatch.setattr(module._comfy, "output_directory", lambda: str(tmp_path / "output"))
    return module


def raises_wanlean(match):
    """The pack's WanLeanError (its class comes from the pack's own import of `wanlean`)."""
    return pytest.raises(ValueError, match=match)


def load(nodes, name="wan22/tiny-a14b", memory_mode="gpu"):
    (pipe,) = nodes.WanLeanLoadDiffusers().run(name, "auto", memory_mode, "cpu")
    return pipe


def sample(nodes, pipe, **overrides):
    values = dict(prompt="a red fox runs through deep snow", negative=OFFICIAL_NEGATIVE, width=TINY_WIDTH, height=TINY_HEIGHT,
                  frames=TINY_FRAMES, steps=3, cfg_high=4.0, cfg_low=3.0, shift=12.0, seed=1, sampler="unipc", text_cache="memory",
                  result_cache="off")  # these tests watch the sampling itself: a result-cache hit would skip it
    values.update(overrides)
    return nodes.WanLeanSampler().run(pipe, **values)


def test_schema_ids_categories_defaults_and_tooltips(pack):
    loader = pack.NODE_CLASS_MAPPINGS["WanLeanLoadDiffusers"]
    sampler = pack.NODE_CLASS_MAPPINGS["WanLeanSampler"]
    assert loader.CATEGORY == "WanLean/loaders" and sampler.CATEGORY == "WanLean/video"
    assert loader.RETURN_TYPES == ("WANLEAN_PIPE",)
    assert sampler.RETURN_TYPES == ("IMAGE", "INT,FLOAT", "LATENT", "STRING")
    assert sampler.RETURN_NAMES == ("images", "fps", "latent", "report")
    assert len(sampler.OUTPUT_TOOLTIPS) == 4
    schema = sampler.INPUT_TYPES()
    required = schema["required"]
    assert required["pipe"][0] == "WANLEAN_PIPE"
    assert required["negative"][1]["default"] == OFFICIAL_NEGATIVE
    defaults = {name: required[name][1]["default"] for name in ("width", "height", "frames", "steps", "cfg_high", "cfg_low", "shift")}
    assert defaults == dict(width=1280, height=720, frames=81, steps=40, cfg_high=4.0, cfg_low=3.0, shift=12.0)
    assert schema["optional"]["boundary"][1]["default"] == 0.0
    for cls in (loader, sampler):
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, (kind, options) in spec.get(section, {}).items():
                assert options.get("tooltip"), f"{cls.__name__}.{name}"


def core_module(pack, name):
    """The pack's own import of a `wanlean` module (what the node modules call)."""
    import importlib

    return importlib.import_module(f"{pack.__name__}.wanlean.{name}")


class FakeGenerate:
    """Stands in for `wanlean.video.sampler.generate`: records what the node hands the core."""

    def __init__(self):
        self.calls = []

    def __call__(self, session, request, cache=None, on_step=None, cancel_check=None, on_progress=None, result_cache=None):
        from types import SimpleNamespace

        self.calls.append(SimpleNamespace(session=session, request=request, cache=cache, result_cache=result_cache))
        return SimpleNamespace(frames=torch.zeros(1, 16, 16, 3), fps=16, latents=torch.zeros(1, 16, 1, 2, 2), report="fake",
                               stats=SimpleNamespace(text=[], result_cache="off"))  # the node logs the prompt from stats.text


def test_every_sampler_input_reaches_the_core_with_its_value(pack, nodes, monkeypatch):
    fake = FakeGenerate()
    monkeypatch.setattr(core_module(pack, "video.sampler"), "generate", fake)
    pipe = load(nodes)
    # Every number differs from its default, from the official value and from every other input.
    inputs = dict(prompt="a heron takes off", negative="static, blurry", width=64, height=48, frames=9, steps=7,
                  cfg_high=4.5, cfg_low=2.5, shift=7.25, seed=123456789012, sampler="euler", text_cache="off", boundary=0.6,
                  cfg_batch="off")
    out = nodes.WanLeanSampler().run(pipe, **inputs)
    (call,) = fake.calls
    assert call.session is pipe and call.cache is None
    request = call.request
    for name in ("prompt", "negative", "width", "height", "frames", "steps", "cfg_high", "cfg_low", "shift", "seed", "sampler", "boundary", "cfg_batch"):
        assert getattr(request, name) == inputs[name], name
    assert out["result"][1] == 16 and out["result"][3] == "fake"
    # boundary 0 (its default) means the model's own; a text_cache choice becomes that cache
    nodes.WanLeanSampler().run(pipe, **dict(inputs, boundary=0.0, text_cache="memory + disk"))
    assert fake.calls[1].request.boundary is None
    nodes.WanLeanSampler().run(pipe, **{k: v for k, v in inputs.items() if k != "cfg_batch"})  # a workflow saved before it
    assert fake.calls[2].request.cfg_batch == "auto"
    assert fake.calls[1].cache.disk.folder.endswith(os.path.join("output", "wanlean", "text_embedding_cache"))
    # result_cache: its default is memory; off reaches the core as None; memory + disk gets its folder and cap
    assert fake.calls[1].result_cache.disk is None and fake.calls[1].result_cache.memory is not None
    nodes.WanLeanSampler().run(pipe, **dict(inputs, result_cache="off"))
    nodes.WanLeanSampler().run(pipe, **dict(inputs, result_cache="memory + disk", result_cache_gb=3))
    assert fake.calls[3].result_cache is None
    disk = fake.calls[4].result_cache.disk
    assert disk.folder.endswith(os.path.join("output", "wanlean", "result_cache")) and disk.max_bytes == 3 * 1024**3


def test_a_repeated_sampler_run_is_a_result_cache_hit_whatever_the_node_id_and_argument_order(pack, nodes, monkeypatch):
    core_module(pack, "video.result_cache").SHARED_MEMORY.clear()
    updates = []

    class Bar:
        def __init__(self, total):
            updates.append([])

        def update_absolute(self, value, total=None, preview=None):
            updates[-1].append((value, total))

    monkeypatch.setattr(nodes._comfy, "progress_bar", Bar)
    pipe = load(nodes)
    first = sample(nodes, pipe, seed=4242, result_cache="memory", unique_id="5")["result"]
    inputs = dict(reversed(list(dict(prompt="a red fox runs through deep snow", negative=OFFICIAL_NEGATIVE, width=TINY_WIDTH,
                                     height=TINY_HEIGHT, frames=TINY_FRAMES, steps=3, cfg_high=4.0, cfg_low=3.0, shift=12.0,
                                     seed=4242, sampler="unipc", text_cache="off", result_cache="memory").items())))
    again = nodes.WanLeanSampler().run(load(nodes), unique_id="77", **inputs)["result"]
    assert "result cache miss" in first[3] and "result cache hit (memory): denoising skipped, 0 transformer forwards" in again[3]
    assert torch.equal(first[0], again[0]) and torch.equal(first[2]["samples"], again[2]["samples"])
    assert updates == [[(1, 3), (2, 3), (3, 3)], [(3, 3)]]  # a hit runs no step: its bar fills at once


def test_every_loader_input_reaches_the_core_with_its_value(pack, nodes, monkeypatch):
    calls = []
    monkeypatch.setattr(core_module(pack, "video.loaders.diffusers_folder"), "load_diffusers_folder", lambda *a, **k: calls.append((a, k)) or "pipe")
    assert nodes.WanLeanLoadDiffusers().run("wan22/tiny-a14b", "bf16", "sequential_offload", "cuda") == ("pipe",)
    (args, kwargs), = calls
    assert os.path.realpath(args[0]) == os.path.realpath(tiny_folder("A14B"))
    assert kwargs == dict(dtype="bf16", memory_mode="sequential_offload", device="cuda")


def test_folder_list_holds_pipelines_not_their_components(nodes):
    assert nodes.diffusers_folder_names() == ["tiny-ti2v", "wan22/tiny-a14b"]


def test_unlisted_folder_is_refused(nodes):
    with raises_wanlean("not a diffusers folder in models/diffusers"):
        nodes.WanLeanLoadDiffusers().run("../../etc", "auto", "gpu", "cpu")


def test_load_and_sample_give_comfyui_outputs(nodes):
    out = sample(nodes, load(nodes))
    images, fps, latent, report = out["result"]
    assert images.shape == (TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, 3) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert fps == 16 and isinstance(fps, int)
    assert set(latent) == {"samples"} and latent["samples"].shape == (1, 16, 2, 4, 4)
    assert "high-noise expert: 2 steps, 4 forwards" in report and "low-noise expert: 1 step, 2 forwards" in report
    assert out["ui"]["text"] == [report]


def test_ti2v_pipe_outputs_24_fps(nodes):
    images, fps, latent, report = sample(nodes, load(nodes, "tiny-ti2v"))["result"]
    assert fps == 24 and latent["samples"].shape[1] == 48 and images.shape[0] == TINY_FRAMES


def test_progress_advances_once_per_step_and_cancel_stops_within_a_step(nodes, monkeypatch):
    updates = []

    class Bar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            updates.append((value, total, preview))

    monkeypatch.setattr(nodes._comfy, "progress_bar", Bar)
    monkeypatch.setattr(nodes._comfy, "latent_previewer", lambda channels, device: None)  # previews off
    pipe = load(nodes)
    sample(nodes, pipe, steps=3)
    assert updates == [(1, 3, None), (2, 3, None), (3, 3, None)]

    class Interrupted(Exception):
        pass

    checks = []

    def interrupt_on_second_step():
        checks.append(1)
        if len(updates) >= 5:  # 3 from the first run, then the second step of this one
            raise Interrupted()

    monkeypatch.setattr(nodes._comfy, "throw_if_interrupted", interrupt_on_second_step)
    forwards = []
    # one entry per sample: the CFG pair counts 2 forwards whether it runs as two calls or one batch of 2
    handle = pipe.transformer.register_forward_pre_hook(lambda m, a, k: forwards.extend([1] * len(k["hidden_states"])), with_kwargs=True)
    try:
        with pytest.raises(Interrupted):
            sample(nodes, pipe, steps=3, cfg_high=4.0)
    finally:
        handle.remove()
    assert len(updates) == 5 and len(forwards) == 4  # 2 steps × 2 forwards, then stopped


def test_cancel_stops_the_node_between_two_transformer_blocks(nodes, monkeypatch):
    """ComfyUI's cancel check reaches the core as the block check: Cancel pressed while the first block runs
    stops the node before the second block, so no forward of the transformer completes."""
    pipe = load(nodes)

    class Interrupted(Exception):
        pass

    pressed, finished_forwards = [], []

    def throw_if_interrupted():
        if pressed:
            raise Interrupted()

    monkeypatch.setattr(nodes._comfy, "throw_if_interrupted", throw_if_interrupted)
    handles = [pipe.transformer.blocks[0].register_forward_hook(lambda *a: pressed.append(1)),
               pipe.transformer.register_forward_hook(lambda *a: finished_forwards.append(1))]
    try:
        with pytest.raises(Interrupted):
            sample(nodes, pipe, steps=3, cfg_high=4.0)
    finally:
        for handle in handles:
            handle.remove()
    assert len(pressed) == 1 and finished_forwards == []


def test_disk_cache_lands_in_the_output_folder_and_hits_after(nodes, tmp_path):
    pipe = load(nodes)
    sample(nodes, pipe, text_cache="memory + disk", prompt="a lighthouse in a storm")
    folder = tmp_path / "output" / "wanlean" / "text_embedding_cache"
    assert len(list(folder.glob("*.safetensors"))) == 2  # prompt and negative
    report = sample(nodes, load(nodes), text_cache="memory + disk", prompt="a lighthouse in a storm")["result"][3]
    assert "prompt: " in report and "cache hit" in report and "0 encoder forwards" in report


def test_bad_input_raises_wanlean_error_naming_the_input(nodes):
    pipe = load(nodes)
    with raises_wanlean(r"frames must be 4k\+1, e.g. 81; got 80"):
        sample(nodes, pipe, frames=80)


def test_without_diffusers_prompt_nodes_load_and_video_nodes_name_the_package(tmp_path):
    script = textwrap.dedent(
        f"""
        import logging, sys
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
        sys.modules["diffusers"] = None  # as if not installed
        sys.path[:0] = [{str(PACK_ROOT)!r}, {str(PACK_ROOT / "tests")!r}]
        from wltest.pack import load_pack
        pack = load_pack()
        assert "WanLeanPromptTemplate" in pack.NODE_CLASS_MAPPINGS
        loader = pack.NODE_CLASS_MAPPINGS["WanLeanLoadDiffusers"]
        try:
            loader().run("x", "auto", "gpu", "cpu")
        except Exception as exc:
            print("RUN:", type(exc).__name__, exc)
        print("DISABLED:", pack.nodes.DISABLED)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "'diffusers' is missing" in output  # logged when the pack loads
    assert "RUN: WanLeanError" in output and "pip install diffusers" in output
    assert "DISABLED: {}" in output


def test_importing_the_video_nodes_imports_neither_torch_nor_diffusers():
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(PACK_ROOT)!r}, {str(PACK_ROOT / "tests")!r}]
        import importlib.util
        from wltest.pack import load_pack
        pack = load_pack()
        print("WAN", "WanLeanSampler" in pack.NODE_CLASS_MAPPINGS, "diffusers" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "WAN True False" in result.stdout, result.stdout + result.stderr


def test_loaders_default_to_auto_and_comfyui_unloads_before_auto_measures(pack, nodes, monkeypatch):
    """memory_mode 'auto' is the loaders' default; on a GPU the sampler node asks ComfyUI to unload its own
    models before the core measures free memory (inside generate)."""
    for node_id in ("WanLeanLoadDiffusers", "WanLeanLoadComfyFiles"):
        kind, options = pack.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["required"]["memory_mode"]
        assert options["default"] == "auto" and kind == ["auto", "gpu", "model_offload", "sequential_offload"]
    order = []
    fake = FakeGenerate()
    monkeypatch.setattr(core_module(pack, "video.sampler"), "generate", lambda *a, **k: order.append("generate") or fake(*a, **k))
    monkeypatch.setattr(nodes._comfy, "unload_comfy_models", lambda: order.append("unload"))
    import dataclasses

    pipe = load(nodes, memory_mode="auto")
    sample(nodes, dataclasses.replace(pipe, device=torch.device("cuda")))
    assert order == ["unload", "generate"]
    sample(nodes, pipe)  # on the CPU there is nothing to unload for
    assert order == ["unload", "generate", "generate"]


def test_each_step_sends_a_preview_and_a_progress_line(nodes, monkeypatch):
    updates, texts, previewed = [], [], []

    class Bar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            updates.append((value, total, preview))

    def fake_previewer(channels, device):
        assert channels == 16 and str(device) == "cpu"
        return lambda x0: previewed.append(tuple(x0.shape)) or ("JPEG", f"image {len(previewed)}", 512)

    monkeypatch.setattr(nodes._comfy, "progress_bar", Bar)
    monkeypatch.setattr(nodes._comfy, "latent_previewer", fake_previewer)
    monkeypatch.setattr(nodes._comfy, "show_text", lambda node_id, text: texts.append((node_id, text)))
    out = sample(nodes, load(nodes), steps=3, unique_id="7")
    assert updates == [(i, 3, ("JPEG", f"image {i}", 512)) for i in (1, 2, 3)]  # the first after the first step
    assert previewed == [(1, 16, 2, 4, 4)] * 3
    assert [t for _, t in texts[:3]][0].startswith("high-noise expert · step 1/3 · ")
    assert texts[2][1].startswith("low-noise expert · step 3/3 · ") and texts[3] == ("7", out["result"][3])
    assert "previews: 3," in out["result"][3]


def test_comfyui_previewer_follows_preview_method(pack):
    """ComfyUI's own latent_preview with the Wan latent formats (needs ComfyUI importable: COMFYUI_PATH)."""
    cli_args = pytest.importorskip("comfy.cli_args")
    pytest.importorskip("latent_preview")
    method = cli_args.args.preview_method
    comfy = pack.nodes._comfy
    try:
        cli_args.args.preview_method = cli_args.LatentPreviewMethod.NoPreviews
        assert comfy.latent_previewer(16, torch.device("cpu")) is None
        for setting in (cli_args.LatentPreviewMethod.Latent2RGB, cli_args.LatentPreviewMethod.Auto):
            cli_args.args.preview_method = setting
            kind, image, max_size = comfy.latent_previewer(16, torch.device("cpu"))(torch.randn(1, 16, 3, 6, 10))
            assert kind == "JPEG" and image.size == (10, 6) and max_size > 0  # the first latent frame, in colour
        kind, image, _ = comfy.latent_previewer(48, torch.device("cpu"))(torch.randn(1, 48, 2, 4, 8))  # Wan22 factors
        assert image.size == (8, 4)
        with pytest.raises(RuntimeError):  # 16 channels are not TI2V-5B's 48: the format follows the model
            comfy.latent_previewer(48, torch.device("cpu"))(torch.randn(1, 16, 2, 4, 8))
    finally:
        cli_args.args.preview_method = method
