"""The camera source node: frames of a video, an image folder, a recording or a V4L2 camera.

Publishes, with one header (stamp, frame_id) per frame:
- ``image_raw`` (sensor_msgs/Image, bgr8) and ``camera_info`` (sensor_msgs/CameraInfo):
  relative names, so they follow the node's namespace (``-r __ns:=/camera``) or remaps
  (``-r image_raw:=/camera/color/image_raw``);
- ``/diagnostics`` (diagnostic_msgs/DiagnosticArray, once a second and at the end): status
  ``source_node: frames`` with ``frames_published``, ``frames_skipped``, ``finished``.

Intrinsics: the calibration file (``camera_info_url``) if given, else the recording's own
CameraInfo, else an ideal camera with a 60 degree horizontal field of view; the log says which.
At the end of a finite, non-looping source the node logs how many frames it published and, with
``shutdown_when_done``, exits with code 0 once subscribers have acknowledged the last frame.

Run: ``python -m hand_pose_ros.nodes.source_node --ros-args -p source:=video.mp4`` or
``hand-pose source video.mp4 --rate 15``.
"""

import argparse
import json
import sys
from pathlib import Path

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, Image

from hand_pose_ros.io.camera_info import (
    DEFAULT_HORIZONTAL_FOV_DEG,
    CalibrationError,
    CameraCalibration,
    load_calibration_yaml,
)
from hand_pose_ros.io.images import from_bgr8
from hand_pose_ros.io.sources import Frame, SourceError, open_source
from hand_pose_ros.nodes.common import publish_status
from hand_pose_ros.nodes.parameters import ParameterError, ParameterSpec, declare_parameters

NODE_NAME = "source_node"
DEFAULT_RATE_HZ = 30.0  # when neither the parameter nor the source gives a rate
DEFAULT_FRAME_ID = "camera_optical_frame"
# Reliable, keep last 2: a reliable publisher serves both reliable and best-effort
# (sensor-data) subscribers, and a short history means a slow subscriber gets the newest frames
# instead of a growing backlog.
IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE
)
ACK_TIMEOUT = Duration(seconds=5)

PARAMETERS = [
    ParameterSpec("source", "", "what to play: a video file, an image folder, a rosbag2 "
                  "recording (folder or its .mcap/.db3 file), camera:N or /dev/videoN"),
    ParameterSpec("bag_image_topic", "", "sensor_msgs/Image topic to play from a recording "
                  "('' = the image topic with the most messages)"),
    ParameterSpec("rate_hz", 0.0, "frames per second to publish (0 = the source's native rate, "
                  f"or {DEFAULT_RATE_HZ:g} when it has none)", 0.0, 1000.0),
    ParameterSpec("loop", False, "start again at the first frame after the last one"),
    ParameterSpec("camera_info_url", "", "ROS camera calibration YAML (a path or file:// URL); "
                  "'' = the recording's CameraInfo, else a 60 deg horizontal field of view"),
    ParameterSpec("frame_id", DEFAULT_FRAME_ID, "header.frame_id of the images "
                  "(the camera optical frame: x right, y down, z forward)"),
    ParameterSpec("use_recorded_stamps", False, "stamp frames of a recording with their "
                  "recorded header stamps instead of the current time"),
    ParameterSpec("shutdown_when_done", False, "exit (code 0) after the last frame of a "
                  "finite, non-looping source"),
    ParameterSpec("wait_for_subscribers", 0, "number of image_raw subscribers to wait for "
                  "before publishing the first frame (0 = start at once)", 0, 100),
]


def calibration_path(url: str) -> Path:
    """The file a ``camera_info_url`` names: a plain path or a file:// URL."""
    if url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    if "://" in url:
        raise CalibrationError(f"camera_info_url {url!r}: only file paths and file:// URLs "
                               "are supported")
    return Path(url).expanduser()


def camera_info_msg(calibration: CameraCalibration) -> CameraInfo:
    """A CameraInfo (header left empty) for an unrectified camera with ``calibration``."""
    k = calibration.k
    return CameraInfo(
        width=calibration.width,
        height=calibration.height,
        distortion_model=calibration.distortion_model,
        d=list(calibration.distortion),
        k=k.ravel().tolist(),
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[k[0, 0], 0.0, k[0, 2], 0.0, 0.0, k[1, 1], k[1, 2], 0.0, 0.0, 0.0, 1.0, 0.0],
    )


class SourceNode(Node):
    """Publishes the frames of one source (see the module docstring)."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.params = declare_parameters(self, PARAMETERS)
        spec = self.params["source"]
        if not spec:
            raise ParameterError("parameter 'source' is empty: set it to a video file, an image "
                                 "folder, a rosbag2 recording, camera:N or /dev/videoN")
        self.calibration, origin = self._load_calibration()
        self.source = open_source(spec, self.params["bag_image_topic"] or None)
        if self.calibration is None and self.source.calibration is not None:
            self.calibration, origin = self.source.calibration, "the recording's CameraInfo"
        self.camera_infos: dict[tuple[int, int], CameraInfo] = {}
        self.rate_hz = self.params["rate_hz"] or self.source.rate_hz or DEFAULT_RATE_HZ
        self.loop = self.params["loop"] and self.source.finite

        self.image_pub = self.create_publisher(Image, "image_raw", IMAGE_QOS)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", IMAGE_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self.frames = iter(self.source)
        self.frames_in_pass = 0
        self.published = 0
        self.skipped = 0
        self.done = False
        # Completes when the node has nothing more to do and may exit (shutdown_when_done).
        self.finished = Future()
        self.timer = self.create_timer(1.0 / self.rate_hz, self._publish_next)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"playing {self.source.description} at {self.rate_hz:g} Hz"
            f"{' in a loop' if self.loop else ''} on {self.image_pub.topic_name} and "
            f"{self.info_pub.topic_name}; intrinsics: {origin}"
        )

    def _load_calibration(self) -> tuple[CameraCalibration | None, str]:
        url = self.params["camera_info_url"]
        if url:
            path = calibration_path(url)
            return load_calibration_yaml(path), f"the calibration file {path}"
        return None, f"default, {DEFAULT_HORIZONTAL_FOV_DEG:g} deg horizontal field of view"

    def _camera_info(self, width: int, height: int) -> CameraInfo:
        """CameraInfo for a (width x height) image; a calibration made for another size is
        scaled to it (same camera, resized image), with a warning once per size."""
        if (width, height) not in self.camera_infos:
            calibration = self.calibration or CameraCalibration.default_for(width, height)
            if (calibration.width, calibration.height) != (width, height):
                self.get_logger().warning(
                    f"calibration is for {calibration.width}x{calibration.height} images, the "
                    f"frames are {width}x{height}: scaling the intrinsics"
                )
                calibration = calibration.scaled_to(width, height)
            self.camera_infos[(width, height)] = camera_info_msg(calibration)
        return self.camera_infos[(width, height)]

    def _next_frame(self) -> Frame | None:
        """The next frame, starting a new pass when looping; None at the end of the source."""
        for frame in self.frames:
            self.frames_in_pass += 1
            return frame
        if self.loop and self.frames_in_pass > 0:
            self.frames, self.frames_in_pass = iter(self.source), 0
            return self._next_frame()
        return None

    def _publish_next(self) -> None:
        wanted = self.params["wait_for_subscribers"]
        if self.published == 0 and self.image_pub.get_subscription_count() < wanted:
            self.get_logger().info(f"waiting for {wanted} subscriber(s) of "
                                   f"{self.image_pub.topic_name}", throttle_duration_sec=5.0)
            return
        frame = self._next_frame()
        if frame is None:
            self._finish()
            return
        if frame.image is None:
            self.skipped += 1
            self.get_logger().warning(f"skipping a bad frame ({self.skipped} so far): "
                                      f"{frame.error}", throttle_duration_sec=5.0)
            return
        if self.params["use_recorded_stamps"] and frame.stamp_ns is not None:
            stamp = Time(sec=frame.stamp_ns // 10**9, nanosec=frame.stamp_ns % 10**9)
        else:
            stamp = self.get_clock().now().to_msg()
        raw = from_bgr8(frame.image)
        image = Image(height=raw.height, width=raw.width, encoding=raw.encoding,
                      step=raw.step, data=raw.data)
        image.header.stamp = stamp
        image.header.frame_id = self.params["frame_id"]
        info = self._camera_info(raw.width, raw.height)
        info.header = image.header
        self.image_pub.publish(image)
        self.info_pub.publish(info)
        self.published += 1

    def _finish(self) -> None:
        self.timer.cancel()
        self.done = True
        self.get_logger().info(
            f"end of {self.source.description}: published {self.published} frames, "
            f"skipped {self.skipped} bad frames"
        )
        self._publish_diagnostics()
        if self.params["shutdown_when_done"]:
            # Reliable delivery of the last frames and counts before the process goes away.
            for publisher in (self.image_pub, self.info_pub, self.diagnostics_pub):
                publisher.wait_for_all_acked(ACK_TIMEOUT)
            self.finished.set_result(True)

    def _publish_diagnostics(self) -> None:
        publish_status(
            self, self.diagnostics_pub, "frames",
            DiagnosticStatus.WARN if self.skipped else DiagnosticStatus.OK,
            ("end of source" if self.done else "publishing")
            + (f", {self.skipped} bad frames skipped" if self.skipped else ""),
            self.params["source"],
            {"frames_published": self.published, "frames_skipped": self.skipped,
             "rate_hz": f"{self.rate_hz:g}", "finished": str(self.done).lower()},
        )

    def destroy_node(self) -> None:
        self.source.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown (or the end of the source with shutdown_when_done).

    Returns 0, or 1 with one line on stderr when the source or a parameter is unusable.
    """
    try:
        with rclpy.init(args=args):
            try:
                node = SourceNode()
            except (SourceError, ParameterError, CalibrationError) as error:
                print(f"{NODE_NAME}: error: {error}", file=sys.stderr)
                return 1
            try:
                rclpy.spin_until_future_complete(node, node.finished)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="video file, image folder, rosbag2 recording, camera:N "
                        "or /dev/videoN")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="frames per second (default: the source's rate, else 30)")
    parser.add_argument("--loop", action="store_true", help="play the source again and again")
    parser.add_argument("--calibration", help="ROS camera calibration YAML")
    parser.add_argument("--frame-id", default=DEFAULT_FRAME_ID, help="image frame_id")
    parser.add_argument("--ros-args", nargs=argparse.REMAINDER, default=[], dest="ros_args",
                        help="further ROS arguments, e.g. -p shutdown_when_done:=true "
                        "-r image_raw:=/camera/image_raw")


def run(args: argparse.Namespace) -> int:
    # Values are JSON-quoted: ROS parses parameter values as YAML, and a path like "123" or a
    # frame "on" must stay a string.
    params = {
        "source": json.dumps(args.spec),
        "rate_hz": repr(float(args.rate)),
        "loop": json.dumps(args.loop),
        "camera_info_url": json.dumps(str(Path(args.calibration).resolve())
                                      if args.calibration else ""),
        "frame_id": json.dumps(args.frame_id),
    }
    ros_args = [arg for name, value in params.items() for arg in ("-p", f"{name}:={value}")]
    return main([NODE_NAME, "--ros-args", *ros_args, *args.ros_args])


if __name__ == "__main__":
    sys.exit(main())
