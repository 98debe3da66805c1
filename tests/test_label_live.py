"""WanLeanAIGCLabel inside a real, headless ComfyUI (skipped without COMFYUI_PATH): tiny sampler →
label → core SaveVideo writes an mp4 whose container metadata holds the AIGC entry beside ComfyUI's own
prompt, whose first frames carry the visible label while the rest of the picture matches the unlabelled
video, and which `wanlean label` reads back."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from wltest.comfy import ui_to_api
from wltest.tiny_wan import tiny_folder

from wanlean import cli
from wanlean.video.label import LabelSpec, label_box

pytestmark = pytest.mark.comfyui

WORKFLOW = Path(__file__).resolve().parents[1] / "example_workflows" / "wan22_t2v_diffusers.json"
WIDTH, HEIGHT, FRAMES = 192, 128, 9  # big enough for a readable label at size 0.15


@pytest.fixture(scope="module")
def tiny_a14b(comfy):
    target = comfy.model_dir("diffusers") / "wan22-tiny-a14b-label"
    if not target.exists():
        os.symlink(tiny_folder("A14B"), target)
    return target.name


def decode(path):
    import av

    with av.open(str(path)) as container:
        metadata = dict(container.metadata)
        frames = [frame.to_ndarray(format="rgb24").astype(np.int16) for frame in container.decode(video=0)]
    return metadata, frames


def test_sampler_then_label_then_savevideo(comfy, tiny_a14b, capsys):
    api = ui_to_api(json.loads(WORKFLOW.read_text(encoding="utf-8")), comfy.object_info())
    by_type = {node["class_type"]: (node_id, node) for node_id, node in api.items()}
    by_type["WanLeanLoadDiffusers"][1]["inputs"].update(folder=tiny_a14b, device="cpu")
    sampler_id, sampler = by_type["WanLeanSampler"]
    sampler["inputs"].update(width=WIDTH, height=HEIGHT, frames=FRAMES, steps=1)
    plain_save_id = by_type["SaveVideo"][0]
    api[plain_save_id]["inputs"]["filename_prefix"] = "video/plain"
    spec = LabelSpec(text="AI生成", position="top-right", size=0.15, opacity=1.0, when="first seconds", seconds=0.25,
                     producer="studio-7", content_id="vid-001")
    api["950"] = {"class_type": "WanLeanAIGCLabel", "inputs": {
        "images": [sampler_id, 0], "fps": 16.0, "text": spec.text, "position": spec.position, "size": spec.size,
        "opacity": spec.opacity, "when": spec.when, "seconds": spec.seconds, "producer": spec.producer,
        "content_id": spec.content_id}}
    api["951"] = {"class_type": "SaveVideo", "inputs": {"video": ["950", 1], "filename_prefix": "video/labelled",
                                                         "format": "auto", "codec": "auto"}}
    api["952"] = {"class_type": "PreviewAny", "inputs": {"source": ["950", 2]}}
    entry = comfy.run(api, timeout=300)

    def saved(node_id):
        item = comfy.ui_of(entry, node_id)["images"][0]
        return comfy.output / item["subfolder"] / item["filename"]

    labelled_path, plain_path = saved("951"), saved(plain_save_id)
    metadata, labelled = decode(labelled_path)
    plain_metadata, plain = decode(plain_path)
    aigc = json.loads(metadata["AIGC"])
    assert aigc == {"Label": "1", "ContentProducer": "studio-7", "ProduceID": "vid-001", "ReservedCode1": "",
                    "ContentPropagator": "", "PropagateID": "", "ReservedCode2": ""}
    assert "prompt" in metadata and json.loads(metadata["prompt"]) and "AIGC" not in plain_metadata
    assert json.loads(comfy.ui_of(entry, "952")["text"][0]) == {"AIGC": aigc}

    top, left, height, width = label_box((FRAMES, HEIGHT, WIDTH, 3), spec)
    labelled_frames = round(spec.seconds * 16)  # 4 of 9
    inside = (slice(top, top + height), slice(left, left + width))
    outside = np.ones((HEIGHT, WIDTH), dtype=bool)
    outside[max(0, top - 16) : top + height + 16, max(0, left - 16) : left + width + 16] = False  # codec blocks
    for index, (a, b) in enumerate(zip(labelled, plain)):
        diff = np.abs(a - b)
        if index < labelled_frames:
            assert diff[inside].mean() > 20, index
        else:
            assert diff[inside].mean() < 3, index
        assert diff[outside].mean() < 2, index

    assert cli.main(["label", str(labelled_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"AIGC": aigc}
    assert cli.main(["label", str(plain_path)]) == 1
