"""The one exception type for problems a user can fix.

Every message names the input that is wrong and what to do about it ("frames must be 4k+1, e.g. 81;
got 80"). ComfyUI shows the message on the node and keeps running.
"""


class WanLeanError(ValueError):
    """A user-facing problem: bad input, an unusable file, a missing optional package."""


# ComfyUI shows an error's type as `module.qualname` (execution.py, full_type_name). Inside ComfyUI this
# module's name is the pack folder's path ("/…/custom_nodes/comfyui-wanlean.wanlean.errors"), so the type
# read as a path; it is shown as "wanlean.WanLeanError" instead (importable as such outside ComfyUI).
WanLeanError.__module__ = "wanlean"


def missing_package(package: str, needed_for: str) -> WanLeanError:
    return WanLeanError(
        f"{needed_for} needs the Python package '{package}', which is not installed. "
        f"Install it into ComfyUI's Python with: pip install {package}"
    )
