"""The result cache across a ComfyUI restart (skipped without COMFYUI_PATH): the example workflow runs with
`result_cache` "memory + disk"; ComfyUI is stopped and started again on the same folders (its own node
cache and the pack's memory are gone); the same workflow, with another node title and its inputs in another
order, is a "result cache hit" with 0 forwards, and its latents and frames equal the first run's."""

import json
import os
import tempfile
from pathlib import Path

import pytest
from wltest.comfy import SKIP_REASON, ComfyServer, comfyui_path, ui_to_api
from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, tiny_folder

pytestmark = pytest.mark.comfyui

WORKFLOW = Path(__file__).resolve().parents[1] / "example_workflows" / "wan22_t2v_diffusers.json"


def workflow(server, prefix: str) -> tuple[dict, str]:
    """The example workflow on the tiny pipeline, its sampler's latents and frames saved under `prefix`;
    (api, sampler id)."""
    api = ui_to_api(json.loads(WORKFLOW.read_text(encoding="utf-8")), server.object_info())
    by_type = {node["class_type"]: node for node in api.values()}
    by_type["WanLeanLoadDiffusers"]["inputs"].update(folder="wan22-tiny-a14b", device="cpu")
    by_type["WanLeanSampler"]["inputs"].update(width=TINY_WIDTH, height=TINY_HEIGHT, frames=TINY_FRAMES, steps=3,
                                               result_cache="memory + disk")
    sampler_id = next(i for i, n in api.items() if n["class_type"] == "WanLeanSampler")
    api["80"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler_id, 2], "filename_prefix": f"latents/{prefix}"}}
    api["81"] = {"class_type": "SaveImage", "inputs": {"images": [sampler_id, 0], "filename_prefix": f"frames/{prefix}"}}
    return api, sampler_id


def outputs(server, api, entry, sampler_id):
    """(report, latents, frames as uint8 arrays) of a finished run."""
    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file

    report_id = next(i for i, n in api.items() if n["class_type"] == "PreviewAny" and n["inputs"]["source"][0] == sampler_id)
    report = server.ui_of(entry, report_id)["text"][0]
    saved = server.ui_of(entry, "80")["latents"][0]
    latents = load_file(str(server.output / saved["subfolder"] / saved["filename"]))["latent_tensor"]
    frames = np.stack([np.asarray(Image.open(server.output / s["subfolder"] / s["filename"]))
                       for s in server.ui_of(entry, "81")["images"]])
    return report, latents, frames


def test_a_result_stored_on_disk_is_a_hit_after_a_restart():
    import numpy as np
    import torch

    path = comfyui_path()
    if path is None:
        pytest.skip(SKIP_REASON)
    server = ComfyServer(path, Path(tempfile.mkdtemp(prefix="wanlean-results-")))
    server.start()
    try:
        os.symlink(tiny_folder("A14B"), server.model_dir("diffusers") / "wan22-tiny-a14b")
        api, sampler_id = workflow(server, "first")
        first = outputs(server, api, server.run(api, timeout=300), sampler_id)
        server.stop()
        server.start()  # a new process: ComfyUI's node cache and the pack's memory cache are empty
        api, sampler_id = workflow(server, "second")
        sampler = api[sampler_id]
        sampler["_meta"]["title"] = "renamed sampler"
        sampler["inputs"] = dict(reversed(list(sampler["inputs"].items())))
        second = outputs(server, api, server.run(api, timeout=300), sampler_id)
    finally:
        server.stop()
    report_first, latents_first, frames_first = first
    report, latents, frames = second
    assert "result cache miss: sampled, stored in memory and on disk" in report_first, report_first
    assert "result cache hit (disk): denoising skipped, 0 transformer forwards" in report, report
    assert "high-noise expert: 0 steps, 0 forwards" in report and "low-noise expert: 0 steps, 0 forwards" in report
    assert torch.equal(latents, latents_first)
    assert frames.shape == (TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, 3) and np.array_equal(frames, frames_first)
    assert len(os.listdir(server.output / "wanlean" / "result_cache")) == 1
