import pytest

from wanlean.prompt import template
from wanlean.errors import WanLeanError


def test_slots_follow_wans_order_and_empty_slots_vanish():
    result = template.build_prompt(
        subject="an old fisherman",
        scene="",
        motion="he mends a net",
        presets_chosen={"lighting": "soft light / 柔光", "shot_size": "close-up / 特写", "camera_movement": "camera pushes in / 镜头推进"},
        free_text={"lighting": "from a lantern", "style": "35mm film"},
    )
    assert result.prompt == "an old fisherman, he mends a net, soft light, from a lantern, close-up, camera pushes in, 35mm film."
    # The subject, scene and motion as typed come first: wired to Compress's keep, they are never dropped.
    assert result.keywords == "an old fisherman, he mends a net, soft light, from a lantern, close-up, camera pushes in, 35mm film"


def test_chinese_output_uses_chinese_presets_and_punctuation():
    result = template.build_prompt(
        subject="一只小猫", motion="在窗台上打哈欠",
        presets_chosen={"time_of_day": "sunset / 日落", "colour_tone": "warm colour tone / 暖色调"},
        language="chinese",
    )
    assert result.prompt == "一只小猫，在窗台上打哈欠，日落，暖色调。"
    assert result.keywords == "一只小猫, 在窗台上打哈欠, 日落, 暖色调"
    sentence = template.build_prompt(subject="一只小猫", motion="打哈欠。", language="chinese", joiner="sentence")
    assert sentence.prompt == "一只小猫。打哈欠。"


def test_joiners_and_whitespace():
    assert template.build_prompt(subject="  a  dog ", scene="park,", joiner="newline").prompt == "a dog\npark"
    assert template.build_prompt(subject="a dog", scene="a park.", joiner="sentence").prompt == "a dog. a park."
    assert template.build_prompt().prompt == ""


def test_every_slot_has_bilingual_presets():
    for slot in template.PRESET_SLOTS:
        choices = template.preset_choices(slot)
        assert choices[0] == template.NONE and len(choices) > 3
        for en, zh in template.presets()[slot]:
            assert en.isascii() and not zh.isascii()


def test_bad_options_are_named():
    with pytest.raises(WanLeanError, match="language"):
        template.build_prompt(subject="x", language="french")
    with pytest.raises(WanLeanError, match="lighting: 'purple haze'"):
        template.build_prompt(subject="x", presets_chosen={"lighting": "purple haze"})


def test_node_passes_slots_through(pack):
    node = pack.NODE_CLASS_MAPPINGS["WanLeanPromptTemplate"]()
    schema = node.INPUT_TYPES()
    assert list(schema["required"])[:3] == ["subject", "scene", "motion"]
    kwargs = {slot: template.NONE for slot in template.PRESET_SLOTS}
    kwargs.update(lens="telephoto lens / 长焦镜头", lens_text="shallow depth of field")
    prompt, keywords = node.run("a heron", "a misty lake", "it takes off", "english", "comma", extra="4k", **kwargs)
    assert prompt == "a heron, a misty lake, it takes off, telephoto lens, shallow depth of field, 4k."
    assert keywords == "a heron, a misty lake, it takes off, telephoto lens, shallow depth of field"


def test_keywords_wired_to_compress_keep_the_subject_scene_and_motion():
    from wanlean import tokens
    from wanlean.prompt import compress

    built = template.build_prompt(
        subject="a grey heron with long legs", scene="a misty lake among reeds at dawn", motion="it takes off slowly",
        presets_chosen={"lens": "telephoto lens / 长焦镜头"}, free_text={"style": "ink wash painting, muted colours"},
        extra="quiet and contemplative mood, gentle ripples spreading on the water, distant mountains fading into haze",
    )
    result = compress.compress(built.prompt, target_ratio=0.5, keep=built.keywords, tokenizer=tokens.load_tokenizer(None))
    for typed in ("a grey heron with long legs", "a misty lake among reeds at dawn", "it takes off slowly"):
        assert typed in result.text, result.text
