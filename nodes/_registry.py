"""Collects node modules; one whose dependency is missing is skipped with a message naming it."""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger("wanlean")


def collect(package: str, module_names) -> tuple[dict, dict, dict]:
    """Import `package.<name>` for each name; returns (class mappings, display names, disabled), where
    disabled maps a module name to the reason it was skipped."""
    classes: dict = {}
    display: dict = {}
    disabled: dict = {}
    pack_root = package.rsplit(".", 1)[0]
    for name in module_names:
        try:
            module = importlib.import_module(f".{name}", package)
        except ModuleNotFoundError as exc:
            missing = exc.name or "?"
            if missing.startswith(pack_root):  # our own module is missing: a packaging bug, not a user's
                disabled[name] = f"failed to load: {exc!r}"
                log.exception("[WanLean] nodes in '%s' failed to load and are disabled", name)
                continue
            missing = missing.split(".")[0]
            disabled[name] = f"missing Python package '{missing}'"
            log.warning(
                "[WanLean] nodes in '%s' are disabled: the Python package '%s' is missing. Install it into "
                "ComfyUI's Python (pip install -r requirements.txt in the pack folder).",
                name,
                missing,
            )
            continue
        except Exception as exc:  # a broken module must not take the rest of the pack down
            disabled[name] = f"failed to load: {exc!r}"
            log.exception("[WanLean] nodes in '%s' failed to load and are disabled", name)
            continue
        classes.update(module.NODE_CLASS_MAPPINGS)
        display.update(module.NODE_DISPLAY_NAME_MAPPINGS)
    return classes, display, disabled
