"""WanLeanAIGCLabel: the AI-generated-content labels (visible and in the file's metadata) for a video."""

from __future__ import annotations

from ...wanlean.video import label
from .. import _comfy


class WanLeanAIGCLabel:
    """Draws the visible label on the frames and returns a VIDEO that core SaveVideo saves with the
    implicit `AIGC` metadata entry."""

    CATEGORY = "WanLean/video"
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "VIDEO", "STRING")
    RETURN_NAMES = ("images", "video", "label")
    OUTPUT_TOOLTIPS = (
        "The frames with the visible label (a new tensor; the input frames are not changed).",
        "The labelled frames as a video at fps, carrying the AIGC metadata: connect it to core SaveVideo.",
        "The implicit label as JSON text: {\"AIGC\": {Label, ContentProducer, ProduceID, ...}}.",
    )
    DESCRIPTION = (
        "Labels AI-generated video as China's labelling measures and GB 45438-2025 ask: visible text in a corner "
        "of the opening frames (defaults are the standard's minimums: 5% of the shorter side, 2 seconds) and an "
        "'AIGC' entry in the file's metadata, written by core SaveVideo beside ComfyUI's own prompt."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames, e.g. WanLeanSampler's images."}),
                "fps": ("FLOAT", {"default": 16.0, "min": 1.0, "max": 120.0, "step": 1.0, "tooltip": "Frames per second (Wan2.2 A14B: 16, TI2V-5B: 24): decides how many frames 'first seconds' covers, and the video's rate."}),
                "text": (list(label.TEXTS), {"default": label.TEXTS[0], "tooltip": "The visible label. 'custom_text' replaces it when filled."}),
                "position": (list(label.POSITIONS), {"default": "top-left", "tooltip": "The corner the label sits in."}),
                "size": ("FLOAT", {"default": label.MIN_TEXT_SHARE, "min": 0.01, "max": 0.5, "step": 0.005, "tooltip": "Text height as a share of the frame's shorter side. GB 45438-2025 asks at least 0.05 (the default)."}),
                "opacity": ("FLOAT", {"default": 0.8, "min": 0.05, "max": 1.0, "step": 0.05, "tooltip": "1 = fully opaque. The text is white on a dark box."}),
                "when": (list(label.WHEN), {"default": label.WHEN[0], "tooltip": "first seconds: the opening frames only (the standard asks at least the first 2 s); whole video: every frame."}),
                "seconds": ("FLOAT", {"default": label.MIN_SECONDS, "min": 0.1, "max": 600.0, "step": 0.5, "tooltip": "How long the label stays in 'first seconds' mode. The standard asks at least 2."}),
                "producer": ("STRING", {"default": "", "tooltip": "Implicit label, ContentProducer: who made the content (a name or a service's code)."}),
                "content_id": ("STRING", {"default": "", "tooltip": "Implicit label, ProduceID: your identifier for this piece of content."}),
            },
            "optional": {
                "custom_text": ("STRING", {"default": "", "tooltip": "Your own words for the visible label, instead of 'text'."}),
                "propagator": ("STRING", {"default": "", "tooltip": "Implicit label, ContentPropagator: the platform that publishes it, if you are one."}),
                "propagate_id": ("STRING", {"default": "", "tooltip": "Implicit label, PropagateID: the publisher's identifier for it."}),
            },
        }

    def run(self, images, fps, text, position, size, opacity, when, seconds, producer, content_id,
            custom_text="", propagator="", propagate_id=""):
        spec = label.LabelSpec(
            text=custom_text.strip() or text, position=position, size=float(size), opacity=float(opacity), when=when,
            seconds=float(seconds), producer=producer, content_id=content_id, propagator=propagator,
            propagate_id=propagate_id,
        )
        frames = label.labelled_frames(images, float(fps), spec)
        video = _comfy.video_with_metadata(frames, float(fps), {label.METADATA_KEY: label.implicit_label(spec)})
        return (frames, video, label.label_json(spec))


NODE_CLASS_MAPPINGS = {"WanLeanAIGCLabel": WanLeanAIGCLabel}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanAIGCLabel": "WanLean AI-Generated Label"}
