"""Import this pack the way ComfyUI does: the folder's __init__.py as a package named by its path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]


def load_pack(root: Path = PACK_ROOT, fresh: bool = False):
    # ComfyUI's load_custom_node: module name = the folder path with "." replaced, spec from __init__.py.
    module_name = str(root).replace(".", "_x_")
    if fresh:
        for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
            del sys.modules[name]
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, root / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
