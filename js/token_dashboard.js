// Sidebar tab "WanLean tokens": the prompt log's token distribution (GET /wanlean/stats), drawn as plain DOM and SVG.
// It refreshes on the server's "wanlean.stats" websocket event and by polling while the tab is open; user text is
// only ever set as textContent. The classic canvas and the "Nodes 2.0" renderer share this sidebar.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const TAB_ID = "wanlean-tokens";
const STATS_ROUTE = "/wanlean/stats";
const POLL_MS = 5000;
const EVENT_DEBOUNCE_MS = 300;
const WAN_TEXT_LEN = 512;
const SVG_NS = "http://www.w3.org/2000/svg";
const RANGES = [
  ["all", "All time", null],
  ["1h", "Last hour", 3600],
  ["24h", "Last 24 h", 86400],
  ["7d", "Last 7 days", 7 * 86400],
  ["30d", "Last 30 days", 30 * 86400],
];
const SETTINGS = [
  {
    id: "WanLean.PromptLog.Enabled",
    category: ["WanLean", "Prompt log", "Enabled"],
    name: "Log prompts (token dashboard)",
    tooltip: "Each WanLean prompt node records one row per prompt in user/wanlean/prompt_log.sqlite3 for the WanLean tokens tab.",
    type: "boolean",
    defaultValue: true,
  },
  {
    id: "WanLean.PromptLog.StoreText",
    category: ["WanLean", "Prompt log", "StoreText"],
    name: "Store prompt text in the log",
    tooltip: "Off: rows keep the counts, flags and a hash of the text, never the text itself.",
    type: "boolean",
    defaultValue: true,
  },
  {
    id: "WanLean.PromptLog.MaxRows",
    category: ["WanLean", "Prompt log", "MaxRows"],
    name: "Prompt log size (newest rows kept)",
    tooltip: "Older rows are deleted once the log holds more than this many prompts.",
    type: "number",
    attrs: { min: 100, max: 10000000, step: 1000 },
    defaultValue: 100000,
  },
];

// The open tab (null while closed): its elements, filters and the fetch in flight.
let view = null;
let eventTimer = null;

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { style, dataset, ...rest } = props;
  Object.assign(node, rest);
  if (style) Object.assign(node.style, style);
  if (dataset) Object.assign(node.dataset, dataset);
  for (const child of children.flat()) {
    if (child != null) node.append(child); // strings become text nodes: never parsed as HTML
  }
  return node;
}

function svgElement(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text != null) node.textContent = text;
  return node;
}

const formatCount = (value) => (Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "–");
const formatShare = (part, whole) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "–");

function query() {
  const params = new URLSearchParams();
  const seconds = RANGES.find(([key]) => key === view.range)?.[2];
  if (seconds) params.set("since", String(seconds));
  if (view.source) params.set("source", view.source);
  const text = params.toString();
  return text ? `?${text}` : "";
}

async function errorOf(response) {
  if (response.status === 404) return "this ComfyUI has no /wanlean/stats route: update comfyui-wanlean and restart ComfyUI.";
  try {
    return (await response.json()).error ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function refresh() {
  if (!view) return;
  if (view.loading) {
    view.again = true; // one more fetch after this one, with the newest filters
    return;
  }
  const current = view;
  current.loading = true;
  try {
    const response = await api.fetchApi(`${STATS_ROUTE}${query()}`, { cache: "no-store" });
    if (view !== current) return;
    if (response.ok) showStats(await response.json());
    else showProblem(`Could not load the prompt log: ${await errorOf(response)}`);
  } catch (error) {
    if (view === current) showProblem(`Could not load the prompt log: ${error}`);
  } finally {
    current.loading = false;
    if (view === current && current.again) {
      current.again = false;
      refresh();
    }
  }
}

function scheduleRefresh() {
  clearTimeout(eventTimer);
  eventTimer = setTimeout(refresh, EVENT_DEBOUNCE_MS);
}

function showProblem(text) {
  if (!view) return; // the tab closed while a request was out
  view.status.textContent = text;
  view.status.dataset.kind = "error";
  view.status.style.color = "var(--error-text, #ff6b6b)";
}

function showNote(text) {
  if (!view) return;
  view.status.textContent = text;
  view.status.dataset.kind = "note";
  view.status.style.color = "";
}

function showStats(stats) {
  updateSources(stats.sources ?? []);
  if (view.status.dataset.kind === "error") showNote("");
  const prompts = stats.prompts ?? 0;
  const filtered = view.range !== "all" || view.source !== "";
  view.off.hidden = stats.enabled !== false;
  view.off.textContent =
    prompts === 0
      ? "Logging is off: prompts are not recorded. Turn it on in Settings → WanLean → Log prompts (token dashboard)."
      : "Logging is off: new prompts are not recorded (Settings → WanLean → Log prompts).";
  view.empty.hidden = prompts > 0 || stats.enabled === false;
  view.empty.textContent = filtered
    ? "No prompts match this time range and source."
    : "No prompts logged yet. Run a WanLean prompt node (Token Count, Compress, Truncate, Sampler) or `wanlean prep`; each prompt shows up here.";
  view.content.hidden = prompts === 0;
  view.clear.disabled = prompts === 0 && !filtered;
  if (prompts === 0) view.content.replaceChildren(); // nothing stale left behind the empty state
  else view.content.replaceChildren(summary(stats), histogram(stats.tokens?.histogram ?? []), anomalies(stats));
}

function updateSources(sources) {
  const wanted = ["", ...sources];
  if (view.source && !wanted.includes(view.source)) wanted.push(view.source);
  const known = Array.from(view.sourceSelect.options, (option) => option.value);
  if (known.join("\n") === wanted.join("\n")) return;
  view.sourceSelect.replaceChildren(...wanted.map((value) => element("option", { value, textContent: value || "All sources" })));
  view.sourceSelect.value = view.source;
}

function stat(name, label, value, title = "", wide = false) {
  return element(
    "div",
    { className: "wanlean-stat", title, style: { display: "flex", justifyContent: "space-between", gap: "8px", gridColumn: wide ? "1 / -1" : "" } },
    element("span", { textContent: label, style: { opacity: "0.75" } }),
    element("span", { textContent: value, dataset: { stat: name }, style: { fontWeight: "bold" } })
  );
}

function summary(stats) {
  const tokens = stats.tokens ?? {};
  const prompts = stats.prompts ?? 0;
  const mean = Number.isFinite(tokens.mean) ? tokens.mean.toFixed(1) : "–";
  return element(
    "div",
    { className: "wanlean-summary", style: { display: "grid", gridTemplateColumns: "1fr 1fr", gap: "2px 16px" } },
    stat("prompts", "Prompts", formatCount(prompts)),
    stat("mean", "Mean tokens", mean),
    stat("p50", "p50", formatCount(tokens.p50)),
    stat("p90", "p90", formatCount(tokens.p90)),
    stat("max", "Max", formatCount(tokens.max)),
    stat("tokens_saved", "Tokens saved", formatCount(stats.tokens_saved), "Before − after, summed over prompts that Compress or Truncate shortened"),
    stat("over_budget", "Over budget", `${formatCount(stats.over_budget)} (${formatShare(stats.over_budget, prompts)})`, "Prompts longer than the budget their node was given", true),
    stat("over_512", "Over 512", `${formatCount(stats.over_512)} (${formatShare(stats.over_512, prompts)})`, "Prompts that official Wan, diffusers and WanVideoWrapper cut at 512 tokens", true)
  );
}

function histogram(bins) {
  const width = 320, height = 150, left = 34, right = 8, top = 14, bottom = 22;
  const usable = bins.filter((bin) => Number.isFinite(bin.lo) && Number.isFinite(bin.count));
  const topEdge = Math.max(WAN_TEXT_LEN * 1.08, ...usable.map((bin) => (Number.isFinite(bin.hi) ? bin.hi : bin.lo + 1)));
  const tallest = Math.max(1, ...usable.map((bin) => bin.count));
  const x = (tokens) => left + ((width - left - right) * tokens) / topEdge;
  const y = (count) => height - bottom - ((height - top - bottom) * count) / tallest;
  const chart = svgElement("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width: "100%",
    role: "img",
    "aria-label": "Histogram of prompt tokens",
    class: "wanlean-histogram",
  });
  chart.style.display = "block";
  chart.append(svgElement("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, stroke: "currentColor", "stroke-opacity": 0.4 }));
  usable.forEach((bin, index) => {
    if (bin.count <= 0) return;
    const hi = Number.isFinite(bin.hi) ? bin.hi : bin.lo + 1;
    const bar = svgElement("rect", {
      x: x(bin.lo),
      y: y(bin.count),
      width: Math.max(1, x(hi) - x(bin.lo) - 1),
      height: height - bottom - y(bin.count),
      fill: bin.lo >= WAN_TEXT_LEN ? "#e05d5d" : "#4e9be0",
      "data-bin": index,
      "data-lo": bin.lo,
      "data-hi": hi,
      "data-count": bin.count,
    });
    bar.append(svgElement("title", {}, `${bin.lo}–${hi} tokens: ${bin.count} prompt${bin.count === 1 ? "" : "s"}`));
    chart.append(bar);
  });
  const limit = x(WAN_TEXT_LEN);
  chart.append(
    svgElement("line", { x1: limit, y1: top - 6, x2: limit, y2: height - bottom, stroke: "#e05d5d", "stroke-dasharray": "4 3", "data-limit": WAN_TEXT_LEN }),
    svgElement("text", { x: limit - 3, y: top - 2, "text-anchor": "end", "font-size": 10, fill: "#e05d5d" }, "512: cut by diffusers-style runtimes")
  );
  const label = (at, text, anchor = "middle") =>
    svgElement("text", { x: at, y: height - 8, "text-anchor": anchor, "font-size": 10, fill: "currentColor", "fill-opacity": 0.7 }, text);
  chart.append(label(left, "0", "start"), label(limit, String(WAN_TEXT_LEN)));
  if (width - right - limit > 40) chart.append(label(width - right, formatCount(topEdge), "end")); // not over the 512
  chart.append(svgElement("text", { x: left - 4, y: top + 8, "text-anchor": "end", "font-size": 10, fill: "currentColor", "fill-opacity": 0.7 }, formatCount(tallest)));
  return element("div", { style: { margin: "10px 0" } }, element("div", { textContent: "Prompt tokens", style: { opacity: "0.75" } }), chart);
}

function anomalies(stats) {
  const counts = Object.entries(stats.anomalies ?? {}).filter(([, count]) => count > 0);
  const recent = stats.recent_anomalies ?? [];
  const box = element("div", { className: "wanlean-anomalies" }, element("div", { textContent: "Anomalies", style: { opacity: "0.75" } }));
  if (!counts.length) {
    box.append(element("div", { textContent: "No prompt was flagged.", dataset: { anomalies: "none" } }));
    return box;
  }
  box.append(
    element(
      "div",
      { style: { display: "flex", flexWrap: "wrap", gap: "4px", margin: "4px 0 8px" } },
      counts.map(([flag, count]) => chip(`${flag.replaceAll("_", " ")}: ${formatCount(count)}`, { flag, count: String(count) }))
    )
  );
  for (const row of recent) box.append(flaggedPrompt(row));
  return box;
}

function chip(text, dataset = {}) {
  return element("span", {
    textContent: text,
    dataset,
    className: "wanlean-flag",
    style: { border: "1px solid #d9a54a", color: "#d9a54a", borderRadius: "8px", padding: "0 6px", fontSize: "11px" },
  });
}

function flaggedPrompt(row) {
  const when = new Date(row.time);
  const time = Number.isNaN(when.getTime()) ? String(row.time ?? "") : when.toLocaleString();
  const text = row.text == null ? element("i", { textContent: "(text not stored)" }) : row.text;
  return element(
    "div",
    { className: "wanlean-flagged", style: { borderTop: "1px solid var(--border-color, #444)", padding: "6px 0" } },
    element("div", { textContent: `${time} · ${row.source ?? "?"} · ${formatCount(row.tokens)} tokens`, style: { opacity: "0.75", fontSize: "11px" } }),
    element("div", { style: { display: "flex", flexWrap: "wrap", gap: "4px", margin: "2px 0" } }, (row.flags ?? []).map((flag) => chip(String(flag).replaceAll("_", " ")))),
    element("div", { className: "wanlean-flagged-text", style: { whiteSpace: "pre-wrap", wordBreak: "break-word" } }, text)
  );
}

async function exportCsv() {
  try {
    const response = await api.fetchApi(`${STATS_ROUTE}.csv${query()}`, { cache: "no-store" });
    if (!response.ok) return showProblem(`Export failed: ${await errorOf(response)}`);
    const disposition = response.headers.get("Content-Disposition") ?? "";
    const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? "wanlean_prompt_log.csv";
    const url = URL.createObjectURL(await response.blob());
    element("a", { href: url, download: name }).click();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    showNote(`Exported ${name}.`);
  } catch (error) {
    showProblem(`Export failed: ${error}`);
  }
}

async function askToClear() {
  const message = "Delete every prompt in the WanLean prompt log (all times and sources)? Export first to keep a copy.";
  const dialog = app.extensionManager?.dialog;
  if (dialog?.confirm) return (await dialog.confirm({ title: "Clear the prompt log", message, type: "delete" })) === true;
  return window.confirm(message);
}

async function clearLog() {
  if (!(await askToClear()) || !view) return;
  try {
    const response = await api.fetchApi(STATS_ROUTE, { method: "DELETE" });
    if (!response.ok) return showProblem(`Clear failed: ${await errorOf(response)}`);
    const answer = await response.json();
    showNote(`Cleared ${formatCount(answer.cleared)} prompt${answer.cleared === 1 ? "" : "s"}.`);
  } catch (error) {
    showProblem(`Clear failed: ${error}`);
  }
  refresh();
}

function button(text, title, onClick) {
  return element("button", { type: "button", textContent: text, title, onclick: onClick, className: "wanlean-button p-button p-button-sm p-button-secondary" });
}

function mount(root) {
  unmount(); // rendered again without a destroy in between: one poller only
  const rangeSelect = element(
    "select",
    { title: "Time range", onchange: () => ((view.range = rangeSelect.value), refresh()) },
    RANGES.map(([value, label]) => element("option", { value, textContent: label }))
  );
  const sourceSelect = element("select", { title: "Source: the node or command that saw the prompt" });
  sourceSelect.onchange = () => ((view.source = sourceSelect.value), refresh());
  for (const select of [rangeSelect, sourceSelect]) {
    Object.assign(select.style, { background: "var(--comfy-input-bg, #222)", color: "inherit", border: "1px solid var(--border-color, #444)", borderRadius: "4px", padding: "2px" });
  }
  sourceSelect.append(element("option", { value: "", textContent: "All sources" }));
  view = {
    range: "all",
    source: "",
    loading: false,
    again: false,
    rangeSelect,
    sourceSelect,
    clear: button("Clear", "Delete every logged prompt (asks first)", clearLog),
    status: element("div", { className: "wanlean-status", role: "status", style: { minHeight: "16px", fontSize: "11px" } }),
    off: element("div", { className: "wanlean-logging-off", hidden: true, dataset: { state: "off" }, style: { color: "#d9a54a", margin: "6px 0" } }),
    empty: element("div", { className: "wanlean-empty", hidden: true, dataset: { state: "empty" }, style: { opacity: "0.8", margin: "12px 0" } }),
    content: element("div", { className: "wanlean-dashboard-content", hidden: true }),
  };
  root.replaceChildren(
    element(
      "div",
      { className: "wanlean-dashboard", style: { padding: "8px 12px", fontSize: "12px", lineHeight: "18px", overflowY: "auto", height: "100%", boxSizing: "border-box" } },
      element("h3", { textContent: "WanLean tokens", style: { margin: "0 0 6px", fontSize: "14px" } }),
      element("div", { style: { display: "flex", flexWrap: "wrap", gap: "6px", alignItems: "center" } }, rangeSelect, sourceSelect, button("Export", "Download the filtered rows as CSV", exportCsv), view.clear),
      view.status,
      view.off,
      view.empty,
      view.content
    )
  );
  view.timer = setInterval(() => document.hidden || refresh(), POLL_MS);
  refresh();
}

function unmount() {
  if (view) clearInterval(view.timer);
  view = null;
}

app.registerExtension({
  name: "wanlean.tokenDashboard",
  settings: SETTINGS.map((setting) => ({ ...setting, onChange: () => view && scheduleRefresh() })),
  setup() {
    app.extensionManager?.registerSidebarTab?.({
      id: TAB_ID,
      icon: "pi pi-chart-bar",
      title: "WanLean tokens",
      tooltip: "WanLean tokens: how long your prompts are, and which ones look wrong",
      type: "custom",
      render: mount,
      destroy: unmount,
    });
    api.addEventListener("wanlean.stats", () => view && scheduleRefresh());
  },
});
