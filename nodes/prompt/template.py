"""WanLeanPromptTemplate: a Wan2.2 prompt from slots in Wan's own order."""

from ...wanlean.prompt import template

_SLOT_TOOLTIPS = {
    "lighting": "Light source or quality (Wan vocabulary). Free words go in lighting_text.",
    "time_of_day": "Time of day. Free words go in time_of_day_text.",
    "shot_size": "How much of the subject the frame shows. Free words go in shot_size_text.",
    "camera_angle": "Where the camera looks from. Free words go in camera_angle_text.",
    "lens": "Focal length / lens. Free words go in lens_text.",
    "composition": "Placement in the frame. Free words go in composition_text.",
    "colour_tone": "Overall colour tone. Free words go in colour_tone_text.",
    "camera_movement": "How the camera moves during the clip. Free words go in camera_movement_text.",
    "style": "Visual style, placed after the aesthetic controls. Free words go in style_text.",
}


class WanLeanPromptTemplate:
    """Builds a prompt in the order Wan's prompt guide uses; empty slots vanish."""

    CATEGORY = "WanLean/prompt"
    FUNCTION = "run"
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("prompt", "keywords")
    OUTPUT_TOOLTIPS = (
        "The joined prompt.",
        "The preset and free slot values, comma-separated: feed them to WanLeanCompress 'keep' to protect them.",
    )
    DESCRIPTION = "Subject, scene, motion, then lighting, time, shot, angle, lens, composition, colour, camera movement, style."

    @classmethod
    def INPUT_TYPES(cls):
        required = {
            "subject": ("STRING", {"multiline": True, "default": "", "tooltip": "Who or what the video is about, with appearance details."}),
            "scene": ("STRING", {"multiline": True, "default": "", "tooltip": "Where it happens: place, surroundings, weather."}),
            "motion": ("STRING", {"multiline": True, "default": "", "tooltip": "What moves and how: actions, speed, direction."}),
        }
        for slot in template.PRESET_SLOTS:
            required[slot] = (template.preset_choices(slot), {"default": template.NONE, "tooltip": _SLOT_TOOLTIPS[slot]})
        required["language"] = (list(template.LANGUAGES), {"default": "english", "tooltip": "Language of the preset words and of the punctuation joining the slots (Chinese uses ，and 。)."})
        required["joiner"] = (list(template.JOINERS), {"default": "comma", "tooltip": "How slots are joined: commas, sentences, or one slot per line."})
        optional = {
            f"{slot}_text": ("STRING", {"default": "", "tooltip": f"Your own words for {slot.replace('_', ' ')}, placed after the preset."})
            for slot in template.PRESET_SLOTS
        }
        optional["extra"] = ("STRING", {"multiline": True, "default": "", "tooltip": "Anything else, appended last."})
        return {"required": required, "optional": optional}

    def run(self, subject, scene, motion, language, joiner, extra="", **slots):
        result = template.build_prompt(
            subject=subject,
            scene=scene,
            motion=motion,
            presets_chosen={slot: slots.get(slot, template.NONE) for slot in template.PRESET_SLOTS},
            free_text={slot: slots.get(f"{slot}_text", "") for slot in template.PRESET_SLOTS},
            extra=extra,
            language=language,
            joiner=joiner,
        )
        return (result.prompt, result.keywords)


NODE_CLASS_MAPPINGS = {"WanLeanPromptTemplate": WanLeanPromptTemplate}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLeanPromptTemplate": "WanLean Prompt Template"}
