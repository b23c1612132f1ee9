"""hand_pose_node: camera images in; hands, TF, markers, poses, debug image and diagnostics out.

The node is thin: message -> numpy -> ``HandTracker.process`` (the ROS-free core) -> messages.

Frames are handled through a one-slot mailbox: the image callback only stores the newest
frame, a worker thread processes whatever is newest when it is free. A frame replaced before
it was processed is counted as dropped, so a slow machine skips frames instead of falling
behind, and /diagnostics says how many. Frames that cannot be used (wrong encoding, size
mismatch with CameraInfo, no or invalid intrinsics, a processing error) are counted per
reason, logged at a throttled rate and skipped; the node keeps running. Nothing non-finite
is published: every message is built through ``nodes.convert``, which refuses NaN/inf.
"""

import gc
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from hand_pose_ros.io.camera_info import CalibrationError, CameraCalibration
from hand_pose_ros.io.images import ImageError, RawImage, from_bgr8, to_bgr8, to_depth_metres
from hand_pose_ros.msg import HandArray
from hand_pose_ros.nodes.common import publish_status, spin_node
from hand_pose_ros.nodes.convert import hand_array_msg, hand_to_msg, hand_transforms
from hand_pose_ros.nodes.markers import hand_markers, hand_pose_array
from hand_pose_ros.nodes.parameters import ParameterSpec, declare_parameters
from hand_pose_ros.pipeline import (
    CameraIntrinsics,
    HandTracker,
    HandTrackerOptions,
    HandTrackingResult,
)
from hand_pose_ros.stats import FrameStats
from hand_pose_ros.viz import draw_mesh, draw_skeleton

NODE_NAME = "hand_pose_node"

def _backend_options(p: dict) -> dict:
    """Runtime options from the node's parameters; defaults are left out so that every
    backend accepts them (onnxruntime here runs fp32 on the CPU only)."""
    options = {}
    if p["device"] != "cpu":
        options["device"] = p["device"]
    if p["precision"] != "fp32":
        options["precision"] = p["precision"]
    return options


PARAMETERS = [
    ParameterSpec("model", "mediapipe", "registered hand estimator (hand-pose models list)"),
    ParameterSpec("backend", "onnxruntime", "inference runtime",
                  choices=("onnxruntime", "torch", "tensorrt")),
    ParameterSpec("device", "cpu", "where the networks run", choices=("cpu", "cuda")),
    ParameterSpec("precision", "fp32", "network precision (fp16: torch on cuda, tensorrt)",
                  choices=("fp32", "fp16")),
    ParameterSpec("num_threads", 2, "CPU threads of the runtime", min_value=1, max_value=64),
    ParameterSpec("detector", "full", "palm detector variant", choices=("full", "lite")),
    ParameterSpec("max_hands", 2, "most hands tracked at once", min_value=1, max_value=4),
    ParameterSpec("min_detection_confidence", 0.5, "palm detector score threshold [0, 1]",
                  min_value=0.0, max_value=1.0),
    ParameterSpec("min_tracking_confidence", 0.5, "hand presence below this ends a track [0, 1]",
                  min_value=0.0, max_value=1.0),
    ParameterSpec("detection_interval", 10, "frames between detector runs while tracking",
                  min_value=1, max_value=1000),
    ParameterSpec("background_detection", True,
                  "while a hand is tracked, search for more hands in a background thread"),
    ParameterSpec("mesh", True, "fit the open hand model to every hand and publish its mesh"),
    ParameterSpec("mirrored", False, "images are mirrored (selfie view): swaps handedness"),
    ParameterSpec("smoothing", True, "One Euro filter on the 3D keypoints"),
    ParameterSpec("filter_min_cutoff", 1.0, "One Euro cutoff at rest, Hz (lower: smoother)",
                  min_value=1e-3, max_value=100.0),
    ParameterSpec("filter_beta", 20.0, "One Euro speed coefficient, s/m (higher: less lag)",
                  min_value=0.0, max_value=1e4),
    ParameterSpec("filter_d_cutoff", 1.0, "One Euro cutoff of the speed estimate, Hz",
                  min_value=1e-3, max_value=100.0),
    ParameterSpec("image_topic", "image", "colour image topic (sensor_msgs/Image)"),
    ParameterSpec("camera_info_topic", "camera_info", "its sensor_msgs/CameraInfo topic"),
    ParameterSpec("image_reliability", "best_effort",
                  "QoS of the image subscriptions, keep last 1: best_effort (sensor data, "
                  "matches every camera) or reliable (only reliable cameras; no frame lost to "
                  "the transport)", choices=("best_effort", "reliable")),
    ParameterSpec("depth_topic", "", "aligned depth image topic; empty: no depth"),
    ParameterSpec("depth_max_age_s", 0.05, "use a depth image only within this of the image, s",
                  min_value=0.0, max_value=10.0),
    ParameterSpec("use_default_intrinsics", False,
                  "without CameraInfo assume a 60 deg horizontal FOV instead of skipping frames"),
    ParameterSpec("publish_tf", True, "publish wrist and joint frames on /tf"),
    ParameterSpec("publish_markers", True, "publish skeleton and mesh markers"),
    ParameterSpec("publish_pose_array", True, "publish a PoseArray (wrist, then joints)"),
    ParameterSpec("publish_debug_image", True, "publish an annotated image while subscribed"),
    ParameterSpec("tf_prefix", "hand_", "TF child frames: <prefix><side>_<joint>"),
    ParameterSpec("diagnostics_period_s", 1.0, "period of /diagnostics, s",
                  min_value=0.05, max_value=60.0),
]

OUTPUT_QOS = QoSProfile(depth=5)  # reliable, keep last 5: consumers get every result


class HandPoseNode(Node):
    """See the module docstring. Raises ParameterError / WeightsError at construction."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.p = declare_parameters(self, PARAMETERS)
        p = self.p
        if p["device"] != "cpu":
            self.get_logger().warn("device 'cuda' requested: the tracker runs on the CPU here")
        self.tracker = HandTracker(HandTrackerOptions(
            color_order="bgr", model=p["model"], detector=p["detector"], backend=p["backend"],
            num_threads=p["num_threads"], max_hands=p["max_hands"],
            min_detection_confidence=p["min_detection_confidence"],
            min_tracking_confidence=p["min_tracking_confidence"],
            detection_interval=p["detection_interval"], mirrored=p["mirrored"],
            smoothing=p["smoothing"], filter_min_cutoff=p["filter_min_cutoff"],
            filter_beta=p["filter_beta"], filter_d_cutoff=p["filter_d_cutoff"], mesh=p["mesh"],
            background_detection=p["background_detection"],
            backend_options=_backend_options(p),
        ))
        self.stats = FrameStats()
        self._calibration: CameraCalibration | None = None
        self._depth: Image | None = None
        self._latest: Image | None = None
        self._wake = threading.Condition()
        self._running = True
        self._last_stamp: float | None = None
        self._last_diag = (time.monotonic(), 0, 0)

        self.hands_pub = self.create_publisher(HandArray, "hands", OUTPUT_QOS)
        self.markers_pub = self.create_publisher(MarkerArray, "hand_markers", OUTPUT_QOS)
        self.poses_pub = self.create_publisher(PoseArray, "hand_poses", OUTPUT_QOS)
        self.debug_pub = self.create_publisher(Image, "hand_debug_image", qos_profile_sensor_data)
        self.tf_pub = self.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        # Keep last 1: a stale frame is replaced, never queued.
        image_qos = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.BEST_EFFORT if p["image_reliability"] == "best_effort"
            else ReliabilityPolicy.RELIABLE,
        )
        self.create_subscription(Image, p["image_topic"], self._on_image, image_qos)
        self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_camera_info,
                                 image_qos)
        if p["depth_topic"]:
            self.create_subscription(Image, p["depth_topic"], self._on_depth, image_qos)
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        # Everything loaded so far (torch, the networks, rclpy) lives until the node ends: keep
        # it out of the garbage collector's full passes, which otherwise stall frames for tens
        # of milliseconds while each frame's messages churn through the young generations.
        gc.freeze()
        self._worker = threading.Thread(target=self._work, name="hand_pose_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"{p['model']} on {p['backend']}, images from "
            f"{self.resolve_topic_name(p['image_topic'])}"
        )

    # -- input ----------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        with self._wake:
            self.stats.count("received")
            if self._latest is not None:
                self.stats.count("dropped")
            self._latest = msg
            self._wake.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._calibration = CameraCalibration.from_k(
                msg.width, msg.height, msg.k, msg.distortion_model, msg.d
            )
        except CalibrationError as error:
            self._calibration = None
            self._reject("bad_camera_info", f"unusable CameraInfo: {error}")

    def _on_depth(self, msg: Image) -> None:
        self._depth = msg

    def _work(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._latest is not None or not self._running)
                if not self._running:
                    return
                msg, self._latest = self._latest, None
            try:
                self._process(msg)
            except Exception as error:  # one bad frame must not stop the node
                self._reject("processing_error", f"frame failed: {error!r}")

    # -- one frame ------------------------------------------------------------------------
    def _reject(self, reason: str, message: str) -> None:
        self.stats.count("rejected")
        self.stats.count(f"rejected_{reason}")
        self.get_logger().warn(f"skipping frame: {message}", throttle_duration_sec=5.0)

    def _calibration_for(self, width: int, height: int) -> CameraCalibration | None:
        calibration = self._calibration
        if calibration is None:
            if self.p["use_default_intrinsics"]:
                return CameraCalibration.default_for(width, height)
            self._reject("no_camera_info",
                         f"no CameraInfo received on '{self.p['camera_info_topic']}' "
                         "(or set use_default_intrinsics)")
            return None
        if (calibration.width, calibration.height) != (width, height):
            self._reject("size_mismatch",
                         f"image is {width}x{height} but CameraInfo says "
                         f"{calibration.width}x{calibration.height}")
            return None
        return calibration

    def _depth_for(self, msg: Image) -> np.ndarray | None:
        depth = self._depth
        if depth is None:
            return None
        age = abs(_seconds(depth.header.stamp) - _seconds(msg.header.stamp))
        if age > self.p["depth_max_age_s"]:
            return None
        try:
            return to_depth_metres(_raw(depth))
        except ImageError as error:
            self._reject("bad_depth", f"depth image: {error}")
            return None

    def _process(self, msg: Image) -> None:
        start = time.perf_counter()
        try:
            image = to_bgr8(_raw(msg))
        except ImageError as error:
            self._reject("bad_image", str(error))
            return
        calibration = self._calibration_for(msg.width, msg.height)
        if calibration is None:
            return
        stamp = _seconds(msg.header.stamp)
        if self._last_stamp is not None and stamp < self._last_stamp:
            # The camera restarted or a recording looped: start tracking afresh.
            self.tracker.reset()
        self._last_stamp = stamp
        depth = self._depth_for(msg)
        decoded = time.perf_counter()
        try:
            result = self.tracker.process(image, calibration.intrinsics, stamp, depth)
        except ValueError as error:
            self._reject("bad_frame", str(error))
            return
        publish_start = time.perf_counter()
        self._publish(msg, image, result, calibration.intrinsics)
        timings = dict(result.timings_ms)
        timings["decode"] = 1e3 * (decoded - start)
        timings["publish"] = 1e3 * (time.perf_counter() - publish_start)
        timings["node_total"] = 1e3 * (time.perf_counter() - start)
        self.stats.add_latencies(timings)
        self.stats.count("processed")
        self.stats.count("hands", len(result.hands))

    def _publish(self, msg: Image, image: np.ndarray, result: HandTrackingResult,
                 intrinsics: CameraIntrinsics) -> None:
        hands = []
        for hand in result.hands:
            try:
                hands.append(hand_to_msg(
                    side=hand.side, handedness_score=hand.handedness_score,
                    detection_score=hand.detection_score, tracking_id=hand.tracking_id,
                    keypoints=hand.keypoints_camera, keypoints_image=hand.keypoints_image,
                    keypoint_confidence=hand.keypoint_confidence,
                    wrist_quaternion_xyzw=hand.wrist_quaternion_xyzw,
                    mesh_vertices=hand.mesh_vertices, mesh_faces=hand.mesh_faces,
                ))
            except ValueError as error:
                self._reject("invalid_output", f"hand not published: {error}")
        array = hand_array_msg(msg.header, self.p["model"], hands)
        self.hands_pub.publish(array)
        if self.p["publish_tf"] and array.hands:
            transforms = [t for h in array.hands
                          for t in hand_transforms(msg.header, h, self.p["tf_prefix"])]
            self.tf_pub.publish(TFMessage(transforms=transforms))
        if self.p["publish_markers"]:
            self.markers_pub.publish(hand_markers(array))
        if self.p["publish_pose_array"]:
            self.poses_pub.publish(hand_pose_array(array))
        if self.p["publish_debug_image"] and self.debug_pub.get_subscription_count() > 0:
            annotated = image.copy()
            for hand in result.hands:
                if hand.mesh_vertices is not None:
                    draw_mesh(annotated, intrinsics.project(hand.mesh_vertices), hand.mesh_faces)
                draw_skeleton(annotated, hand.keypoints_image, hand.side.label)
            raw = from_bgr8(annotated)
            self.debug_pub.publish(Image(header=msg.header, height=raw.height, width=raw.width,
                                         encoding=raw.encoding, step=raw.step, data=raw.data))

    # -- diagnostics ------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        counters = self.stats.counters
        then, received_before, processed_before = self._last_diag
        elapsed = max(now - then, 1e-9)
        self._last_diag = (now, counters["received"], counters["processed"])
        values = {
            "input_rate_hz": (counters["received"] - received_before) / elapsed,
            "processing_rate_hz": (counters["processed"] - processed_before) / elapsed,
            **{k: counters[k] for k in ("received", "processed", "dropped", "rejected", "hands")},
            **{k: v for k, v in counters.items() if k.startswith("rejected_")},
        }
        for stage, summary in self.stats.latency_summary().items():
            values[f"latency_ms_{stage}_p50"] = summary["p50"]
            values[f"latency_ms_{stage}_p99"] = summary["p99"]
        level, message = DiagnosticStatus.OK, "ok"
        if counters["processed"] == 0:
            level, message = DiagnosticStatus.WARN, "no frame processed yet"
        if counters["rejected"]:
            worst = max((k for k in counters if k.startswith("rejected_")),
                        key=lambda k: counters[k])
            level, message = DiagnosticStatus.WARN, f"frames rejected (most: {worst[9:]})"
        publish_status(self, self.diag_pub, "pipeline", level, message, self.p["model"], values)

    def destroy_node(self) -> None:
        with self._wake:
            self._running = False
            self._wake.notify()
        self._worker.join(timeout=5.0)
        self.tracker.close()
        super().destroy_node()


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _raw(msg: Image) -> RawImage:
    return RawImage(msg.height, msg.width, msg.encoding, msg.step, msg.data,
                    bool(msg.is_bigendian))


def main(args: list[str] | None = None) -> int:
    return spin_node(HandPoseNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
