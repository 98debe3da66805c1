"""Optional models for WanLeanCompress: a token classifier (LLMLingua-2 style) and a seq2seq summarizer.

A model is a local folder (ComfyUI's `models/prompt_compressors/<name>`, or any folder path) or a Hugging
Face id. An id is looked up in the local Hugging Face cache first; it is downloaded only when the user
typed it, downloads are not switched off (HF_HUB_OFFLINE), and the Hub answers within a few seconds.
Everything is loaded with transformers, `trust_remote_code` never, on the CPU.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict

from ..errors import WanLeanError, missing_package

FOLDER_KIND = "prompt_compressors"  # ComfyUI model folder: models/prompt_compressors/<model folder>
TOKEN_CLASSIFICATION = "token-classification"
SEQ2SEQ = "seq2seq"
HUB_TIMEOUT_S = 10.0
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}(/[A-Za-z0-9][\w.\-]{0,95})?$")
_OWNER_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")
_WEIGHT_PATTERNS = ["*.json", "*.model", "*.txt", "*.safetensors", "*.tiktoken"]

_CACHE: OrderedDict[tuple, tuple] = OrderedDict()
_CACHE_LOCK = threading.Lock()


class HubId(str):
    """A Hugging Face id that must never be read as a local path (ids typed into a node: a folder such as
    `custom_nodes/x` relative to ComfyUI's working folder must not be reachable through them)."""


def hub_id(value: str, what: str = "model_id") -> HubId:
    """`value` as a `HubId` if it is one (`owner/name`), else a message naming `what` and the fix."""
    value = str(value).strip()
    if not _OWNER_NAME.match(value) or ".." in value:
        raise WanLeanError(
            f"{what}: '{value[:100]}' is not a Hugging Face id (owner/name, e.g. "
            "microsoft/llmlingua-2-xlm-roberta-large-meetingbank) nor a model folder in "
            f"models/{FOLDER_KIND}. Type an id, or put the model folder there and pick it in 'model'."
        )
    return HubId(value)


def describe(model: str | None) -> str:
    if not model:
        return "no model"
    return os.path.basename(os.path.normpath(model)) if os.path.isdir(model) else model


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve(model: str | None) -> str:
    """The local folder for `model` (a folder path or a Hugging Face id; a `HubId` only as an id)."""
    if not model or not str(model).strip():
        raise WanLeanError(
            "model: the token-classifier and summarize methods need a model. Pick a folder from "
            "models/prompt_compressors, or type a Hugging Face id in model_id (e.g. "
            "microsoft/llmlingua-2-xlm-roberta-large-meetingbank)."
        )
    if not isinstance(model, HubId):
        model = str(model).strip()
        if os.path.isdir(model):
            return model
    if os.sep in model.replace("/", "") or model.startswith((".", "/", "~")) or not _HF_ID.match(model):
        raise WanLeanError(
            f"model: '{model}' is neither a model folder that exists nor a Hugging Face id (owner/name)."
        )
    try:
        import huggingface_hub
    except ImportError:
        raise missing_package("huggingface_hub", "Loading a model by its Hugging Face id") from None
    try:
        return huggingface_hub.snapshot_download(model, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError and friends): maybe download it
        pass
    if _offline():
        raise WanLeanError(
            f"model_id: '{model}' is not in the local Hugging Face cache, and downloads are switched off "
            "(HF_HUB_OFFLINE). Download it once on a machine with network access, or put the model folder "
            "in models/prompt_compressors."
        )
    return _download(huggingface_hub, model)


def _download(huggingface_hub, model: str) -> str:
    # Ask the Hub first with a short timeout, so no network means a message in seconds, not a hang.
    try:
        info = huggingface_hub.HfApi().model_info(model, timeout=HUB_TIMEOUT_S)
    except Exception as exc:
        name = type(exc).__name__
        if "RepositoryNotFound" in name or "GatedRepo" in name:
            raise WanLeanError(f"model_id: the Hugging Face Hub has no public model '{model}'; check the spelling.") from None
        raise WanLeanError(
            f"model_id: could not reach the Hugging Face Hub to download '{model}' within {HUB_TIMEOUT_S:.0f}s "
            f"({name}). Check the network, or put the model folder in models/prompt_compressors."
        ) from None
    files = [s.rfilename for s in (info.siblings or [])]
    if not any(f.endswith(".safetensors") for f in files):
        # Pickled weights (.bin) can run code when loaded; WanLean loads safetensors only.
        raise WanLeanError(
            f"model_id: '{model}' has no .safetensors weights (only pickled files, which WanLean never loads). "
            "Choose a model that ships model.safetensors."
        )
    try:
        return huggingface_hub.snapshot_download(model, allow_patterns=list(_WEIGHT_PATTERNS), etag_timeout=HUB_TIMEOUT_S)
    except Exception as exc:
        raise WanLeanError(f"model_id: downloading '{model}' failed ({type(exc).__name__}: {exc}).") from None


def inspect(path: str) -> tuple[str | None, dict]:
    """(kind, config) of a model folder: kind is TOKEN_CLASSIFICATION, SEQ2SEQ or None."""
    name = describe(path)
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        found = sorted(os.listdir(path))[:8] if os.path.isdir(path) else []
        raise WanLeanError(
            f"model: '{name}' has no config.json, so it is not a transformers model folder "
            f"(it holds: {', '.join(found) or 'nothing'}). Put a token-classification or seq2seq model there."
        )
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise WanLeanError(f"model: the config.json of '{name}' cannot be read ({exc}).") from None
    architectures = config.get("architectures") or []
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES as SEQ2SEQ_NAMES,
            MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES as TOKEN_NAMES,
        )
    except ImportError:
        raise missing_package("transformers", "The model methods of WanLeanCompress") from None
    if any(a in TOKEN_NAMES.values() or a.endswith("ForTokenClassification") for a in architectures):
        return TOKEN_CLASSIFICATION, config
    if any(a in SEQ2SEQ_NAMES.values() for a in architectures):
        return SEQ2SEQ, config
    return None, config


def _what(config: dict) -> str:
    architectures = config.get("architectures") or []
    return f"architectures {architectures}" if architectures else f"model_type '{config.get('model_type', '?')}'"


def load(model: str | None, kind: str):
    """(tokenizer, model) for a folder or id, checked to be of `kind`; cached."""
    path = resolve(model)
    found, config = inspect(path)
    name = describe(model)
    if found != kind:
        if found is None:
            raise WanLeanError(
                f"model: '{name}' is neither a token-classification nor a seq2seq model (its config.json "
                f"names {_what(config)}). Use an LLMLingua-2 style token classifier (e.g. "
                "microsoft/llmlingua-2-xlm-roberta-large-meetingbank) or a seq2seq summarizer (e.g. a BART or T5 model)."
            )
        method, other = ("token-classifier", "summarize") if kind == TOKEN_CLASSIFICATION else ("summarize", "token-classifier")
        raise WanLeanError(
            f"model: '{name}' is a {found} model ({_what(config)}), but method '{method}' needs a {kind} model. "
            f"Choose method '{other}' for it, or another model."
        )
    if not any(f.endswith(".safetensors") for f in os.listdir(path)):
        raise WanLeanError(
            f"model: '{name}' has no .safetensors weights (only pickled files such as pytorch_model.bin, which "
            "WanLean never loads because they can run code). Save the model with safetensors or pick another."
        )
    config_path = os.path.join(path, "config.json")
    key = (os.path.realpath(path), os.stat(config_path).st_mtime_ns, kind)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    try:
        import transformers
    except ImportError:
        raise missing_package("transformers", "The model methods of WanLeanCompress") from None
    auto = transformers.AutoModelForTokenClassification if kind == TOKEN_CLASSIFICATION else transformers.AutoModelForSeq2SeqLM
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        network = auto.from_pretrained(path, local_files_only=True, trust_remote_code=False, use_safetensors=True)
    except Exception as exc:
        raise WanLeanError(f"model: '{name}' could not be loaded ({type(exc).__name__}: {str(exc)[:300]}).") from None
    network.eval()
    bundle = (tokenizer, network)
    with _CACHE_LOCK:
        _CACHE[key] = bundle
        while len(_CACHE) > 2:
            _CACHE.popitem(last=False)
    return bundle


def _keep_label(config) -> int:
    """Which output is "keep": a label named so, else 1 (LLMLingua-2's convention: 0 drop, 1 keep)."""
    for index, label in (getattr(config, "id2label", None) or {}).items():
        if str(label).lower() in ("keep", "preserve", "retain", "1", "label_1"):
            return int(index)
    return 1


def keep_scores(model: str | None, words: list[str], words_per_window: int = 200) -> list[float]:
    """A keep probability for each word (0..1), from a token-classification model. Each word's score is
    the mean over its sub-tokens; long texts are scored window by window."""
    import torch

    tokenizer, network = load(model, TOKEN_CLASSIFICATION)
    if not getattr(tokenizer, "is_fast", False):
        raise WanLeanError(f"model: '{describe(model)}' has no fast tokenizer (tokenizer.json), which word scoring needs.")
    max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512,
                     int(getattr(network.config, "max_position_embeddings", 512) or 512))
    labels = int(getattr(network.config, "num_labels", 2))
    keep_index = _keep_label(network.config)
    scores = [0.5] * len(words)
    start = 0
    while start < len(words):
        window = words[start : start + words_per_window]
        encoded = tokenizer(window, is_split_into_words=True, truncation=True, max_length=max_length, return_tensors="pt")
        word_ids = encoded.word_ids(0)
        with torch.no_grad():
            logits = network(**{k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}).logits[0]
        if labels >= 2:
            probabilities = torch.softmax(logits.float(), dim=-1)[:, min(keep_index, labels - 1)]
        else:
            probabilities = torch.sigmoid(logits.float()[:, 0])
        sums: dict[int, list[float]] = {}
        for position, word_index in enumerate(word_ids):
            if word_index is not None:
                sums.setdefault(word_index, []).append(float(probabilities[position]))
        for word_index, values in sums.items():
            scores[start + word_index] = sum(values) / len(values)
        covered = max(sums) + 1 if sums else len(window)
        start += max(covered, 1)
    return scores


def summarize(model: str | None, text: str, ratio: float) -> str:
    """The model's summary of `text`, aiming at `ratio` of the input's length in the model's tokens."""
    import torch

    tokenizer, network = load(model, SEQ2SEQ)
    max_input = min(int(getattr(tokenizer, "model_max_length", 1024) or 1024), 1024)
    encoded = tokenizer(text, truncation=True, max_length=max_input, return_tensors="pt")
    input_length = int(encoded["input_ids"].shape[1])
    target = max(4, int(input_length * ratio))
    with torch.no_grad():
        output = network.generate(
            input_ids=encoded["input_ids"],
            attention_mask=encoded.get("attention_mask"),
            max_new_tokens=target,
            # Overrides a summarizer's own minimum (BART-CNN asks for 56+ tokens: longer than many prompts).
            min_new_tokens=max(1, target // 2),
            do_sample=False,
            num_beams=1,
        )
    return tokenizer.decode(output[0], skip_special_tokens=True).strip()
