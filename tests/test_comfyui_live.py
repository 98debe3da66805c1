"""The pack inside a real, headless ComfyUI (skipped without COMFYUI_PATH)."""

import pytest

from wanlean.prompt import template

pytestmark = pytest.mark.comfyui


def test_comfyui_loads_the_pack_and_lists_every_node(comfy, pack):
    assert not comfy.pack_import_failed()
    info = comfy.object_info()
    missing = sorted(set(pack.NODE_CLASS_MAPPINGS) - set(info))
    assert not missing, f"ComfyUI does not list: {missing}"
    for node_id in pack.NODE_CLASS_MAPPINGS:
        assert info[node_id]["category"].startswith("WanLean/")
        assert info[node_id]["python_module"].startswith("custom_nodes.")


def test_template_workflow_runs_to_success(comfy):
    inputs = {slot: template.NONE for slot in template.PRESET_SLOTS}
    inputs.update(
        subject="a lighthouse keeper", scene="on a rocky island", motion="he climbs the spiral stairs",
        lighting="backlight / 背光", camera_angle="low angle / 低角度", language="english", joiner="comma",
    )
    workflow = {
        "1": {"class_type": "WanLeanPromptTemplate", "inputs": inputs},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}},
    }
    entry = comfy.run(workflow, timeout=60)
    assert comfy.ui_of(entry, "2")["text"] == [
        "a lighthouse keeper, on a rocky island, he climbs the spiral stairs, backlight, low angle."
    ]
    # keywords: the subject, scene and motion as typed, then the aesthetic slots (issue 11)
    assert comfy.ui_of(entry, "3")["text"] == ["a lighthouse keeper, on a rocky island, he climbs the spiral stairs, backlight, low angle"]

