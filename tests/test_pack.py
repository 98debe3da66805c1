"""The pack as ComfyUI sees it: mappings, schemas, tooltips, packaging rules, graceful degradation."""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_exports_what_comfyui_reads(pack):
    assert pack.WEB_DIRECTORY == "./js"
    assert (ROOT / "js").is_dir()
    assert pack.NODE_CLASS_MAPPINGS, "no nodes registered"
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    from wltest.pack import load_pack

    assert not load_pack().nodes.DISABLED, "a node module failed to load in the test environment"


def test_every_node_follows_the_v1_contract(pack):
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("WanLean"), node_id
        assert cls.CATEGORY.startswith("WanLean/"), node_id
        assert callable(getattr(cls, cls.FUNCTION)), node_id
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES), node_id
        schema = cls.INPUT_TYPES()
        assert set(schema) <= {"required", "optional", "hidden"}, node_id
        for section in ("required", "optional"):
            for name, spec in schema.get(section, {}).items():
                assert len(spec) == 2 and isinstance(spec[1], dict), f"{node_id}.{name}"
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_node_modules_use_relative_imports_only():
    # ComfyUI has a top-level module called `nodes`, and the pack folder's name varies by install.
    for path in list((ROOT / "nodes").glob("*.py")) + [ROOT / "__init__.py"]:
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(nodes|wanlean)\b", text, re.M), path
    for path in (ROOT / "wanlean").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(wanlean|folder_paths|comfy|server|nodes)\b", text, re.M), path


def test_missing_optional_package_disables_only_its_nodes(tmp_path, caplog):
    # A package of two node modules, one needing a package that is not installed.
    probe = tmp_path / "probe_nodes"
    probe.mkdir()
    (probe / "__init__.py").write_text("")
    (probe / "fine.py").write_text("NODE_CLASS_MAPPINGS = {'WanLeanFine': object}\nNODE_DISPLAY_NAME_MAPPINGS = {'WanLeanFine': 'Fine'}\n")
    (probe / "needy.py").write_text("import wanlean_absent_package\nNODE_CLASS_MAPPINGS = {'WanLeanNeedy': object}\nNODE_DISPLAY_NAME_MAPPINGS = {}\n")
    (probe / "broken.py").write_text("raise RuntimeError('boom')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        from wltest.pack import load_pack

        registry = load_pack().nodes._registry
        classes, display, disabled = registry.collect("probe_nodes", ["needy", "broken", "fine"])
    finally:
        sys.path.remove(str(tmp_path))
    assert list(classes) == ["WanLeanFine"] and list(display) == ["WanLeanFine"]
    assert disabled["needy"] == "missing Python package 'wanlean_absent_package'"
    assert "boom" in disabled["broken"]
    assert "Python package 'wanlean_absent_package' is missing" in caplog.text


def test_pyproject_meets_registry_rules():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data["project"]
    assert project["name"] == "comfyui-wanlean"
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["license"]
    assert not any(dep.split("[")[0].split("=")[0].split(">")[0].strip() == "torch" for dep in project["dependencies"])
    comfy = data["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] == "WanLean" and comfy["Icon"]
    assert "web" not in comfy, "WEB_DIRECTORY already serves js/; naming it here loads it twice"
    requirements = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert sorted(r.split(">")[0] for r in requirements) == sorted(d.split(">")[0] for d in project["dependencies"])


def test_no_eval_exec_or_runtime_pip():
    # The registry rejects eval/exec and installing packages at run time.
    for path in list(ROOT.glob("*.py")) + list((ROOT / "nodes").rglob("*.py")) + list((ROOT / "wanlean").rglob("*.py")):
        text = path.read_text()
        assert not re.search(r"(?<![\w.])(eval|exec)\(", text), path
        assert "pip install" not in text or "Install" in text, path
        assert "trust_remote_code=True" not in text, path
