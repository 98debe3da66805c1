"""Every WanLean node keeps the schema saved workflows rely on: input names, types, defaults and options,
outputs, and whether it is an output node. `tests/data/node_schemas.json` holds the schemas as they were
before the restructure of issue 9; the current ones must match it, with two allowances: new optional inputs,
and the categories in ALLOWED_CATEGORY_MOVES.

Combos that list model files or folders depend on what is installed; the snapshot keeps only their fixed
entries ("estimate", "none") and marks them `model_list`. Tooltips are not compared (test_pack checks every
input has one).

Regenerate (only when a schema change is intended): python tests/test_node_schemas.py --write
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

SNAPSHOT = Path(__file__).resolve().parent / "data" / "node_schemas.json"
# node id -> (category in the snapshot, category now): moves the issue asked for.
ALLOWED_CATEGORY_MOVES = {"WanLeanGenerationCost": ("WanLean/prompt", "WanLean/video")}
_PROBE = "wanlean_schema_probe"


def _input_spec(spec) -> dict:
    if isinstance(spec, str):  # hidden inputs: "UNIQUE_ID"
        return {"type": spec}
    kind, options = spec[0], dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
    options.pop("tooltip", None)
    if isinstance(kind, (list, tuple)):
        return {"type": "COMBO", "choices": list(kind), **options}
    return {"type": kind, **options}


def node_schema(info: dict) -> dict:
    """The compared part of one node's /object_info entry (or of the same built in-process)."""
    inputs = info.get("input", {})
    return {
        "category": info["category"],
        "output_node": bool(info.get("output_node", False)),
        "outputs": [list(pair) for pair in zip(info["output"], info["output_name"])],
        "inputs": {
            section: {name: _input_spec(spec) for name, spec in inputs.get(section, {}).items()}
            for section in ("required", "optional", "hidden")
            if section in inputs
        },
    }


def _object_info(cls) -> dict:
    """What ComfyUI's /object_info says for a V1 node class (server.py node_info)."""
    # JSON round trip: tuples become lists, as over HTTP.
    return json.loads(json.dumps({
        "input": cls.INPUT_TYPES(),
        "output": cls.RETURN_TYPES,
        "output_name": getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES),
        "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
        "category": getattr(cls, "CATEGORY", "sd"),
    }))


def _with_model_folders(comfy_module, folders: list[str], files: list[str], build):
    """Run `build()` while the node layer's ComfyUI adapter reports these model folders and files."""
    saved = {name: getattr(comfy_module, name) for name in ("model_files", "model_folders")}
    comfy_module.model_files = lambda kind: list(files)
    comfy_module.model_folders = lambda kind: list(folders)
    try:
        return build()
    finally:
        for name, value in saved.items():
            setattr(comfy_module, name, value)


def in_process_schemas(pack) -> dict:
    """Schemas of every WanLean node built in-process. Model-list combos are found by listing one probe
    file and one probe model folder: the entries that appear then are the installed-model part."""
    comfy_module = pack.nodes._comfy

    def build():
        return {node_id: node_schema(_object_info(cls)) for node_id, cls in sorted(pack.NODE_CLASS_MAPPINGS.items())}

    empty = _with_model_folders(comfy_module, [], [], build)
    with tempfile.TemporaryDirectory() as root:
        probe = Path(root) / _PROBE
        probe.mkdir()
        for marker in ("config.json", "model_index.json"):
            (probe / marker).write_text("{}")
        listed = _with_model_folders(comfy_module, [root], [_PROBE + ".safetensors"], build)
    for node_id, schema in empty.items():
        for section, inputs in schema["inputs"].items():
            for name, spec in inputs.items():
                if spec["type"] == "COMBO" and listed[node_id]["inputs"][section][name]["choices"] != spec["choices"]:
                    spec["model_list"] = True
    return empty


def normalised(current: dict, snapshot: dict) -> dict:
    """`current` with each model-list combo cut to the snapshot's fixed entries (installed files dropped)."""
    out = json.loads(json.dumps(current))
    for node_id, schema in out.items():
        old_node = snapshot.get(node_id, {}).get("inputs", {})
        for section, inputs in schema["inputs"].items():
            for name, spec in inputs.items():
                old = old_node.get(section, {}).get(name)
                if old and old.get("model_list") and spec["type"] == "COMBO":
                    fixed = [c for c in spec["choices"] if c in old["choices"]]
                    spec["choices"] = fixed
                    spec["model_list"] = True
    return out


def differences(current: dict, snapshot: dict) -> list[str]:
    """What changed against the snapshot that a saved workflow would notice."""
    problems = []
    for node_id, old in snapshot.items():
        new = current.get(node_id)
        if new is None:
            problems.append(f"{node_id}: node is gone")
            continue
        category = (old["category"], new["category"])
        if category[0] != category[1] and ALLOWED_CATEGORY_MOVES.get(node_id) != category:
            problems.append(f"{node_id}: category {category[0]!r} became {category[1]!r}")
        for key in ("output_node", "outputs"):
            if old[key] != new[key]:
                problems.append(f"{node_id}: {key} {old[key]!r} became {new[key]!r}")
        for section in ("required", "optional", "hidden"):
            old_inputs, new_inputs = old["inputs"].get(section, {}), new["inputs"].get(section, {})
            for name, spec in old_inputs.items():
                if name not in new_inputs:
                    problems.append(f"{node_id}: {section} input {name!r} is gone")
                elif new_inputs[name] != spec:
                    problems.append(f"{node_id}: {section} input {name!r} was {spec!r}, is {new_inputs[name]!r}")
            for name in new_inputs.keys() - old_inputs.keys():
                if section != "optional":
                    problems.append(f"{node_id}: new {section} input {name!r} (only optional inputs may be added)")
    return problems


def load_snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_in_process_schemas_match_the_snapshot(pack):
    snapshot = load_snapshot()
    current = in_process_schemas(pack)
    assert set(current) == set(snapshot), "nodes added or removed: update the snapshot on purpose"
    assert differences(current, snapshot) == []


def test_the_allowed_category_move_happened(pack):
    for node_id, (_before, after) in ALLOWED_CATEGORY_MOVES.items():
        assert pack.NODE_CLASS_MAPPINGS[node_id].CATEGORY == after


def test_the_comparison_catches_changes():
    snapshot = load_snapshot()
    changed = json.loads(json.dumps(snapshot))
    sampler = changed["WanLeanSampler"]["inputs"]
    sampler["required"]["steps"]["default"] = 30
    sampler["optional"]["new_option"] = {"type": "INT", "default": 0}
    changed["WanLeanTokenCount"]["category"] = "WanLean/other"
    del changed["WanLeanTruncate"]["inputs"]["required"]["tail_tokens"]
    problems = differences(changed, snapshot)
    assert len(problems) == 3, problems
    assert any("'steps'" in p for p in problems) and any("tail_tokens" in p for p in problems)


@pytest.mark.comfyui
def test_object_info_of_the_running_comfyui_matches_the_snapshot(comfy):
    snapshot = load_snapshot()
    info = comfy.object_info()
    current = {node_id: node_schema(info[node_id]) for node_id in snapshot if node_id in info}
    assert set(current) == set(snapshot), f"ComfyUI does not list: {sorted(set(snapshot) - set(current))}"
    assert differences(normalised(current, snapshot), snapshot) == []


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    from wltest.pack import load_pack

    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(json.dumps(in_process_schemas(load_pack()), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
