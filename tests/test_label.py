"""The AI-generated-content label: placement, size, duration, opacity, the implicit AIGC entry, bad input
naming the input, and `wanlean label` reading it back (tiny frames, no ComfyUI)."""

import json

import pytest
import torch

from wanlean import cli
from wanlean.errors import WanLeanError
from wanlean.video import label
from wanlean.video.label import LabelSpec, label_box, labelled_frames

FPS = 16.0


def frames(count=40, height=240, width=416, value=0.6):
    return torch.full((count, height, width, 3), value)


def changed(before, after):
    """Per frame, the bounding box (top, left, bottom, right) of the pixels that differ, or None."""
    boxes = []
    for index in range(before.shape[0]):
        diff = (before[index] != after[index]).any(dim=-1)
        if not diff.any():
            boxes.append(None)
            continue
        rows, cols = diff.any(dim=1).nonzero(), diff.any(dim=0).nonzero()
        boxes.append((int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1))
    return boxes


@pytest.mark.parametrize("position", label.POSITIONS)
def test_the_label_sits_in_its_corner_and_nowhere_else(position):
    source = frames()
    out = labelled_frames(source, FPS, LabelSpec(position=position))
    top, left, height, width = label_box(source.shape, LabelSpec(position=position))
    box = changed(source, out)[0]
    assert box is not None and top <= box[0] and left <= box[1] and box[2] <= top + height and box[3] <= left + width
    vertical = "top" if box[0] < source.shape[1] // 2 else "bottom"
    horizontal = "left" if box[1] < source.shape[2] // 2 else "right"
    assert f"{vertical}-{horizontal}" == position


def test_the_input_tensor_is_never_changed():
    source = frames()
    copy = source.clone()
    labelled_frames(source, FPS, LabelSpec(when="whole video"))
    assert torch.equal(source, copy)


def test_first_seconds_covers_exactly_that_many_frames_and_whole_video_all():
    source = frames(count=40)
    boxes = changed(source, labelled_frames(source, FPS, LabelSpec(seconds=2.0)))
    assert all(b is not None for b in boxes[:32]) and all(b is None for b in boxes[32:])
    boxes = changed(source, labelled_frames(source, 24.0, LabelSpec(seconds=0.5)))
    assert sum(b is not None for b in boxes) == 12
    assert all(b is not None for b in changed(source, labelled_frames(source, FPS, LabelSpec(when="whole video"))))


@pytest.mark.parametrize("text", ["AI生成", "AI-generated", "人工智能生成"])
@pytest.mark.parametrize("size", [0.05, 0.1])
def test_drawn_text_is_at_least_the_asked_share_of_the_shorter_side(text, size):
    source = frames(count=1, height=480, width=832, value=0.0)
    out = labelled_frames(source, FPS, LabelSpec(text=text, size=size, opacity=1.0))
    white = (out[0] >= 0.5).all(dim=-1)  # the text is white on a dark box over a black frame: ≥ half covered
    rows = white.any(dim=1).nonzero()
    assert int(rows.max()) - int(rows.min()) + 1 >= round(size * 480)


def test_opacity_scales_the_change():
    source = frames(count=1)
    weak = (labelled_frames(source, FPS, LabelSpec(opacity=0.2)) - source).abs().max()
    strong = (labelled_frames(source, FPS, LabelSpec(opacity=1.0)) - source).abs().max()
    assert 0 < weak < strong


def test_the_implicit_label_has_the_standards_fields_in_order():
    spec = LabelSpec(producer="studio-7", content_id="vid-001", propagator="site", propagate_id="p-9")
    entry = label.implicit_label(spec)
    assert list(entry) == ["Label", "ContentProducer", "ProduceID", "ReservedCode1", "ContentPropagator", "PropagateID", "ReservedCode2"]
    assert entry == {"Label": "1", "ContentProducer": "studio-7", "ProduceID": "vid-001", "ReservedCode1": "",
                     "ContentPropagator": "site", "PropagateID": "p-9", "ReservedCode2": ""}
    assert json.loads(label.label_json(spec)) == {"AIGC": entry}


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda: torch.zeros(0, 64, 64, 3), {}, "images: expected frames"),
    (lambda: torch.zeros(64, 64, 3), {}, "images: expected frames"),
    (frames, {"fps": 0}, "fps must be more than 0"),
    (frames, {"spec": LabelSpec(size=0.5, text="AI-generated content label")}, "size: the label"),
    (frames, {"spec": LabelSpec(text="  ")}, "text: the visible label is empty"),
    (frames, {"spec": LabelSpec(position="middle")}, "position must be one of"),
    (frames, {"spec": LabelSpec(seconds=0)}, "seconds must be more than 0"),
])
def test_bad_input_names_the_input(make, kwargs, message):
    with pytest.raises(WanLeanError, match=message):
        labelled_frames(make(), kwargs.get("fps", FPS), kwargs.get("spec", LabelSpec()))


def test_a_character_no_font_has_names_the_text_input(monkeypatch):
    monkeypatch.setattr(label, "SYSTEM_FONTS", ())
    with pytest.raises(WanLeanError, match=r"text: no font here has a glyph for '猫'"):
        labelled_frames(frames(), FPS, LabelSpec(text="AI生成的猫"))


def _write_mp4(path, metadata):
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w", options={"movflags": "use_metadata_tags"}) as output:
        for key, value in metadata.items():
            output.metadata[key] = json.dumps(value)
        stream = output.add_stream("h264", rate=16)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(torch.zeros(64, 64, 3, dtype=torch.uint8).numpy(), format="rgb24")
            output.mux(stream.encode(frame.reformat(format="yuv420p")))
        output.mux(stream.encode(None))


def test_wanlean_label_prints_the_entry_or_says_there_is_none(tmp_path, capsys):
    labelled = tmp_path / "labelled.mp4"
    entry = label.implicit_label(LabelSpec(producer="studio-7"))
    _write_mp4(labelled, {"AIGC": entry, "prompt": {"1": {}}})
    assert cli.main(["label", str(labelled)]) == 0
    assert json.loads(capsys.readouterr().out) == {"AIGC": entry}
    plain = tmp_path / "plain.mp4"
    _write_mp4(plain, {"prompt": {"1": {}}})
    assert cli.main(["label", str(plain)]) == 1
    assert "no AIGC label" in capsys.readouterr().out
    (tmp_path / "not_video.mp4").write_text("hello")
    assert cli.main(["label", str(tmp_path / "not_video.mp4")]) == 2
    assert "VIDEO_FILE: cannot read" in capsys.readouterr().err
    assert cli.main(["label", str(tmp_path / "missing.mp4")]) == 2
