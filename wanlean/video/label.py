"""AI-generated-content labels for a video: a visible text label on the frames and an implicit label for
the file's metadata, as China's labelling measures and the national standard GB 45438-2025 ask.

- Explicit label: text that people can see, placed in a corner of the opening frames. The defaults are
  the standard's minimums for video: text at least 5% of the frame's shorter side high, shown for at
  least the first 2 seconds (`MIN_TEXT_SHARE`, `MIN_SECONDS`).
- Implicit label: the `AIGC` metadata entry with the standard's fields (`IMPLICIT_FIELDS`).

The frames are `[F, H, W, 3]` float 0–1 (ComfyUI's IMAGE); the input tensor is never changed in place. Text
is drawn with Pillow in a font that has every glyph of the label: the font subset shipped in
`wanlean/data/fonts` (WenQuanYi Micro Hei, Apache-2.0; ASCII and the characters of the usual Chinese
labels), else a CJK font found on the system.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from .. import DATA_DIR
from ..errors import WanLeanError

MIN_TEXT_SHARE = 0.05  # text height ≥ 5% of the frame's shorter side
MIN_SECONDS = 2.0  # the explicit label stays for at least the first 2 seconds
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
WHEN = ("first seconds", "whole video")
TEXTS = ("AI生成", "AI-generated", "人工智能生成")
IMPLICIT_FIELDS = ("Label", "ContentProducer", "ProduceID", "ReservedCode1", "ContentPropagator", "PropagateID", "ReservedCode2")
METADATA_KEY = "AIGC"
BOX_ALPHA = 0.45
AI_GENERATED = "1"  # Label: 1 = the content is AI-generated (2 = may be, 3 = suspected)
SHIPPED_FONT = os.path.join(DATA_DIR, "fonts", "WenQuanYiMicroHei-WanLeanSubset.ttf")
SYSTEM_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
)


@dataclass(frozen=True)
class LabelSpec:
    """What to write. Args:
    text: the visible label ("AI生成" by default).
    position: one of POSITIONS.
    size: text height as a share of the frame's shorter side (≥ MIN_TEXT_SHARE for the standard).
    opacity: 0–1; the label and its dark backing box are blended onto the frames.
    when: "first seconds" (for `seconds`) or "whole video".
    seconds: how long the label stays in "first seconds" mode.
    producer, content_id, propagator, propagate_id: the implicit label's fields.
    """

    text: str = TEXTS[0]
    position: str = "top-left"
    size: float = MIN_TEXT_SHARE
    opacity: float = 0.8
    when: str = WHEN[0]
    seconds: float = MIN_SECONDS
    producer: str = ""
    content_id: str = ""
    propagator: str = ""
    propagate_id: str = ""


def implicit_label(spec: LabelSpec) -> dict:
    """The `AIGC` metadata entry, its fields in the standard's order."""
    values = (AI_GENERATED, spec.producer, spec.content_id, "", spec.propagator, spec.propagate_id, "")
    return dict(zip(IMPLICIT_FIELDS, (str(v) for v in values)))


def label_json(spec: LabelSpec) -> str:
    return json.dumps({METADATA_KEY: implicit_label(spec)}, ensure_ascii=False)


def labelled_frames(frames, fps: float, spec: LabelSpec):
    """A new `[F, H, W, 3]` tensor: `frames` with the visible label blended into the chosen corner of the
    frames `spec.when` covers. Raises WanLeanError naming the input for anything it cannot do."""

    _check(frames, fps, spec)
    count, height, width, _ = frames.shape
    box_alpha, text_alpha = _render(spec.text, max(1, round(spec.size * min(height, width))), spec.opacity)
    box_height, box_width = text_alpha.shape
    if box_height > height or box_width > width:
        raise WanLeanError(
            f"size: the label '{spec.text}' at {spec.size:g} of the frame is {box_width}×{box_height} pixels, larger than "
            f"the {width}×{height} frame; lower size or shorten the text."
        )
    top, left = _corner(spec.position, height, width, box_height, box_width)
    shown = count if spec.when == "whole video" else min(count, math.ceil(spec.seconds * fps))
    out = frames.clone()
    region = out[:shown, top : top + box_height, left : left + box_width, :]
    box_alpha = box_alpha.to(region.dtype).unsqueeze(-1)
    text_alpha = text_alpha.to(region.dtype).unsqueeze(-1)
    # A dark box, then white text over it, each blended at its own alpha.
    region = region * (1 - box_alpha)
    out[:shown, top : top + box_height, left : left + box_width, :] = region * (1 - text_alpha) + text_alpha
    return out


def label_box(frames_shape, spec: LabelSpec) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the label for frames of `frames_shape` (for tests and reports)."""
    _, height, width, _ = frames_shape
    _, text_alpha = _render(spec.text, max(1, round(spec.size * min(height, width))), spec.opacity)
    top, left = _corner(spec.position, height, width, *text_alpha.shape)
    return top, left, text_alpha.shape[0], text_alpha.shape[1]


def _check(frames, fps: float, spec: LabelSpec) -> None:
    if frames is None or getattr(frames, "ndim", 0) != 4 or frames.shape[0] == 0 or frames.shape[-1] != 3:
        shape = tuple(getattr(frames, "shape", ())) or "nothing"
        raise WanLeanError(f"images: expected frames [count, height, width, 3] with at least one frame; got {shape}.")
    if not fps or fps <= 0:
        raise WanLeanError(f"fps must be more than 0 (Wan2.2 A14B: 16, TI2V-5B: 24); got {fps}.")
    if not spec.text or not spec.text.strip():
        raise WanLeanError("text: the visible label is empty; use 'AI生成', 'AI-generated' or your own words.")
    if spec.position not in POSITIONS:
        raise WanLeanError(f"position must be one of {', '.join(POSITIONS)}; got '{spec.position}'.")
    if spec.when not in WHEN:
        raise WanLeanError(f"when must be one of {', '.join(WHEN)}; got '{spec.when}'.")
    if not 0 < spec.size <= 1:
        raise WanLeanError(f"size must be a share of the frame's shorter side, above 0 and at most 1 (the standard asks ≥ {MIN_TEXT_SHARE}); got {spec.size}.")
    if not 0 < spec.opacity <= 1:
        raise WanLeanError(f"opacity must be above 0 and at most 1; got {spec.opacity}.")
    if spec.when == "first seconds" and spec.seconds <= 0:
        raise WanLeanError(f"seconds must be more than 0 (the standard asks ≥ {MIN_SECONDS:g}); got {spec.seconds}.")


def _corner(position: str, height: int, width: int, box_height: int, box_width: int) -> tuple[int, int]:
    margin = max(1, round(0.02 * min(height, width)))
    top = margin if position.startswith("top") else height - box_height - margin
    left = margin if position.endswith("left") else width - box_width - margin
    return max(0, top), max(0, left)


def _render(text: str, text_height: int, opacity: float):
    """(box alpha, text alpha), `[h, w]` float tensors: a dark backing box (keeps white text readable on
    bright frames) and the text, `text_height` pixels high, both scaled by `opacity`."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    font = _font_for(text, text_height)
    left, top, right, bottom = font.getbbox(text)
    pad = max(1, text_height // 4)
    size = (right - left + 2 * pad, bottom - top + 2 * pad)
    text_mask = Image.new("L", size, 0)
    ImageDraw.Draw(text_mask).text((pad - left, pad - top), text, font=font, fill=255)
    text_alpha = torch.from_numpy(np.asarray(text_mask, dtype=np.float32) / 255.0) * opacity
    box_alpha = torch.full_like(text_alpha, BOX_ALPHA * opacity)
    return box_alpha, text_alpha


def _font_for(text: str, text_height: int):
    """The first font (shipped subset, then system CJK fonts) with a glyph for every character, sized so
    the drawn text is at least `text_height` pixels tall (the standard's minimum is a floor)."""
    from PIL import ImageFont

    for path in (SHIPPED_FONT, *SYSTEM_FONTS):
        if not os.path.isfile(path):
            continue
        try:
            font = ImageFont.truetype(path, text_height)
        except OSError:
            continue
        if _missing_glyphs(font, text):
            continue
        size = text_height
        while _ink_height(font, text) < text_height and size < 4 * text_height:
            size += max(1, size // 20)
            font = ImageFont.truetype(path, size)
        return font
    missing = "".join(dict.fromkeys(_missing_glyphs(ImageFont.truetype(SHIPPED_FONT, text_height), text)))
    raise WanLeanError(
        f"text: no font here has a glyph for '{missing}'. Use 'AI生成' or 'AI-generated', or install a CJK font "
        "(e.g. Debian/Ubuntu: apt install fonts-noto-cjk)."
    )


def _ink_height(font, text: str) -> int:
    """Rows of the drawn text with at least half-covered pixels (what a viewer sees as the text's height)."""
    import numpy as np

    mask = font.getmask(text)
    width, height = mask.size
    if not width or not height:
        return 0
    rows = np.frombuffer(bytes(mask), dtype=np.uint8).reshape(height, width).max(axis=1) >= 128
    inked = rows.nonzero()[0]
    return int(inked[-1] - inked[0] + 1) if inked.size else 0


def _missing_glyphs(font, text: str) -> list[str]:
    """Characters the font draws as its empty/`.notdef` glyph (compared with a private-use code point)."""
    notdef = _glyph_pixels(font, "\ue000")
    return [ch for ch in text if not ch.isspace() and _glyph_pixels(font, ch) == notdef]


def _glyph_pixels(font, ch: str) -> tuple:
    mask = font.getmask(ch)
    return mask.size, bytes(mask)


def read_label(path: str) -> dict | None:
    """The `AIGC` entry in a video file's container metadata, or None; raises WanLeanError when the file
    cannot be read."""
    try:
        import av
    except ImportError:
        raise WanLeanError("reading video metadata needs PyAV: pip install av (ComfyUI installs it).") from None
    try:
        with av.open(path) as container:
            raw = dict(container.metadata).get(METADATA_KEY)
    except (OSError, av.error.FFmpegError if hasattr(av, "error") else OSError) as exc:
        raise WanLeanError(f"VIDEO_FILE: cannot read '{path}' as a video ({exc}).") from None
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw}
    return value if isinstance(value, dict) else {"raw": value}
