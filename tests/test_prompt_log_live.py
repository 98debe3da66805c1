"""The token dashboard's back end in a real, headless ComfyUI (skipped without COMFYUI_PATH): prompt nodes
run, then GET /wanlean/stats shows exactly those prompts, the histogram sums to them, the flags match, an
open websocket hears `wanlean.stats`, the CSV holds the rows, the settings file switches the log, and
DELETE clears it."""

import asyncio
import csv
import io
import json
import uuid

import pytest

pytestmark = pytest.mark.comfyui


def _workflow(tag: str) -> dict:
    """Four prompt nodes; `tag` makes every text new, so ComfyUI's cache cannot skip a node."""
    long_prompt = (f"A lighthouse keeper {tag} climbs the spiral stairs slowly, the storm rages outside, "
                   "waves crash on the black rocks, cinematic, oil painting. ") * 6
    return {
        "1": {"class_type": "WanLeanTokenCount", "inputs": {"text": f"a red fox {tag} trots through fresh snow at dawn",
                                                            "tokenizer": "estimate", "budget": 512}},
        "2": {"class_type": "WanLeanTokenCount", "inputs": {"text": f"{tag} cat cat cat cat cat cat\u200b on a mat",
                                                            "tokenizer": "estimate", "budget": 512}},
        "3": {"class_type": "WanLeanCompress", "inputs": {"text": long_prompt, "method": "extractive", "target_ratio": 0.6,
                                                          "keep": "", "tokenizer": "estimate"}},
        "4": {"class_type": "WanLeanTruncate", "inputs": {"text": long_prompt, "max_tokens": 64, "tail_tokens": -1,
                                                          "tokenizer": "estimate"}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
        "11": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
    }


async def _run_and_hear(server, workflow: dict) -> list[dict]:
    """Queue `workflow`, wait until it has run, and return the `wanlean.stats` events heard by then (or
    within 5 s after: the rows are written by a background thread)."""
    import aiohttp

    heard, done = [], False
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}") as ws:
            async with session.post(f"{server.url}/prompt", json={"prompt": workflow, "client_id": server.client_id}) as r:
                assert r.status == 200, await r.text()
                prompt_id = (await r.json())["prompt_id"]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while loop.time() < deadline and not (done and sum(e.get("logged", 0) for e in heard) >= 4):
                try:
                    message = await asyncio.wait_for(ws.receive(), timeout=5 if done else 120)
                except asyncio.TimeoutError:
                    break
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                data = event.get("data") or {}
                if event["type"] == "wanlean.stats":
                    heard.append(data)
                if event["type"] == "execution_error":
                    raise AssertionError(f"the workflow failed: {data.get('exception_message')}")
                if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    done = True
    assert done, "the workflow did not finish"
    return heard


def test_stats_show_exactly_the_prompts_run(comfy):
    import requests

    cleared = requests.delete(f"{comfy.url}/wanlean/stats", timeout=30)
    assert cleared.status_code == 200 and isinstance(cleared.json()["cleared"], int)

    tag = uuid.uuid4().hex[:8]
    heard = asyncio.run(_run_and_hear(comfy, _workflow(tag)))
    assert sum(e.get("logged", 0) for e in heard) == 4
    assert "repetition" in {f for e in heard for f in e.get("flags", [])}

    stats = comfy.get("/wanlean/stats").json()
    assert stats["prompts"] == 4
    assert sum(b["count"] for b in stats["tokens"]["histogram"]) == 4
    assert any(b["lo"] <= 512 < b["hi"] for b in stats["tokens"]["histogram"])
    assert stats["sources"] == ["WanLeanCompress", "WanLeanTokenCount", "WanLeanTruncate"]
    assert stats["anomalies"]["repetition"] == 1 and stats["anomalies"]["invisible"] == 1
    assert sum(stats["anomalies"].values()) == 2
    (flagged,) = stats["recent_anomalies"]
    assert flagged["source"] == "WanLeanTokenCount" and flagged["flags"] == ["repetition", "invisible"] and tag in flagged["text"]
    assert stats["tokens_saved"] > 0 and stats["over_512"] == 0 and stats["enabled"] and stats["store_text"]
    assert comfy.get("/api/wanlean/stats", params={"source": "WanLeanTokenCount"}).json()["prompts"] == 2

    bad = comfy.get("/wanlean/stats", params={"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("since: ")

    exported = comfy.get("/wanlean/stats.csv")
    assert exported.status_code == 200 and exported.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 4 and all(tag in row["text"] for row in rows)
    assert (comfy.base / "user" / "wanlean" / "prompt_log.sqlite3").is_file()

    assert requests.delete(f"{comfy.url}/api/wanlean/stats", timeout=30).json() == {"cleared": 4}
    assert comfy.get("/wanlean/stats").json()["prompts"] == 0


def test_the_settings_file_switches_text_storage_and_logging(comfy):
    import requests

    settings = comfy.base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    before = settings.read_text() if settings.exists() else None
    try:
        requests.delete(f"{comfy.url}/wanlean/stats", timeout=30)
        tag = uuid.uuid4().hex[:8]
        settings.write_text(json.dumps({"WanLean.PromptLog.StoreText": False}))
        count = {"class_type": "WanLeanTokenCount", "inputs": {"text": f"{tag} dog dog dog dog dog dog in a park",
                                                               "tokenizer": "estimate", "budget": 512}}
        comfy.run({"1": count}, timeout=60)
        stats = comfy.get("/wanlean/stats").json()
        assert stats["prompts"] == 1 and stats["store_text"] is False and stats["recent_anomalies"][0]["text"] is None
        settings.write_text(json.dumps({"WanLean.PromptLog.Enabled": False, "Other.Setting": 1}))
        count["inputs"]["text"] += " again"
        comfy.run({"1": count}, timeout=60)
        stats = comfy.get("/wanlean/stats").json()
        assert stats["prompts"] == 1 and stats["enabled"] is False
    finally:
        if before is None:
            settings.unlink(missing_ok=True)
        else:
            settings.write_text(before)
