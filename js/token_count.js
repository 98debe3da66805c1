// Live umT5 token readout under prompt boxes, and the report of WanLeanTokenCount / WanLeanGenerationCost.
// No canvas drawing: both are DOM widgets, which the classic canvas and the "Nodes 2.0" renderer both show. Counting happens on the server (POST /wanlean/tokens).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SETTING_ID = "WanLean.TokenReadout.Tokenizer";
const PROMPT_WIDGETS = new Set(["text", "prompt", "negative", "subject", "scene", "motion"]);
const REPORT_NODES = new Set(["WanLeanTokenCount", "WanLeanGenerationCost"]);
const DEBOUNCE_MS = 250;
const WAN_TEXT_LEN = 512;

// The tokenizer last chosen in a WanLeanTokenCount node wins over the setting.
let lastChosenTokenizer = null;

function currentTokenizer() {
  if (lastChosenTokenizer) return lastChosenTokenizer;
  let value = null;
  try {
    value = app.extensionManager?.setting?.get(SETTING_ID) ?? app.ui?.settings?.getSettingValue(SETTING_ID);
  } catch {}
  return typeof value === "string" && value.trim() ? value.trim() : "estimate";
}

function promptWidgetNames(nodeData) {
  const wanlean = nodeData.name.startsWith("WanLean");
  if (!wanlean && nodeData.name !== "CLIPTextEncode") return [];
  const inputs = { ...(nodeData.input?.required ?? {}), ...(nodeData.input?.optional ?? {}) };
  return Object.entries(inputs)
    .filter(([name, spec]) => spec?.[0] === "STRING" && spec?.[1]?.multiline)
    .filter(([name]) => !wanlean || PROMPT_WIDGETS.has(name))
    .map(([name]) => name);
}

function chainCallback(widget, after) {
  const original = widget.callback;
  widget.callback = function (...args) {
    const result = original?.apply(this, args);
    after(args[0]);
    return result;
  };
}

function attachReadout(node, names) {
  const element = document.createElement("div");
  element.className = "wanlean-token-readout";
  Object.assign(element.style, { font: "11px monospace", lineHeight: "16px", padding: "2px 6px", opacity: "0.9" });
  const readout = { element, lines: {}, timers: {}, sequence: {} };
  for (const name of names) {
    const line = document.createElement("div");
    line.dataset.widget = name;
    line.textContent = `${name}: … / ${WAN_TEXT_LEN}`;
    element.append(line);
    readout.lines[name] = line;
    const widget = node.widgets?.find((w) => w.name === name);
    if (widget) chainCallback(widget, () => scheduleCount(node, name));
  }
  const widget = node.addDOMWidget("wanlean_tokens", "wanlean_readout", element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => names.length * 16 + 6,
    getMaxHeight: () => names.length * 16 + 6,
  });
  widget.serialize = false;
  node.wanleanReadout = readout;
  const budget = node.widgets?.find((w) => w.name === "budget");
  if (budget) chainCallback(budget, () => names.forEach((name) => scheduleCount(node, name)));
  setTimeout(() => names.forEach((name) => scheduleCount(node, name)), 0);
}

function scheduleCount(node, name) {
  const readout = node.wanleanReadout;
  if (!readout?.lines[name]) return;
  clearTimeout(readout.timers[name]);
  readout.timers[name] = setTimeout(() => countWidget(node, name), DEBOUNCE_MS);
}

async function countWidget(node, name) {
  const readout = node.wanleanReadout;
  const line = readout.lines[name];
  const widget = node.widgets?.find((w) => w.name === name);
  const budgetWidget = node.widgets?.find((w) => w.name === "budget");
  const budget = Number.isInteger(budgetWidget?.value) && budgetWidget.value > 0 ? budgetWidget.value : WAN_TEXT_LEN;
  if (!widget) return;
  if (node.inputs?.some((input) => input.widget?.name === name && input.link != null)) {
    show(line, `${name}: linked (counted when the graph runs)`, false);
    return;
  }
  const sequence = (readout.sequence[name] = (readout.sequence[name] ?? 0) + 1);
  const text = typeof widget.value === "string" ? widget.value : "";
  const tokenizer = currentTokenizer();
  let answer = await askServer(text, tokenizer, budget);
  if (answer.busy) {
    // The server is counting other long texts (503): keep the current readout and ask again shortly.
    if (sequence === readout.sequence[name]) setTimeout(() => scheduleCount(node, name), 1000);
    return;
  }
  let note = "";
  if (answer.error && tokenizer !== "estimate") {
    note = `; ${tokenizer} unusable`;
    line.title = answer.error;
    answer = await askServer(text, "estimate", budget);
  }
  if (sequence !== readout.sequence[name]) return; // a newer keystroke already asked again
  if (answer.error) {
    show(line, `${name}: ? / ${budget}`, false, answer.error);
    return;
  }
  const count = answer.exact ? `${answer.tokens}` : `≈${answer.tokens}`;
  const label = answer.exact ? "" : ` (estimate${note})`;
  const over = answer.tokens > budget;
  // Anomalies in the text ("⚠ repeated phrase"); over 512 is already the count itself. Reasons in the tooltip.
  const flags = (answer.anomalies ?? []).filter((a) => a.flag !== "over_512");
  const warn = flags.map((a) => ` ⚠ ${a.label}`).join("");
  const title = [answer.label, ...flags.map((a) => `⚠ ${a.reason}`)].join("\n");
  show(line, `${name}: ${count} / ${budget}${label}${over ? " — over budget" : ""}${warn}`, over, title);
}

async function askServer(text, tokenizer, budget) {
  try {
    const response = await api.fetchApi("/wanlean/tokens", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text, tokenizer, budget }),
    });
    const answer = await response.json();
    if (response.status === 503) return { busy: true, error: answer.error };
    return response.ok ? answer : { error: answer.error ?? `HTTP ${response.status}` };
  } catch (error) {
    return { error: String(error) };
  }
}

function show(line, text, over, title = "") {
  line.textContent = text;
  line.title = title;
  line.classList.toggle("wanlean-over-budget", over);
  line.style.color = over ? "#ff6b6b" : "";
  line.style.fontWeight = over ? "bold" : "";
}

function recountEverything() {
  for (const node of app.graph?._nodes ?? []) {
    for (const name of Object.keys(node.wanleanReadout?.lines ?? {})) scheduleCount(node, name);
  }
}

function chooseTokenizer(value) {
  if (typeof value !== "string" || value === lastChosenTokenizer) return;
  lastChosenTokenizer = value;
  recountEverything();
}

function attachReport(node) {
  const element = document.createElement("div");
  element.className = "wanlean-report";
  Object.assign(element.style, { font: "11px monospace", whiteSpace: "pre-wrap", overflowY: "auto", padding: "4px 6px" });
  const height = () => (element.textContent ? 160 : 0);
  const widget = node.addDOMWidget("wanlean_report", "wanlean_report", element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: height,
    getMaxHeight: () => Math.max(height(), 400),
  });
  widget.serialize = false;
  node.wanleanReport = element;
}

function showReport(node, output) {
  const element = node.wanleanReport;
  if (!element) return;
  const text = output?.text;
  element.textContent = Array.isArray(text) ? text.join("\n") : (text ?? "");
  const wanted = node.computeSize?.();
  if (wanted && wanted[1] > node.size[1]) node.setSize([Math.max(node.size[0], wanted[0]), wanted[1]]);
  app.graph?.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "wanlean.tokenCount",
  settings: [
    {
      id: SETTING_ID,
      category: ["WanLean", "Token readout", "Tokenizer"],
      name: "Token readout tokenizer: a file name from models/text_encoders, or estimate",
      tooltip: "Used by the live token readout until you pick a tokenizer in a WanLeanTokenCount node.",
      type: "text",
      defaultValue: "estimate",
      onChange: () => recountEverything(),
    },
  ],
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const names = promptWidgetNames(nodeData);
    const hasReport = REPORT_NODES.has(nodeData.name);
    if (!names.length && !hasReport) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      if (names.length) attachReadout(this, names);
      if (hasReport) attachReport(this);
      if (nodeData.name === "WanLeanTokenCount") {
        const tokenizer = this.widgets?.find((w) => w.name === "tokenizer");
        if (tokenizer) chainCallback(tokenizer, chooseTokenizer);
      }
      return result;
    };
    if (hasReport) {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        onExecuted?.apply(this, arguments);
        showReport(this, output);
      };
    }
  },
  loadedGraphNode(node) {
    // A loaded workflow's WanLeanTokenCount tokenizer counts as the last one chosen.
    if (node.comfyClass === "WanLeanTokenCount") {
      chooseTokenizer(node.widgets?.find((w) => w.name === "tokenizer")?.value);
    }
    for (const name of Object.keys(node.wanleanReadout?.lines ?? {})) scheduleCount(node, name);
  },
});
