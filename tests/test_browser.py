"""The live token readout in the real ComfyUI frontend, driven in headless Chromium (Debian's `chromium`)
over the DevTools protocol: typing into a prompt box changes `N / 512` under the node, in the classic
canvas and in the "Nodes 2.0" renderer. Skipped without COMFYUI_PATH or chromium."""

import json

import pytest

from wanlean import tokens
from wltest.cdp import chromium_or_skip
from wltest.tiny import write_text_encoder_file

pytestmark = [pytest.mark.comfyui, pytest.mark.browser]

ENCODER = "umt5_tiny_browser.safetensors"


@pytest.fixture(scope="module")
def page(comfy, spiece_bytes):
    with chromium_or_skip() as browser:
        write_text_encoder_file(comfy.model_dir("text_encoders") / ENCODER, spiece_bytes)
        page = browser.open_page(comfy.url)
        page.wait_for("!!(window.app && app.graph && window.LiteGraph && app.extensionManager?.setting)", timeout=120)
        # The encoder file was written after startup: refresh the node definitions' file lists.
        page.js("app.refreshComboInNodes ? app.refreshComboInNodes().then(() => 1) : 1")
        yield page


def exact(sp, text):
    return len(sp.encode(text)) + 1


def estimate(text):
    return tokens.load_tokenizer("estimate").count(text)


def add_node(page, node_type, x, y):
    """Add a node to the graph; returns a JS expression naming it."""
    node_id = page.js(
        f"(() => {{ const n = LiteGraph.createNode({json.dumps(node_type)}); n.pos = [{x}, {y}]; app.graph.add(n);"
        " app.canvas.setDirty(true, true); return n.id; })()"
    )
    return f"app.graph.getNodeById({node_id})"


def readout(page, node, widget):
    return page.js(f"{node}.wanleanReadout.lines[{json.dumps(widget)}].textContent")


def wait_readout(page, node, widget, expected):
    line = f"{node}.wanleanReadout.lines[{json.dumps(widget)}]"
    return page.wait_for(f"{line}.textContent === {json.dumps(expected)} && {line}.textContent", timeout=30)


def choose(page, node, widget, value):
    """Pick a widget value the way the editor does: set it, then call the widget's callback."""
    page.js(f"(() => {{ const w = {node}.widgets.find(w => w.name === {json.dumps(widget)}); w.value = {json.dumps(value)}; w.callback?.(w.value); return 1; }})()")


def type_into(page, focus_expression, text):
    assert page.js(f"(() => {{ const el = {focus_expression}; el.focus(); return document.activeElement === el; }})()")
    page.type_text(text)


def test_setting_then_a_token_count_choice_pick_the_tokenizer(page, sp):
    encode = add_node(page, "CLIPTextEncode", 600, 50)
    wait_readout(page, encode, "text", "text: ≈1 / 512 (estimate)")  # no setting, no node: estimate
    page.js(f"app.extensionManager.setting.set('WanLean.TokenReadout.Tokenizer', {json.dumps(ENCODER)}).then(() => 1)")
    wait_readout(page, encode, "text", "text: 1 / 512")  # the setting's file: exact, no ≈
    counter = add_node(page, "WanLeanTokenCount", 50, 50)
    choose(page, counter, "tokenizer", "estimate")  # a choice in a WanLeanTokenCount node wins
    wait_readout(page, encode, "text", "text: ≈1 / 512 (estimate)")
    page.js("app.extensionManager.setting.set('WanLean.TokenReadout.Tokenizer', 'estimate').then(() => 1)")


def test_typing_changes_the_readout_in_the_classic_canvas(page, sp):
    node = add_node(page, "WanLeanTokenCount", 50, 400)
    text_box = f"{node}.widgets.find(w => w.name === 'text').inputEl"
    choose(page, node, "tokenizer", "estimate")
    wait_readout(page, node, "text", "text: ≈1 / 512 (estimate)")
    type_into(page, text_box, "a red fox runs")
    wait_readout(page, node, "text", f"text: ≈{estimate('a red fox runs')} / 512 (estimate)")
    choose(page, node, "tokenizer", ENCODER)
    wait_readout(page, node, "text", f"text: {exact(sp, 'a red fox runs')} / 512")
    type_into(page, text_box, " through deep snow 一只狐狸")
    full = "a red fox runs through deep snow 一只狐狸"
    wait_readout(page, node, "text", f"text: {exact(sp, full)} / 512")
    assert readout(page, node, "negative") == "negative: 1 / 512"  # each line follows its own box
    choose(page, node, "budget", 3)
    wait_readout(page, node, "text", f"text: {exact(sp, full)} / 3 — over budget")
    assert page.js(f"{node}.wanleanReadout.lines.text.classList.contains('wanlean-over-budget')")
    assert not page.js(f"{node}.wanleanReadout.lines.negative.classList.contains('wanlean-over-budget')")
    stuffed = " fox fox fox fox fox fox fox fox fox fox"  # issue 12: anomalies show in the readout
    type_into(page, text_box, stuffed)
    wait_readout(page, node, "text", f"text: {exact(sp, full + stuffed)} / 3 — over budget ⚠ repeated phrase")
    assert "is repeated" in page.js(f"{node}.wanleanReadout.lines.text.title")


def test_the_report_shows_on_the_node_after_a_run(page, sp):
    node = add_node(page, "WanLeanTokenCount", 50, 800)
    choose(page, node, "tokenizer", ENCODER)
    choose(page, node, "text", "a red fox")
    page.js("app.queuePrompt(0).then(() => 1)")
    report = page.wait_for(f"{node}.wanleanReport.textContent", timeout=60)
    assert f"prompt: {exact(sp, 'a red fox')} / 512 tokens" in report and "exact" in report


def test_typing_changes_the_readout_in_the_nodes_2_renderer(page, sp):
    page.js("app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true).then(() => 1)")
    try:
        counter = add_node(page, "WanLeanTokenCount", 1200, 50)
        choose(page, counter, "tokenizer", ENCODER)
        template = add_node(page, "WanLeanPromptTemplate", 1200, 500)
        node_id = page.js(f"{template}.id")
        vue_node = f"document.querySelector('[data-node-id=\"{node_id}\"]')"
        # The readout is part of the Vue node's own DOM, not drawn on the canvas.
        page.wait_for(f"!!{vue_node}?.querySelector('.wanlean-token-readout')", timeout=30)
        scene_box = (
            f"Array.from({vue_node}.querySelectorAll('textarea'))"
            ".find(t => t.parentElement.querySelector('label')?.textContent.trim() === 'scene')"
        )
        wait_readout(page, template, "scene", "scene: 1 / 512")
        type_into(page, scene_box, "on a frozen lake at dawn")
        wait_readout(page, template, "scene", f"scene: {exact(sp, 'on a frozen lake at dawn')} / 512")
        assert readout(page, template, "subject") == "subject: 1 / 512"
        assert page.js(f"{template}.widgets.find(w => w.name === 'scene').value") == "on a frozen lake at dawn"
    finally:
        page.js("app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false).then(() => 1)")
