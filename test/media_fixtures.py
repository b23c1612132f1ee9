"""Small inputs made by the tests themselves: a video, an image folder, a rosbag2 MCAP recording.

Every frame has a distinct, known content, so a test can tell which frame arrived.
"""

from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

WIDTH, HEIGHT = 32, 24
BAG_STAMP_NS = 1_700_000_000_000_000_000  # first frame's header stamp in recordings
BAG_PERIOD_NS = 100_000_000  # 10 Hz
BAG_K = (40.0, 0.0, 16.0, 0.0, 41.0, 12.0, 0.0, 0.0, 1.0)


def frame(index: int) -> np.ndarray:
    """(HEIGHT, WIDTH, 3) uint8 BGR: flat, with a brightness and colour that encode ``index``."""
    return np.full((HEIGHT, WIDTH, 3), (20 * index + 10, 40, 200 - 20 * index), np.uint8)


def write_video(path: Path, count: int, fps: float = 10.0) -> Path:
    """An MJPEG .avi of ``count`` frames (lossy: compare with a tolerance)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    for index in range(count):
        writer.write(frame(index))
    writer.release()
    return path


def write_image_folder(folder: Path, count: int) -> Path:
    """``count`` PNGs named so that name order is frame order."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        cv2.imwrite(str(folder / f"frame_{index:03d}.png"), frame(index))
    return folder


def write_bag(bag_dir: Path, count: int, *, corrupt: tuple[int, ...] = ()) -> Path:
    """A rosbag2 MCAP recording: ``count`` rgb8 images on /cam/image_raw (10 Hz, stamps from
    BAG_STAMP_NS) with /cam/camera_info (K = BAG_K), plus one image on /other/image.

    Frames listed in ``corrupt`` get a data buffer too short for their size.
    """
    store = get_typestore(Stores.ROS2_KILTED)
    Image = store.types["sensor_msgs/msg/Image"]  # noqa: N806 (a message class)
    CameraInfo = store.types["sensor_msgs/msg/CameraInfo"]  # noqa: N806
    Header = store.types["std_msgs/msg/Header"]  # noqa: N806
    Time = store.types["builtin_interfaces/msg/Time"]  # noqa: N806
    RegionOfInterest = store.types["sensor_msgs/msg/RegionOfInterest"]  # noqa: N806

    def header(stamp_ns: int):
        return Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                      frame_id="recorded_frame")

    def image(index: int, stamp_ns: int):
        rgb = np.ascontiguousarray(frame(index)[:, :, ::-1]).ravel()
        data = rgb[:10] if index in corrupt else rgb
        return Image(header=header(stamp_ns), height=HEIGHT, width=WIDTH, encoding="rgb8",
                     is_bigendian=0, step=WIDTH * 3, data=data)

    def info(stamp_ns: int):
        k = np.array(BAG_K)
        p = np.hstack([k.reshape(3, 3), np.zeros((3, 1))]).ravel()
        return CameraInfo(header=header(stamp_ns), height=HEIGHT, width=WIDTH,
                          distortion_model="plumb_bob", d=np.zeros(5), k=k, r=np.eye(3).ravel(),
                          p=p, binning_x=0, binning_y=0,
                          roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                               do_rectify=False))

    with Writer(bag_dir, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        other = writer.add_connection("/other/image", Image.__msgtype__, typestore=store)
        images = writer.add_connection("/cam/image_raw", Image.__msgtype__, typestore=store)
        infos = writer.add_connection("/cam/camera_info", CameraInfo.__msgtype__,
                                      typestore=store)
        writer.write(other, BAG_STAMP_NS, store.serialize_cdr(image(9, BAG_STAMP_NS),
                                                               Image.__msgtype__))
        for index in range(count):
            stamp = BAG_STAMP_NS + index * BAG_PERIOD_NS
            writer.write(images, stamp, store.serialize_cdr(image(index, stamp),
                                                            Image.__msgtype__))
            writer.write(infos, stamp, store.serialize_cdr(info(stamp), CameraInfo.__msgtype__))
    return bag_dir
