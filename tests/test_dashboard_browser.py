"""The sidebar tab "WanLean tokens" (js/token_dashboard.js) in the real ComfyUI frontend, driven in headless
Chromium against a real ComfyUI whose prompt log is filled by queuing real WanLean prompt nodes: the tab shows
what GET /wanlean/stats says (histogram bars, counts, the flagged prompt, its text escaped), follows its
filters, refreshes while open, exports CSV and clears the log after asking. Skipped without COMFYUI_PATH or
chromium.

The classic canvas and the "Nodes 2.0" renderer draw nodes differently but share the sidebar: the tab is
checked in both, and the screenshot (a temporary folder; also WANLEAN_SCREENSHOT_DIR/dashboard.png when that
variable is set, which is how docs/dashboard.png is made) is taken once.
"""

import base64
import csv
import io
import json
import os
import random
import tempfile
import time
from pathlib import Path

import pytest
import requests
from wltest.cdp import chromium_or_skip

pytestmark = [pytest.mark.comfyui, pytest.mark.browser]

STATS = "/wanlean/stats"
TAB = "document.querySelector('.wanlean-dashboard')"
BARS = "document.querySelectorAll('svg.wanlean-histogram rect[data-bin]')"
MARKUP = "<img src=x onerror=\"window.__wanleanInjected=1\">"
STUFFED = f"{MARKUP} buy now " + "buy now cheap shoes " * 30
VOCABULARY = [
    "lighthouse", "keeper", "climbs", "spiral", "stairs", "dusk", "waves", "crash", "against", "black", "rocks",
    "gulls", "circle", "lamp", "violet", "sky", "slow", "clouds", "drift", "over", "sea", "fisherman", "pulls",
    "nets", "harbor", "lanterns", "glow", "rain", "falls", "cobblestones", "woman", "red", "coat", "walks",
    "past", "market", "stalls", "oranges", "steam", "rises", "bakery", "window", "camera", "tracks", "left",
    "golden", "light", "morning", "fog", "lifts", "forest", "deer", "steps", "stream", "water", "ripples",
    "pebbles", "wind", "bends", "tall", "grass", "hills", "distant", "mountains", "snow", "peaks", "eagle",
    "glides", "valley", "river", "bends", "village", "rooftops", "smoke", "chimney", "children", "run",
    "bridge", "kite", "string"
]


def sentence(words: int, salt: str) -> str:
    """A plain prompt of `words` words drawn without a pattern (the salt also keeps ComfyUI from reusing a result)."""
    pick = random.Random(f"{salt}/{words}").choice
    return f"{salt}: " + " ".join(pick(VOCABULARY) for _ in range(words))


def count_node(text: str, budget: int = 512) -> dict:
    return {"1": {"class_type": "WanLeanTokenCount", "inputs": {"text": text, "tokenizer": "estimate", "budget": budget}}}


def compress_node(text: str) -> dict:
    return {
        "1": {"class_type": "WanLeanCompress", "inputs": {
            "text": text, "method": "extractive", "target_ratio": 0.5, "keep": "", "tokenizer": "estimate"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }


def stats(comfy, **params) -> dict:
    response = comfy.get(STATS, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def logged(comfy):
    """The prompt log after real prompt nodes ran: short, long (over 512), over budget, compressed, stuffed."""
    cleared = requests.delete(f"{comfy.url}{STATS}", timeout=30)
    assert cleared.status_code == 200, f"DELETE {STATS} answered {cleared.status_code}: the tab needs the prompt-log back end"
    workflows = [count_node(sentence(words, f"shot {words}")) for words in (6, 12, 20, 35, 60, 90, 140)]
    workflows += [count_node(sentence(480, "long take")), count_node(sentence(40, "tight budget"), budget=16)]
    workflows += [compress_node(sentence(120, "compressed") + ", very very really quite extremely beautiful")]
    workflows += [count_node(STUFFED)]
    for workflow in workflows:
        comfy.run(workflow, timeout=120)
    return wait_logged(comfy, len(workflows))


def wait_logged(comfy, at_least: int, timeout: float = 30.0) -> dict:
    """The stats once the log holds `at_least` prompts (a background thread writes the rows)."""
    deadline = time.monotonic() + timeout
    while (answer := stats(comfy))["prompts"] < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    assert answer["prompts"] >= at_least, answer
    return answer


# A previous workflow in the browser's storage: the frontend opens it instead of the templates dialog it shows
# a new user (and leaves the server's settings alone, which the other browser tests share).
EMPTY_WORKFLOW = {"last_node_id": 0, "last_link_id": 0, "nodes": [], "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4}
KEEP_WORKFLOW = f"try {{ localStorage.getItem('workflow') || localStorage.setItem('workflow', {json.dumps(json.dumps(EMPTY_WORKFLOW))}); }} catch {{}}"
CONFIRM = "document.querySelector('.p-dialog[aria-labelledby=\"global-prompt\"]')"


@pytest.fixture(scope="module")
def page(comfy, logged):
    with chromium_or_skip() as browser:
        page = browser.open_page("about:blank")
        page.send("Page.addScriptToEvaluateOnNewDocument", {"source": KEEP_WORKFLOW})
        page.send("Page.navigate", {"url": comfy.url})
        page.wait_for("!!(window.app && app.graph && app.extensionManager?.setting)", timeout=120)
        page.wait_for("!!document.querySelector('.wanlean-tokens-tab-button')", timeout=30)
        page.js("document.querySelector('.wanlean-tokens-tab-button').click(), 1")
        page.wait_for(f"!!{TAB}", timeout=30)
        yield page


def shown(page, name):
    return page.js(f"{TAB}.querySelector('[data-stat={json.dumps(name)}]')?.textContent ?? null")


def wait_prompts(page, expected: int):
    return page.wait_for(f"{TAB}.querySelector('[data-stat=\"prompts\"]')?.textContent === {json.dumps(str(expected))}", timeout=30)


def non_empty_bins(answer):
    return [(bin_["lo"], bin_["count"]) for bin_ in answer["tokens"]["histogram"] if bin_["count"] > 0]


def drawn_bars(page):
    return [tuple(bar) for bar in page.js(f"Array.from({BARS}, (r) => [Number(r.dataset.lo), Number(r.dataset.count)])")]


def choose(page, select_index, value):
    page.js(
        f"(() => {{ const s = {TAB}.querySelectorAll('select')[{select_index}]; s.value = {json.dumps(value)};"
        " s.dispatchEvent(new Event('change')); return s.value; })()"
    )


def save_screenshot(page, name):
    """The sidebar (and the tool bar left of it) as PNG: always to a temp folder, and to WANLEAN_SCREENSHOT_DIR."""
    box = page.js(f"(() => {{ const r = {TAB}.closest('.side-bar-panel')?.getBoundingClientRect() ?? {TAB}.getBoundingClientRect();"
                  " return [r.right, window.innerHeight]; })()")
    assert not page.js("!!document.querySelector('.p-dialog')"), "a dialog covers the tab"
    clip = {"x": 0, "y": 0, "width": box[0] + 4, "height": box[1], "scale": 1}
    png = base64.b64decode(page.send("Page.captureScreenshot", {"format": "png", "clip": clip})["data"])
    assert png.startswith(b"\x89PNG")
    folders = [Path(tempfile.gettempdir()) / "wanlean-screenshots"]
    if os.environ.get("WANLEAN_SCREENSHOT_DIR"):
        folders.append(Path(os.environ["WANLEAN_SCREENSHOT_DIR"]))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png)
    return png


def test_the_tab_shows_the_logged_prompts(page, comfy, logged):
    answer = stats(comfy)
    wait_prompts(page, answer["prompts"])
    bins = non_empty_bins(answer)
    page.wait_for(f"{BARS}.length === {len(bins)}", timeout=30)
    assert drawn_bars(page) == bins  # one bar per non-empty bin, with its count
    assert sum(count for _, count in bins) == answer["prompts"]
    tokens = answer["tokens"]
    assert [shown(page, name) for name in ("p50", "p90", "max")] == [f"{tokens[k]:,}" for k in ("p50", "p90", "max")]
    assert shown(page, "mean") == f"{tokens['mean']:.1f}"
    assert answer["over_512"] >= 1 and shown(page, "over_512").startswith(f"{answer['over_512']} (")
    assert answer["over_budget"] >= 2 and shown(page, "over_budget").startswith(f"{answer['over_budget']} (")
    assert answer["tokens_saved"] > 0 and shown(page, "tokens_saved") == f"{answer['tokens_saved']:,}"
    assert page.js("!!document.querySelector('svg.wanlean-histogram line[data-limit=\"512\"]')")
    save_screenshot(page, "dashboard.png")


def test_the_flagged_prompt_is_listed_as_text_never_as_markup(page, comfy, logged):
    answer = stats(comfy)
    flagged = [row for row in answer["recent_anomalies"] if row["text"] and MARKUP in row["text"]]
    assert flagged, answer["recent_anomalies"]  # the stuffed prompt raised a flag
    for flag, count in answer["anomalies"].items():
        if count:
            assert page.js(f"{TAB}.querySelector('[data-flag={json.dumps(flag)}]')?.dataset.count") == str(count)
    texts = page.js(f"Array.from({TAB}.querySelectorAll('.wanlean-flagged-text'), (e) => e.textContent)")
    assert flagged[0]["text"] in texts
    assert page.js(f"{TAB}.querySelectorAll('img').length") == 0
    assert page.js("window.__wanleanInjected === undefined")


def test_the_filters_ask_the_route_and_show_its_answer(page, comfy, logged):
    assert "WanLeanCompress" in page.js(f"Array.from({TAB}.querySelectorAll('select')[1].options, (o) => o.value)")
    choose(page, 1, "WanLeanCompress")
    wait_prompts(page, stats(comfy, source="WanLeanCompress")["prompts"])
    choose(page, 0, "1h")
    wait_prompts(page, stats(comfy, source="WanLeanCompress", since="3600")["prompts"])
    choose(page, 1, "")
    choose(page, 0, "all")
    wait_prompts(page, stats(comfy)["prompts"])


def test_a_new_prompt_appears_while_the_tab_is_open(page, comfy, logged):
    before = stats(comfy)["prompts"]
    wait_prompts(page, before)
    comfy.run(count_node(sentence(25, "while the tab is open")), timeout=120)
    wait_prompts(page, wait_logged(comfy, before + 1)["prompts"])  # no click: the event or the poll brought it


def test_the_tab_is_the_same_in_the_nodes_2_renderer(page, comfy, logged):
    page.js("app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true).then(() => 1)")
    try:
        answer = stats(comfy)
        wait_prompts(page, answer["prompts"])
        page.wait_for(f"{BARS}.length === {len(non_empty_bins(answer))}", timeout=30)
    finally:
        page.js("app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false).then(() => 1)")


def test_export_downloads_the_rows_as_csv(page, comfy, logged):
    prompts = stats(comfy)["prompts"]
    page.js(
        "(() => { window.__wanleanExport = null; const original = URL.createObjectURL;"
        " URL.createObjectURL = (blob) => { window.__wanleanExport = blob; return original(blob); }; return 1; })()"
    )
    page.js(f"Array.from({TAB}.querySelectorAll('button')).find((b) => b.textContent === 'Export').click(), 1")
    page.wait_for("!!window.__wanleanExport", timeout=30)
    records = list(csv.reader(io.StringIO(page.js("window.__wanleanExport.text()"))))
    assert len(records) == prompts + 1  # a header, then one row per prompt


def click_button(page, scope, label):
    page.wait_for(f"!!Array.from({scope}.querySelectorAll('button')).find((b) => b.textContent.trim() === {json.dumps(label)})", timeout=30)
    page.js(f"Array.from({scope}.querySelectorAll('button')).find((b) => b.textContent.trim() === {json.dumps(label)}).click(), 1")


def test_clear_asks_first_then_shows_the_empty_state(page, comfy, logged):
    prompts = stats(comfy)["prompts"]
    click_button(page, TAB, "Clear")
    click_button(page, CONFIRM, "Cancel")
    page.wait_for(f"!{CONFIRM}", timeout=30)
    assert stats(comfy)["prompts"] == prompts  # cancelled: nothing deleted

    click_button(page, TAB, "Clear")
    click_button(page, CONFIRM, "Delete")
    page.wait_for(f"!{TAB}.querySelector('.wanlean-empty').hidden", timeout=30)
    assert stats(comfy)["prompts"] == 0
    assert page.js(f"{TAB}.querySelector('.wanlean-empty').textContent").startswith("No prompts logged yet")
    assert page.js(f"{BARS}.length") == 0
    assert page.js(f"{TAB}.querySelector('.wanlean-status').textContent") == f"Cleared {prompts} prompts."


def test_logging_off_says_so(page, comfy, logged):
    page.js("app.extensionManager.setting.set('WanLean.PromptLog.Enabled', false).then(() => 1)")
    try:
        page.wait_for(f"!{TAB}.querySelector('.wanlean-logging-off').hidden", timeout=30)
        assert page.js(f"{TAB}.querySelector('.wanlean-logging-off').textContent").startswith("Logging is off")
        assert stats(comfy)["enabled"] is False
    finally:
        page.js("app.extensionManager.setting.set('WanLean.PromptLog.Enabled', true).then(() => 1)")
    page.wait_for(f"{TAB}.querySelector('.wanlean-logging-off').hidden", timeout=30)
