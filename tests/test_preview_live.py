"""Live previews in a real ComfyUI (skipped without COMFYUI_PATH): started with `--preview-method
latent2rgb`, a WanLeanSampler run sends at least one preview image per step over the websocket, and
progress text with the stage, step, seconds per step and time left; started with `--preview-method none`,
it sends none. The client is aiohttp's (ComfyUI installs it)."""

import asyncio
import io
import json
import os
import struct
import tempfile
from pathlib import Path

import pytest
from wltest.comfy import SKIP_REASON, ComfyServer, comfyui_path, ui_to_api
from wltest.tiny_wan import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, tiny_folder

pytestmark = pytest.mark.comfyui

WORKFLOW = Path(__file__).resolve().parents[1] / "example_workflows" / "wan22_t2v_diffusers.json"
STEPS = 3
PREVIEW_IMAGE, TEXT, PREVIEW_IMAGE_WITH_METADATA = 1, 3, 4  # ComfyUI's BinaryEventTypes


def server_with(preview_method: str):
    path = comfyui_path()
    if path is None:
        pytest.skip(SKIP_REASON)
    server = ComfyServer(path, Path(tempfile.mkdtemp(prefix="wanlean-preview-")), extra_args=("--preview-method", preview_method))
    server.start()
    os.symlink(tiny_folder("A14B"), server.model_dir("diffusers") / "wan22-tiny-a14b")
    return server


def workflow(server) -> dict:
    api = ui_to_api(json.loads(WORKFLOW.read_text(encoding="utf-8")), server.object_info())
    by_type = {node["class_type"]: node for node in api.values()}
    by_type["WanLeanLoadDiffusers"]["inputs"].update(folder="wan22-tiny-a14b", device="cpu")
    by_type["WanLeanSampler"]["inputs"].update(width=TINY_WIDTH * 2, height=TINY_HEIGHT, frames=TINY_FRAMES, steps=STEPS)
    return api


async def run_and_listen(server, api: dict) -> dict:
    """Queue `api` with the server's client id and collect what the websocket says until it has run."""
    import aiohttp

    sampler_id = next(i for i, n in api.items() if n["class_type"] == "WanLeanSampler")
    heard = {"previews": [], "texts": [], "progress": [], "preview_while": []}
    current = {"node": None}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}") as ws:
            async with session.post(f"{server.url}/prompt", json={"prompt": api, "client_id": server.client_id}) as response:
                assert response.status == 200, await response.text()
                prompt_id = (await response.json())["prompt_id"]
            while True:
                message = await asyncio.wait_for(ws.receive(), timeout=300)
                if message.type == aiohttp.WSMsgType.BINARY:
                    kind = struct.unpack(">I", message.data[:4])[0]
                    if kind in (PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA):
                        heard["previews"].append(message.data)
                        heard["preview_while"].append((current["node"], len(heard["progress"])))
                    elif kind == TEXT:
                        heard["texts"].append(message.data[4:])
                    continue
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"websocket closed: {message}")
                event = json.loads(message.data)
                data = event.get("data", {})
                if event["type"] == "executing" and data.get("prompt_id") == prompt_id:
                    current["node"] = data.get("node")
                if event["type"] == "progress" and data.get("node") == sampler_id:
                    heard["progress"].append(data["value"])
                if event["type"] == "execution_error":
                    raise AssertionError(f"the workflow failed: {data.get('exception_message')}")
                if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    return heard


def jpeg_of(preview: bytes):
    from PIL import Image

    assert struct.unpack(">I", preview[:4])[0] == PREVIEW_IMAGE and struct.unpack(">I", preview[4:8])[0] == 1  # JPEG
    return Image.open(io.BytesIO(preview[8:]))


def test_latent2rgb_sends_a_preview_after_every_step():
    server = server_with("latent2rgb")
    try:
        heard = asyncio.run(run_and_listen(server, workflow(server)))
    finally:
        server.stop()
    assert heard["progress"] == list(range(1, STEPS + 1))
    assert len(heard["previews"]) >= STEPS
    # each preview follows its step's progress message: the first arrives after the first step
    assert [count for _, count in heard["preview_while"]] == list(range(1, STEPS + 1))
    image = jpeg_of(heard["previews"][0])
    assert image.format == "JPEG" and image.size[0] == 2 * image.size[1]  # the video's 2:1 frame (ComfyUI scales it up)
    texts = [t.decode("utf-8", "replace") for t in heard["texts"]]
    assert any("high-noise expert · step 1/3 · " in t and " s/step · about " in t for t in texts)
    assert any("low-noise expert · step 3/3 · " in t for t in texts)


def test_preview_method_none_sends_no_previews():
    server = server_with("none")
    try:
        heard = asyncio.run(run_and_listen(server, workflow(server)))
    finally:
        server.stop()
    assert heard["progress"] == list(range(1, STEPS + 1)) and heard["previews"] == []
