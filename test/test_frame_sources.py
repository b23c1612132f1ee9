"""open_source reads every kind of input as BGR frames, and says clearly what it cannot open."""

import numpy as np
import pytest
from media_fixtures import (
    BAG_K,
    BAG_PERIOD_NS,
    BAG_STAMP_NS,
    HEIGHT,
    WIDTH,
    frame,
    write_bag,
    write_image_folder,
    write_video,
)

from hand_pose_ros.io.sources import (
    BagSource,
    ImageFolderSource,
    SourceError,
    VideoSource,
    open_source,
)


def test_video_gives_every_frame_at_its_rate_and_again_on_a_second_pass(tmp_path):
    with open_source(str(write_video(tmp_path / "clip.avi", 5, fps=12.0))) as source:
        assert isinstance(source, VideoSource) and source.finite
        assert source.rate_hz == pytest.approx(12.0)
        for _ in range(2):
            frames = list(source)
            assert [f.index for f in frames] == list(range(5))
            for f in frames:
                assert f.image.shape == (HEIGHT, WIDTH, 3) and f.image.dtype == np.uint8
                assert f.stamp_ns is None and f.error is None
                # MJPEG is lossy: the mean colour still tells the frames apart (20 levels apart).
                np.testing.assert_allclose(f.image.mean(axis=(0, 1)),
                                           frame(f.index)[0, 0], atol=6)


def test_image_folder_in_name_order_with_an_undecodable_image_as_a_bad_frame(tmp_path):
    folder = write_image_folder(tmp_path / "images", 3)
    (folder / "frame_001b.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    with open_source(str(folder)) as source:
        assert isinstance(source, ImageFolderSource) and source.rate_hz is None
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    bad = frames[2]
    assert bad.image is None and "frame_001b.png" in bad.error
    for f, expected in zip([frames[0], frames[1], frames[3]], range(3), strict=True):
        np.testing.assert_array_equal(f.image, frame(expected))


def test_recording_gives_bgr_frames_with_recorded_stamps_and_camera_info(tmp_path):
    bag = write_bag(tmp_path / "bag", 4, corrupt=(2,))
    # The folder and its .mcap file name the same recording; the busiest image topic is default.
    for spec in (bag, bag / "bag.mcap"):
        with open_source(str(spec)) as source:
            assert isinstance(source, BagSource) and source.topic == "/cam/image_raw"
            assert source.rate_hz == pytest.approx(1e9 / BAG_PERIOD_NS)
            np.testing.assert_allclose(source.calibration.k.ravel(), BAG_K)
            assert (source.calibration.width, source.calibration.height) == (WIDTH, HEIGHT)
            frames = list(source)
        assert [f.index for f in frames] == [0, 1, 2, 3]
        assert frames[2].image is None and "/cam/image_raw" in frames[2].error
        for f in (frames[0], frames[1], frames[3]):
            np.testing.assert_array_equal(f.image, frame(f.index))  # rgb8 -> BGR exactly
            assert f.stamp_ns == BAG_STAMP_NS + f.index * BAG_PERIOD_NS


def test_recording_topic_can_be_chosen_and_a_wrong_one_is_named(tmp_path):
    bag = write_bag(tmp_path / "bag", 2)
    with open_source(str(bag), topic="/other/image") as source:
        frames = list(source)
    assert len(frames) == 1
    np.testing.assert_array_equal(frames[0].image, frame(9))
    with pytest.raises(SourceError, match=r"/nope.*/cam/image_raw"):
        open_source(str(bag), topic="/nope")


def test_unusable_sources_raise_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "lone.mcap").write_bytes(b"an mcap file outside a rosbag2 folder")
    for name, message in [
        ("missing.mp4", "no such file or folder"),
        ("empty", "no images"),
        ("text.mp4", "video"),
        ("lone.mcap", "metadata.yaml"),
    ]:
        with pytest.raises(SourceError, match=message):
            open_source(str(tmp_path / name))


def test_bad_camera_spec_is_refused():
    with pytest.raises(SourceError, match="camera:N"):
        open_source("camera:front")
