"""The only place the node layer touches ComfyUI.

Everything is imported lazily, so node modules import (and the tests run) without ComfyUI installed.
Outside ComfyUI, model lists are empty, progress and interruption are no-ops, and routes are not added.
"""

from __future__ import annotations

import logging
import os

from ..wanlean.errors import WanLeanError

log = logging.getLogger("wanlean")


def folder_paths():
    try:
        import folder_paths as module
    except ImportError:
        return None
    return module


def model_files(kind: str) -> list[str]:
    """File names ComfyUI lists for a model folder kind ("text_encoders", "vae", ...), [] outside ComfyUI."""
    fp = folder_paths()
    if fp is None:
        return []
    try:
        return list(fp.get_filename_list(kind))
    except KeyError:  # a folder kind this ComfyUI does not know
        return []


def model_path(kind: str, name: str, what: str) -> str:
    """The full path of `name` in ComfyUI's `kind` folders. Only names ComfyUI lists are accepted, so a
    request cannot reach files outside the model folders. `what` names the input in messages."""
    if not name or os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        raise WanLeanError(f"{what}: '{name}' is not a file name from models/{kind}; pick one from the list.")
    fp = folder_paths()
    if fp is None:
        raise WanLeanError(f"{what}: ComfyUI's model folders are not available here.")
    if name not in model_files(kind):
        raise WanLeanError(
            f"{what}: '{name}' is not in models/{kind}. Put the file there (or list its folder in "
            "extra_model_paths.yaml), then refresh the node list."
        )
    path = fp.get_full_path(kind, name)
    if not path:
        raise WanLeanError(f"{what}: '{name}' was listed but cannot be found in models/{kind}; refresh and retry.")
    return path


def model_folders(kind: str) -> list[str]:
    fp = folder_paths()
    if fp is None:
        return []
    try:
        return list(fp.get_folder_paths(kind))
    except KeyError:
        return []


class _NoProgress:
    def update(self, value: int = 1) -> None:
        pass

    def update_absolute(self, value: int, total: int | None = None, preview=None) -> None:
        pass


def progress_bar(total: int):
    """ComfyUI's progress bar for the running node (update() also checks for interruption)."""
    try:
        import comfy.utils
    except ImportError:
        return _NoProgress()
    return comfy.utils.ProgressBar(total)


def latent_previewer(latent_channels: int, device):
    """ComfyUI's previewer for Wan latents, honouring `--preview-method`: a function from a clean estimate
    `[1, C, f, h, w]` (model space) to the preview the ProgressBar sends, or None when previews are off
    (`none`) or outside ComfyUI. `auto` and `latent2rgb` use the Wan latent format's RGB factors (Wan21 for
    16 channels, Wan22 for TI2V-5B's 48); `taesd` uses a Wan TAE from models/vae_approx when one is there
    (ComfyUI's own `latent_preview.get_previewer` decides)."""
    try:
        import comfy.latent_formats
        import latent_preview
    except ImportError:
        return None
    try:
        latent_format = comfy.latent_formats.Wan22() if int(latent_channels) == 48 else comfy.latent_formats.Wan21()
        previewer = latent_preview.get_previewer(device, latent_format)
    except Exception as exc:  # never fail a run because previews could not be set up
        log.warning("wanlean: previews disabled, ComfyUI's previewer could not be made: %s", exc)
        return None
    if previewer is None:
        return None

    def preview(clean_latents):
        return previewer.decode_latent_to_preview_image("JPEG", clean_latents.float())

    return preview


def throw_if_interrupted() -> None:
    """Raises ComfyUI's InterruptProcessingException when the user pressed Cancel."""
    try:
        import comfy.model_management
    except ImportError:
        return
    comfy.model_management.throw_exception_if_processing_interrupted()


def prompt_server():
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(PromptServer, "instance", None)


def show_text(node_id, text: str) -> None:
    """Show `text` on the node while it runs (no JavaScript needed)."""
    server = prompt_server()
    if server is None or node_id is None:
        return
    try:
        server.send_progress_text(text, node_id)
    except Exception as exc:  # never fail a node because the UI could not be told
        log.debug("wanlean: could not send progress text: %s", exc)


def add_route(method: str, path: str, handler) -> bool:
    """Add an aiohttp route to the running ComfyUI server (ComfyUI also serves it under /api/); False
    outside ComfyUI. Looks only at an already-imported `server` module: importing it here would pull in
    all of ComfyUI (tests import the pack in-process)."""
    import sys

    server_class = getattr(sys.modules.get("server"), "PromptServer", None)
    instance = getattr(server_class, "instance", None)
    if instance is None:
        return False
    instance.routes.route(method, path)(handler)
    return True


def video_with_metadata(images, fps: float, metadata: dict):
    """ComfyUI's VIDEO (as core CreateVideo builds it) that also writes `metadata` into the container when
    core SaveVideo saves it, beside ComfyUI's own prompt/workflow entries (and even with
    --disable-metadata: a content label is not optional)."""
    from fractions import Fraction

    try:
        from comfy_api.latest import InputImpl, Types
    except ImportError:
        raise WanLeanError("the video output needs ComfyUI 0.3.45 or newer (comfy_api.latest); update ComfyUI.") from None

    class VideoWithMetadata(InputImpl.VideoFromComponents):
        def save_to(self, path, format=None, codec=None, metadata=None):
            merged = {**(metadata or {}), **extra}
            kwargs = {k: v for k, v in (("format", format), ("codec", codec)) if v is not None}
            return super().save_to(path, metadata=merged, **kwargs)

    extra = dict(metadata)
    return VideoWithMetadata(Types.VideoComponents(images=images, frame_rate=Fraction(fps).limit_denominator(1000)))


def output_directory() -> str | None:
    """ComfyUI's output folder (None outside ComfyUI)."""
    fp = folder_paths()
    return fp.get_output_directory() if fp is not None else None


def unload_comfy_models() -> None:
    """Ask ComfyUI to unload its own models and return cached GPU memory, before a pack-managed model
    needs the GPU (no-op outside ComfyUI)."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    try:
        mm.unload_all_models()
        mm.soft_empty_cache()
    except Exception as exc:  # never fail a run because ComfyUI could not unload
        log.debug("wanlean: could not unload ComfyUI's models: %s", exc)


def register_model_folder(kind: str) -> None:
    """Make `models/<kind>` a ComfyUI model folder (extra_model_paths.yaml may add more paths for it)."""
    fp = folder_paths()
    if fp is None:
        return
    try:
        fp.add_model_folder_path(kind, os.path.join(fp.models_dir, kind))
    except Exception as exc:  # an older or unusual folder_paths: the folder list is just empty then
        log.debug("wanlean: could not register models/%s: %s", kind, exc)


def model_subfolders(kind: str, marker: str = "config.json") -> list[str]:
    """Sub-folders (one or two levels, "name" or "owner/name") of the `kind` model folders that hold
    `marker`: model folders such as Hugging Face snapshots. [] outside ComfyUI."""
    found: list[str] = []
    for root in model_folders(kind):
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if not os.path.isdir(path):
                continue
            if os.path.isfile(os.path.join(path, marker)):
                found.append(name)
                continue
            for inner in sorted(os.listdir(path)):
                if os.path.isfile(os.path.join(path, inner, marker)):
                    found.append(f"{name}/{inner}")
    return list(dict.fromkeys(found))


def find_subfolder(kind: str, name: str, marker: str | None = None) -> str | None:
    """The full path of sub-folder `name` ("name" or "owner/name") in the first `kind` model folder that has
    it (holding `marker`, when given), or None. Callers check `name` against `model_subfolders` first."""
    for root in model_folders(kind):
        path = os.path.join(root, *name.split("/"))
        if os.path.isdir(path) and (marker is None or os.path.isfile(os.path.join(path, marker))):
            return path
    return None


def model_subfolder_path(kind: str, name: str, what: str) -> str:
    """The full path of a listed sub-folder of the `kind` model folders; only listed names are
    accepted, so a request cannot reach folders elsewhere. `what` names the input in messages."""
    if name not in model_subfolders(kind):
        raise WanLeanError(
            f"{what}: '{name}' is not a model folder in models/{kind}. Put the model's folder (with its "
            "config.json) there, then refresh the node list."
        )
    path = find_subfolder(kind, name)
    if path is None:
        raise WanLeanError(f"{what}: '{name}' was listed but cannot be found in models/{kind}; refresh and retry.")
    return path


def _running_server():
    """ComfyUI's PromptServer when this process is a running ComfyUI, else None. Looks only at an
    already-imported `server` module (see add_route)."""
    import sys

    server_class = getattr(sys.modules.get("server"), "PromptServer", None)
    return getattr(server_class, "instance", None)


def user_directory() -> str | None:
    """ComfyUI's user folder (`user/`, or --user-directory) when running inside ComfyUI, else None: the
    pack's tests import the nodes in-process and must not write into a ComfyUI checkout."""
    if _running_server() is None:
        return None
    fp = folder_paths()
    try:
        return fp.get_user_directory() if fp is not None else None
    except AttributeError:  # a ComfyUI older than the user folder
        return None


def send_event(event: str, data: dict) -> None:
    """Send a websocket event to every open frontend (no-op outside ComfyUI; never raises)."""
    server = _running_server()
    if server is None:
        return
    try:
        server.send_sync(event, data)
    except Exception as exc:  # never fail a node because the UI could not be told
        log.debug("wanlean: could not send %s: %s", event, exc)
