"""Frame sources: a video file, a folder of images, a rosbag2 recording or a V4L2 camera.

All yield ``Frame``s of BGR uint8 images, so the source node, the demo, the benchmarks and
offline tools read every kind of input the same way. ``open_source(spec)`` picks the kind:
- ``camera:N`` or ``/dev/videoN``: a V4L2 camera (OpenCV);
- a folder holding ``metadata.yaml``, or a ``.mcap`` / ``.db3`` file inside such a folder:
  a rosbag2 recording (rosbags): the sensor_msgs/Image topic with the most messages, unless
  one is named;
- another folder: its images (png, jpg, jpeg, bmp), in name order;
- another file: a video (OpenCV).

A source can be iterated several times (each pass starts again at the first frame), which is
how a source is looped. A frame that cannot be decoded is yielded with ``image=None`` and an
``error`` saying why, so the consumer counts and skips it while the stream goes on; a source
that cannot be opened at all raises ``SourceError`` from ``open_source``.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from hand_pose_ros.io.camera_info import CalibrationError, CameraCalibration
from hand_pose_ros.io.images import RawImage, to_bgr8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
BAG_SUFFIXES = (".mcap", ".db3")


class SourceError(RuntimeError):
    """A source that cannot be opened."""


@dataclass
class Frame:
    """One frame of a source.

    ``index``: position in the source (0-based, counting bad frames too).
    ``image``: (H, W, 3) uint8 BGR, or None when the frame could not be decoded (see ``error``).
    ``stamp_ns``: the recording's header stamp (ns since the epoch) for bags, else None.
    """

    index: int
    image: np.ndarray | None
    stamp_ns: int | None = None
    error: str | None = None


class FrameSource:
    """Base of the sources: iterate to get frames (again for another pass).

    ``rate_hz``: the native frame rate, or None when the source has none (image folders).
    ``calibration``: the intrinsics the recording itself carries, or None.
    ``finite``: False for live cameras, which never end.
    """

    rate_hz: float | None = None
    calibration: CameraCalibration | None = None
    finite: bool = True
    description: str = ""

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class VideoSource(FrameSource):
    """A video file or a V4L2 camera (``target`` an int index or a /dev/video path), via OpenCV."""

    def __init__(self, target: str | int):
        self.target = target
        self.finite = not (isinstance(target, int) or str(target).startswith("/dev/video"))
        self.description = f"camera {target}" if not self.finite else f"video {target}"
        self.capture = self._open()
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.rate_hz = fps if 0 < fps < 1000 else None
        if self.finite:
            # OpenCV opens some files it cannot decode; one decoded frame proves it can.
            ok, _ = self.capture.read()
            self.close()
            if not ok:
                raise SourceError(f"cannot decode any frame of the video {target}")

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            raise SourceError(f"cannot open the {self.description} (not a readable video?)")
        return capture

    def __iter__(self) -> Iterator[Frame]:
        # Files are reopened for every pass (seeking is unreliable across codecs); a camera
        # stays open until close().
        capture = self._open() if self.finite else self.capture
        index = 0
        try:
            while True:
                ok, image = capture.read()
                if not ok:  # end of the file, or the camera is gone
                    return
                yield Frame(index, image)
                index += 1
        finally:
            if self.finite:
                capture.release()

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class ImageFolderSource(FrameSource):
    """The images of a folder in name order; an unreadable image is a bad frame."""

    def __init__(self, folder: Path):
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder {folder}")
        self.description = f"{len(self.paths)} images in {folder}"

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                yield Frame(index, None, error=f"cannot decode the image {path}")
            else:
                yield Frame(index, image)


class BagSource(FrameSource):
    """The sensor_msgs/Image messages of one topic of a rosbag2 recording (MCAP or SQLite).

    ``calibration`` comes from the recording's sensor_msgs/CameraInfo: the one next to the
    image topic (same namespace) if there is one, else the first.
    """

    def __init__(self, bag_dir: Path, topic: str | None = None):
        from rosbags.highlevel import AnyReader

        self.reader = AnyReader([bag_dir])
        try:
            self.reader.open()
        except Exception as error:  # rosbags raises several unrelated types
            raise SourceError(f"cannot read the rosbag2 recording {bag_dir}: {error}") from error
        try:
            self.connection = self._image_connection(topic)
            self.calibration = self._calibration()
        except SourceError:
            self.reader.close()
            raise
        self.topic = self.connection.topic
        count, duration_ns = self.connection.msgcount, self.reader.duration
        self.rate_hz = (count - 1) / (duration_ns * 1e-9) if count > 1 and duration_ns > 0 else None
        self.description = f"{self.topic} of the recording {bag_dir} ({count} images)"

    def _image_connection(self, topic: str | None):
        images = [c for c in self.reader.connections if c.msgtype == "sensor_msgs/msg/Image"]
        if not images:
            raise SourceError(f"no sensor_msgs/Image topic in the recording {self.reader.paths}")
        if topic is None:
            return max(images, key=lambda c: c.msgcount)
        named = [c for c in images if c.topic == topic]
        if not named:
            topics = sorted({c.topic for c in images})
            raise SourceError(f"no sensor_msgs/Image topic {topic} in the recording; "
                              f"its image topics: {topics}")
        return named[0]

    def _calibration(self) -> CameraCalibration | None:
        infos = [c for c in self.reader.connections
                 if c.msgtype == "sensor_msgs/msg/CameraInfo" and c.msgcount > 0]
        namespace = PurePosixPath(self.connection.topic).parent
        infos.sort(key=lambda c: PurePosixPath(c.topic).parent != namespace)
        for _, _, raw in self.reader.messages(connections=infos[:1]):
            info = self.reader.deserialize(raw, infos[0].msgtype)
            try:
                return CameraCalibration.from_k(info.width, info.height, info.k,
                                                info.distortion_model, info.d)
            except CalibrationError as error:
                message = f"the recording's {infos[0].topic} is unusable: {error}"
                raise SourceError(message) from None
        return None

    def __iter__(self) -> Iterator[Frame]:
        messages = self.reader.messages(connections=[self.connection])
        for index, (connection, _, raw) in enumerate(messages):
            try:
                msg = self.reader.deserialize(raw, connection.msgtype)
                image = to_bgr8(RawImage(msg.height, msg.width, msg.encoding, msg.step,
                                         msg.data, bool(msg.is_bigendian)))
            except Exception as error:  # corrupt CDR fails in several ways; ImageError too
                yield Frame(index, None, error=f"image {index} of {self.topic}: {error}")
                continue
            stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            yield Frame(index, image, stamp_ns)

    def close(self) -> None:
        self.reader.close()


def _bag_dir(path: Path) -> Path | None:
    """The rosbag2 directory ``path`` names (the folder, or the folder of its storage file)."""
    if path.is_dir():
        return path if (path / "metadata.yaml").is_file() else None
    if path.suffix in BAG_SUFFIXES:
        if not (path.parent / "metadata.yaml").is_file():
            raise SourceError(
                f"{path} has no metadata.yaml next to it: only rosbag2 recordings (a folder with "
                "metadata.yaml and the .mcap/.db3 file, as `ros2 bag record` writes) can be read"
            )
        return path.parent
    return None


def open_source(spec: str, topic: str | None = None) -> FrameSource:
    """Open the source ``spec`` names (see the module docstring).

    Args:
        spec: ``camera:N``, ``/dev/videoN``, a video file, an image folder or a rosbag2 path.
        topic: for recordings, the sensor_msgs/Image topic to read (None: the one with the
            most messages).

    Raises:
        SourceError: nothing at that path, or it cannot be opened or decoded.
    """
    if spec.startswith("camera:"):
        index = spec.split(":", 1)[1]
        if not index.isdigit():
            raise SourceError(f"bad camera spec {spec!r}: expected camera:N with N an index")
        return VideoSource(int(index))
    if spec.startswith("/dev/video"):
        return VideoSource(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"no such file or folder: {spec}")
    bag_dir = _bag_dir(path)
    if bag_dir is not None:
        return BagSource(bag_dir, topic)
    if path.is_dir():
        return ImageFolderSource(path)
    return VideoSource(str(path))
