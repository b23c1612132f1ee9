"""`hand-pose bench --e2e`: end-to-end latency of a running hand_pose_node over loopback.

Starts hand_pose_node in its own process (config/hand_pose.yaml), publishes frames of a video
at each input rate for a fixed time, and measures for every HandArray that comes back the
latency from the image stamp to its arrival here (both on this machine's clock), the
delivered rate, and whether latency grows over the run (a growing input backlog would show
as a positive slope; the node's one-slot mailbox drops stale frames instead, and reports
how many in /diagnostics).
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from hand_pose_ros.graph import ros_environment
from hand_pose_ros.paths import source_checkout_root


def add_e2e_arguments(parser) -> None:
    """The --e2e options of `hand-pose bench` (which also gives --video and --json)."""
    root = source_checkout_root() or Path.cwd()
    parser.add_argument("--rates", type=float, nargs="+", default=[30.0, 60.0],
                        help="input frame rates to test, Hz (default: 30 60)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of input per rate (default: 10)")
    parser.add_argument("--node-config", default=str(root / "config" / "hand_pose.yaml"),
                        help="hand_pose_node parameters (default: config/hand_pose.yaml)")


def load_frames(video: str, limit: int = 300) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    if not frames:
        raise SystemExit(f"error: no frames in {video}")
    return frames


def measure(rate_hz: float, duration_s: float, frames: list[np.ndarray]) -> dict:
    """Publish at ``rate_hz`` for ``duration_s``; return latency and rate statistics."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image

    from hand_pose_ros.io.camera_info import CameraCalibration
    from hand_pose_ros.msg import HandArray

    height, width = frames[0].shape[:2]
    k = CameraCalibration.default_for(width, height).k.ravel().tolist()
    node = rclpy.create_node(f"bench_e2e_{int(rate_hz)}")
    latencies: list[tuple[float, float]] = []  # (arrival time s, latency ms)
    diagnostics: list[dict] = []

    def on_hands(msg: HandArray) -> None:
        now = node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        latencies.append((now * 1e-9, (now - stamp) / 1e6))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("hand_pose_node"):
                diagnostics.append({kv.key: kv.value for kv in status.values})

    node.create_subscription(HandArray, "/bench/hands", on_hands, QoSProfile(depth=100))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    image_pub = node.create_publisher(Image, "/bench/image", QoSProfile(depth=1))
    info_pub = node.create_publisher(CameraInfo, "/bench/camera_info", QoSProfile(depth=1))
    deadline = time.monotonic() + 60
    while image_pub.get_subscription_count() == 0 or node.count_publishers("/bench/hands") == 0:
        if time.monotonic() > deadline:
            raise SystemExit("error: hand_pose_node did not come up within 60 s")
        rclpy.spin_once(node, timeout_sec=0.05)
    # Warm up (first detections, caches), then measure.
    messages = [Image(height=height, width=width, encoding="bgr8", step=width * 3,
                      data=f.tobytes()) for f in frames]
    gc.freeze()  # as the node does: no full collection pass stalls this measuring process
    sent = 0
    start = time.monotonic()
    period = 1.0 / rate_hz
    next_time = start
    end = start + 2.0 + duration_s
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_time:
            msg = messages[sent % len(messages)]
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = "bench_camera"
            info_pub.publish(CameraInfo(header=msg.header, width=width, height=height, k=k))
            image_pub.publish(msg)
            sent += 1
            next_time += period
        rclpy.spin_once(node, timeout_sec=max(0.0, min(next_time - time.monotonic(), 0.005)))
    drain_end = time.monotonic() + 1.0
    while time.monotonic() < drain_end:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    measured = [(t, ms) for t, ms in latencies if t - latencies[0][0] >= 2.0] if latencies else []
    if len(measured) < 2:
        return {"input_fps": rate_hz, "delivered_fps": 0.0, "frames_sent": sent}
    times, ms = np.array(measured).T
    slope = float(np.polyfit(times - times[0], ms, 1)[0])
    last = diagnostics[-1] if diagnostics else {}
    return {
        "input_fps": rate_hz,
        "frames_sent": sent,
        "delivered_fps": len(measured) / (times[-1] - times[0]),
        "latency_ms_p50": float(np.percentile(ms, 50)),
        "latency_ms_p90": float(np.percentile(ms, 90)),
        "latency_ms_p99": float(np.percentile(ms, 99)),
        "latency_ms_max": float(ms.max()),
        "latency_growth_ms_per_s": slope,
        "node_dropped_total": int(last.get("dropped", 0)),
        "node_received_total": int(last.get("received", 0)),
    }


def run_e2e(args: argparse.Namespace) -> int:
    import rclpy

    from hand_pose_ros.bench import cpu_model

    root = source_checkout_root() or Path.cwd()
    frames = load_frames(args.video or root / "demo" / "emoji_hands.mp4")
    env = ros_environment()
    os.environ.update(env)  # this process publishes the frames: same transport settings
    node = subprocess.Popen(
        [sys.executable, "-m", "hand_pose_ros.nodes.hand_pose_node", "--ros-args",
         "--params-file", args.node_config, "-p", "image_topic:=/bench/image",
         "-p", "camera_info_topic:=/bench/camera_info", "-p", "publish_debug_image:=false",
         "-r", "hands:=/bench/hands"],
        env=env,
    )
    results = {"hardware": f"{cpu_model()}, {os.cpu_count()} logical CPUs",
               "model": "from " + args.node_config, "rates": []}
    try:
        with rclpy.init():
            for rate in args.rates:
                results["rates"].append(measure(rate, args.duration, frames))
    finally:
        node.terminate()
        node.wait(timeout=20)
    print(f"end-to-end latency, image stamp -> HandArray received ({results['hardware']})")
    print(f"{'input FPS':>10} {'delivered':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'growth ms/s':>12} {'dropped':>8}")
    for r in results["rates"]:
        print(f"{r['input_fps']:>10.0f} {r['delivered_fps']:>10.1f} "
              f"{r.get('latency_ms_p50', float('nan')):>8.1f} "
              f"{r.get('latency_ms_p90', float('nan')):>8.1f} "
              f"{r.get('latency_ms_p99', float('nan')):>8.1f} "
              f"{r.get('latency_growth_ms_per_s', float('nan')):>12.2f} "
              f"{r.get('node_dropped_total', 0):>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0
