"""The example workflows as the real ComfyUI frontend draws them (headless Chromium; skipped without
COMFYUI_PATH or chromium): no node is drawn over another, also after the token readout and the report
make nodes grow, and the saved view opens with every node right of the sidebar and below the top bar."""

import json
from pathlib import Path

import pytest

from wltest.cdp import chromium_or_skip

pytestmark = [pytest.mark.comfyui, pytest.mark.browser]

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "example_workflows").glob("*.json"))

# Node boxes (title bar included) after load, then after every report node showed a report.
MEASURE = """(async () => {
  const workflow = %s;
  await app.loadGraphData(workflow);
  await new Promise((r) => setTimeout(r, 300));
  const boxes = () => app.graph._nodes.map((n) => {
    const b = n.getBounding();
    return {id: n.id, title: n.title, box: [b[0], b[1], b[2], b[3]]};
  });
  const loaded = boxes();
  for (const n of app.graph._nodes) {
    if (n.wanleanReport) {
      n.onExecuted({text: [Array.from({length: 12}, (_, i) => "report line " + i).join("\\n")]});
    }
  }
  await new Promise((r) => setTimeout(r, 300));
  const sidebar = document.querySelector(".side-tool-bar-container, .side-bar-panel, nav.side-tool-bar-container");
  const canvas = app.canvas.canvas.getBoundingClientRect();
  const ds = app.canvas.ds;
  return JSON.stringify({loaded, reported: boxes(), offset: Array.from(ds.offset), scale: ds.scale,
    sidebarRight: sidebar ? sidebar.getBoundingClientRect().right : 0, canvasLeft: canvas.left, canvasTop: canvas.top,
    topbarBottom: Math.max(0, ...Array.from(document.querySelectorAll(".comfyui-menu, .workflow-tabs-container, .actionbar"))
      .map((e) => e.getBoundingClientRect().bottom).filter((v) => v < 200))});
})()"""


@pytest.fixture(scope="module")
def page(comfy):
    with chromium_or_skip() as browser:
        page = browser.open_page(comfy.url)
        page.wait_for("!!(window.app && app.graph && window.LiteGraph && app.extensionManager?.setting)", timeout=120)
        yield page


def overlaps(a, b, gap=0):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw + gap and bx < ax + aw + gap and ay < by + bh + gap and by < ay + ah + gap


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_workflow_layout(page, path):
    result = json.loads(page.js(MEASURE % path.read_text(encoding="utf-8"), timeout=60))
    for stage in ("loaded", "reported"):
        nodes = result[stage]
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                assert not overlaps(a["box"], b["box"]), f"{path.name} ({stage}): '{a['title']}' {a['box']} overlaps '{b['title']}' {b['box']}"
    left = min(node["box"][0] for node in result["loaded"])
    top = min(node["box"][1] for node in result["loaded"])
    (ox, oy), scale = result["offset"], result["scale"]
    screen_left = result["canvasLeft"] + (left + ox) * scale
    screen_top = result["canvasTop"] + (top + oy) * scale
    assert screen_left > result["sidebarRight"] + 10, (path.name, screen_left, result)
    assert screen_top > result["topbarBottom"] + 10, (path.name, screen_top, result)
