"""Workflows saved from ComfyUI, for `wanlean batch`: read them, convert the UI format to the API format,
and fill one prompt (and its per-row overrides) in.

The UI format (what "Save" writes and `example_workflows/` ship) lists nodes with their widget values in
order; the API format ("Export (API)", what POST /prompt takes) maps node ids to named inputs. The UI
format is converted with a server's /object_info, which gives each node's input order.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os

from ..errors import WanLeanError

SAMPLER = "WanLeanSampler"
PROMPT_MARK = "[prompt]"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Frontend-only nodes: they never reach the server. Reroutes pass a link through; a PrimitiveNode's
# value is already in the widget values of the node it feeds; notes hold text.
FRONTEND_ONLY = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
# Per-row overrides a JSONL line may carry, and the WanLeanSampler input each one sets.
OVERRIDES = {"seed": "seed", "negative": "negative", "width": "width", "height": "height", "frames": "frames", "steps": "steps"}
_INT_OVERRIDES = {"seed", "width", "height", "frames", "steps"}
# Fields a prompts file may carry that are not overrides (`wanlean prep` output among them): not reported.
KNOWN_FIELDS = {"prompt", "line", "id", "name", "result", "changed", "tokens_before", "tokens_after", "ratio",
                "over_budget_before", "normalized", "compress", "truncate"}


def load_workflow(path: str) -> dict:
    """The workflow in `path` as saved from ComfyUI, UI or API format (also {"prompt": {...}})."""
    if not os.path.isfile(path):
        raise WanLeanError(f"--workflow: '{path}' is not a file. Save the workflow from ComfyUI (Workflow > Save or Export (API)) and give its path.")
    try:
        with open(path, encoding="utf-8-sig") as f:
            workflow = json.load(f)
    except UnicodeDecodeError as exc:
        raise WanLeanError(f"--workflow: '{path}' is not UTF-8 text ({exc.reason}); give a .json workflow saved from ComfyUI.") from None
    except ValueError as exc:
        raise WanLeanError(f"--workflow: '{path}' is not valid JSON ({exc}); give a .json workflow saved from ComfyUI.") from None
    if isinstance(workflow, dict) and isinstance(workflow.get("prompt"), dict) and "nodes" not in workflow:
        workflow = workflow["prompt"]
    if workflow_format(workflow) is None:
        raise WanLeanError(
            f"--workflow: '{path}' is JSON but not a ComfyUI workflow (no \"nodes\" list and no nodes with a "
            "\"class_type\"). Save it from ComfyUI with Workflow > Save or Export (API)."
        )
    return workflow


def workflow_format(workflow) -> str | None:
    """"ui", "api", or None for anything else."""
    if not isinstance(workflow, dict) or not workflow:
        return None
    if isinstance(workflow.get("nodes"), list) and isinstance(workflow.get("links", []), list):
        return "ui"
    if all(isinstance(node, dict) and isinstance(node.get("class_type"), str) and isinstance(node.get("inputs", {}), dict)
           for node in workflow.values()):
        return "api"
    return None


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """ComfyUI's UI-format workflow → API format: widget values in input order (skipping each seed's
    control_after_generate value), then links. Muted/bypassed and frontend-only nodes are left out;
    links through reroutes reach their source. Each node keeps its title in `_meta`, as Export (API) does."""
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = {link[0]: link for link in workflow.get("links", [])}

    def source_of(link_id):
        """(source node id, slot) of a link, through reroutes; None for a PrimitiveNode or a dead end."""
        seen = set()
        while link_id is not None and link_id not in seen:
            seen.add(link_id)
            link = links.get(link_id)
            if link is None:
                return None
            source = nodes.get(link[1])
            if source is None or source.get("type") == "PrimitiveNode":
                return None
            if source.get("type") != "Reroute":
                return link[1], link[2]
            link_id = next((slot.get("link") for slot in source.get("inputs", [])), None)
        return None

    api = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) != 0 or node.get("type") in FRONTEND_ONLY:
            continue
        info = object_info.get(node["type"])
        if info is None:
            raise WanLeanError(
                f"--workflow: node {node['id']} ('{node['type']}') is unknown to the server: a custom node it "
                "lacks, or a group/subgraph node. Install the node there, or save the workflow with Export (API)."
            )
        values = node.get("widgets_values") or []
        inputs = {}
        if isinstance(values, dict):  # some nodes save their widgets by name
            inputs.update(values)
        else:
            values = list(values)
            for section in ("required", "optional"):
                for name in info.get("input_order", {}).get(section, []):
                    kind, options = (list(info["input"][section][name]) + [{}])[:2]
                    if isinstance(kind, list) or kind in WIDGET_TYPES:
                        if values:
                            inputs[name] = values.pop(0)
                        if isinstance(options, dict) and options.get("control_after_generate") and values:
                            values.pop(0)
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                source = source_of(slot["link"])
                if source is not None:
                    inputs[slot["name"]] = [str(source[0]), source[1]]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs, "_meta": {"title": node.get("title") or node["type"]}}
    return api


def prompt_targets(api: dict) -> list[tuple[str, str]]:
    """(node id, input name) pairs the prompt goes into: every node titled with `[prompt]` (its `prompt`
    or `text` input, else its first text input), else every WanLeanSampler's `prompt`."""
    marked = [node_id for node_id, node in api.items() if PROMPT_MARK in str(node.get("_meta", {}).get("title", "")).lower()]
    if marked:
        targets = []
        for node_id in marked:
            inputs = api[node_id].get("inputs", {})
            name = next((n for n in ("prompt", "text") if n in inputs), None)
            name = name or next((n for n, v in inputs.items() if isinstance(v, str)), None)
            if name is None:
                raise WanLeanError(
                    f"--workflow: node {node_id} ('{api[node_id]['class_type']}') is titled {PROMPT_MARK} but has no "
                    "text input to put the prompt in. Mark a text node (e.g. a String node or the WanLeanSampler)."
                )
            targets.append((node_id, name))
        return targets
    samplers = sampler_ids(api)
    if not samplers:
        raise WanLeanError(
            f"--workflow: the workflow has no {SAMPLER} and no node titled with '{PROMPT_MARK}', so there is "
            f"nowhere to put the prompts. Add a {SAMPLER}, or put '{PROMPT_MARK}' in the title of the node that holds the prompt."
        )
    return [(node_id, "prompt") for node_id in samplers]


def sampler_ids(api: dict) -> list[str]:
    return [node_id for node_id, node in api.items() if node.get("class_type") == SAMPLER]


def check_overrides(record: dict, line: int, has_sampler: bool) -> list[str]:
    """Problems with one prompts-file row's overrides, each naming the line (empty when fine)."""
    problems = []
    for key, value in record.items():
        if key not in OVERRIDES:
            continue
        if not has_sampler:
            problems.append(f"line {line}: '{key}' needs a {SAMPLER} in the workflow to set; remove it from the line or add the sampler.")
        elif key in _INT_OVERRIDES and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            problems.append(f"line {line}: '{key}' must be a whole number ≥ 0, e.g. {{\"{key}\": 42}}; got {json.dumps(value)}.")
        elif key == "negative" and not isinstance(value, str):
            problems.append(f"line {line}: 'negative' must be a string; got {json.dumps(value)}.")
    return problems


def fill(api: dict, record: dict) -> dict:
    """A copy of the API-format workflow with `record["prompt"]` in every prompt target (a link there is
    replaced by the text) and the row's overrides set on every WanLeanSampler."""
    filled = copy.deepcopy(api)
    for node_id, name in prompt_targets(filled):
        filled[node_id]["inputs"][name] = record["prompt"]
    for key, input_name in OVERRIDES.items():
        if key in record:
            for node_id in sampler_ids(filled):
                filled[node_id]["inputs"][input_name] = record[key]
    return filled


def workflow_hash(api: dict) -> str:
    """A short hash of what a workflow computes (titles left out): part of a job's identity."""
    plain = {node_id: {"class_type": node["class_type"], "inputs": node.get("inputs", {})} for node_id, node in api.items()}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
