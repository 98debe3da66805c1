import pytest

from wanlean.video import video_shape
from wanlean.errors import WanLeanError


@pytest.mark.parametrize("frames, latent", [(1, 1), (5, 2), (81, 21), (121, 31)])
def test_valid_frames_and_their_latent_frames(frames, latent):
    assert video_shape.check_frames(frames) == frames
    assert video_shape.latent_frames(frames) == latent


def test_bad_frames_name_the_nearest_valid_counts():
    with pytest.raises(WanLeanError, match=r"frames must be 4k\+1, e.g. 121; got 120 \(nearest valid: 117 or 121\)"):
        video_shape.check_frames(120, example=121)
    with pytest.raises(WanLeanError, match="got 0"):
        video_shape.check_frames(0)


def test_sizes_must_be_positive_multiples():
    assert video_shape.check_size("width", 1280, 16, "A14B", "official 1280×720") == 1280
    with pytest.raises(WanLeanError, match=r"width must be a positive multiple of 32 for TI2V-5B \(official 1280×704\); got 1000, nearest 992"):
        video_shape.check_size("width", 1000, 32, "TI2V-5B", "official 1280×704")
    with pytest.raises(WanLeanError, match="height must be a positive multiple of 16"):
        video_shape.check_size("height", -16, 16, "A14B", "x")
