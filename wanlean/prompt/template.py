"""A structured Wan2.2 prompt, in the order Wan's own prompt guide uses.

Subject, scene and motion first, then the aesthetic controls (lighting, time of day, shot size, camera
angle, lens, composition, colour tone, camera movement), then style, then anything extra. Presets come
from Wan's vocabulary in English and Chinese (`data/template_presets.json`); empty slots vanish.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache

from .. import DATA_DIR
from ..errors import WanLeanError

NONE = "none"
LANGUAGES = ("english", "chinese")
JOINERS = ("comma", "sentence", "newline")
# Aesthetic slots, in Wan's order; "style" follows them.
AESTHETIC_SLOTS = (
    "lighting",
    "time_of_day",
    "shot_size",
    "camera_angle",
    "lens",
    "composition",
    "colour_tone",
    "camera_movement",
)
PRESET_SLOTS = AESTHETIC_SLOTS + ("style",)
TEXT_SLOTS = ("subject", "scene", "motion")

_JOINER_TEXT = {
    ("english", "comma"): ", ",
    ("english", "sentence"): ". ",
    ("english", "newline"): "\n",
    ("chinese", "comma"): "，",
    ("chinese", "sentence"): "。",
    ("chinese", "newline"): "\n",
}
_END = {"english": ".", "chinese": "。"}
# Trailing punctuation a user may type at the end of a slot; stripped so the joiner is not doubled.
_TRAILING = " \t\r\n,.;，。；、"


@lru_cache(maxsize=1)
def presets() -> dict[str, list[tuple[str, str]]]:
    """Slot name -> [(english, chinese), ...]."""
    path = os.path.join(DATA_DIR, "template_presets.json")
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    return {slot: [tuple(pair) for pair in raw[slot]] for slot in PRESET_SLOTS}


def preset_choices(slot: str) -> list[str]:
    """The COMBO entries for a slot: "none", then "english / 中文" labels."""
    return [NONE] + [f"{en} / {zh}" for en, zh in presets()[slot]]


def preset_text(slot: str, choice: str, language: str) -> str:
    """The words a preset choice contributes in `language` ("" for "none")."""
    if not choice or choice == NONE:
        return ""
    for en, zh in presets()[slot]:
        if choice in (f"{en} / {zh}", en, zh):
            return zh if language == "chinese" else en
    raise WanLeanError(
        f"{slot}: '{choice}' is not one of its presets. Pick one from the list, or 'none' and write your "
        f"own words in {slot}_text."
    )


@dataclass
class TemplateResult:
    prompt: str
    keywords: str  # subject, scene, motion and the aesthetic slot values, comma-separated, for a `keep` list


def build_prompt(
    subject: str = "",
    scene: str = "",
    motion: str = "",
    presets_chosen: dict[str, str] | None = None,
    free_text: dict[str, str] | None = None,
    extra: str = "",
    language: str = "english",
    joiner: str = "comma",
) -> TemplateResult:
    """Join the filled slots in Wan's order.

    `presets_chosen` maps a preset slot to a COMBO choice; `free_text` maps it to the user's own words,
    which follow the preset in the same slot. Chinese output uses Chinese punctuation.
    """
    if language not in LANGUAGES:
        raise WanLeanError(f"language must be one of {', '.join(LANGUAGES)}; got '{language}'.")
    if joiner not in JOINERS:
        raise WanLeanError(f"joiner must be one of {', '.join(JOINERS)}; got '{joiner}'.")
    presets_chosen = presets_chosen or {}
    free_text = free_text or {}
    inner = "，" if language == "chinese" else ", "  # joins a preset and free words inside one slot

    parts: list[str] = []
    keywords: list[str] = []
    for text in (subject, scene, motion):
        cleaned = _clean(text)
        if cleaned:
            parts.append(cleaned)
            keywords.append(cleaned)  # as typed: the compressor then keeps the subject, scene and motion whole
    for slot in PRESET_SLOTS:
        words = [w for w in (preset_text(slot, presets_chosen.get(slot, NONE), language), _clean(free_text.get(slot, ""))) if w]
        if words:
            parts.append(inner.join(words))
            keywords.extend(words)
    cleaned_extra = _clean(extra)
    if cleaned_extra:
        parts.append(cleaned_extra)

    prompt = _JOINER_TEXT[(language, joiner)].join(parts)
    if prompt and joiner != "newline":
        prompt += _END[language]
    return TemplateResult(prompt=prompt, keywords=", ".join(keywords))


def _clean(text: str) -> str:
    return " ".join((text or "").split()).strip(_TRAILING) if text else ""
