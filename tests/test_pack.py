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


def test_comfyui_shows_the_error_type_as_a_plain_name(pack):
    """ComfyUI reports `module + '.' + qualname` (execution.py full_type_name); imported by path the module
    was '/…/custom_nodes/comfyui-wanlean.wanlean.errors', so the error type read as a path."""
    import wanlean

    error_class = pack.wanlean.errors.WanLeanError
    assert pack.wanlean.errors.__name__.startswith(pack.__name__)  # the path-like module name ComfyUI gives
    assert f"{error_class.__module__}.{error_class.__qualname__}" == "wanlean.WanLeanError"
    assert wanlean.WanLeanError.__module__ == "wanlean" and wanlean.WanLeanError is wanlean.errors.WanLeanError


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


_PROCESS_MODULES = {"subprocess", "pip", "ensurepip", "runpy", "pty", "multiprocessing"}
_PROCESS_CALLS = {"system", "popen", "execv", "execve", "execvp", "spawnv", "spawnl", "startfile", "posix_spawn"}


def runtime_pip_problems(source: str) -> list[str]:
    """What in `source` could install packages or start a process at run time. A message telling the user
    to run "pip install ..." is fine; a command string or a call that runs one is not."""
    import ast

    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [f"imports {n}" for n in names if n.split(".")[0] in _PROCESS_MODULES]
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in _PROCESS_CALLS or (isinstance(node.func, ast.Name) and name == "__import__"):
                problems.append(f"calls {name}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            command = node.value.strip()
            if command in ("pip", "pip3", "-m") or re.match(r"(python\S*\s+-m\s+)?pip3?\s+install\b", command):
                problems.append(f"a pip command {command[:40]!r}")
    return problems


def test_runtime_pip_check_catches_what_it_is_for():
    assert runtime_pip_problems('raise Error("Install it with: pip install diffusers")') == []
    assert runtime_pip_problems('raise Error(f"Install it: pip install {name}")') == []
    assert runtime_pip_problems('import subprocess, sys\nsubprocess.run([sys.executable, "-m", "pip", "install", "x"])  # Install')
    assert runtime_pip_problems('import os\nos.system("pip install x")  # Install')
    assert runtime_pip_problems('from pip._internal import main\nmain(["install", "x"])')
    assert runtime_pip_problems('cmd = "pip install x"')


def test_no_eval_exec_or_runtime_pip():
    # The registry rejects eval/exec and installing packages at run time.
    for path in list(ROOT.glob("*.py")) + list((ROOT / "nodes").rglob("*.py")) + list((ROOT / "wanlean").rglob("*.py")):
        text = path.read_text()
        assert not re.search(r"(?<![\w.])(eval|exec)\(", text), path
        assert runtime_pip_problems(text) == [], path
        assert "trust_remote_code=True" not in text, path
