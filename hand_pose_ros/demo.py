"""`hand-pose demo` (what `make demo` runs): the full graph on the bundled input, then a report.

1. Starts source_node (the bundled video, real time), hand_pose_node and recorder_node from
   config/demo.yaml (paths filled in; the file actually run is saved as out/demo_graph.yaml).
2. When the source has sent its last frame and the hands stopped coming, stops the graph.
3. Reads the recording back (out/demo_bag/*.mcap, opens in Foxglove and rosbags) and writes
   out/demo_annotated.mp4 (2D skeleton and projected mesh on every frame) and
   out/demo_summary.json (frames, hands found, latency per stage and end to end, FPS).
"""

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from hand_pose_ros.bench import cpu_model
from hand_pose_ros.graph import Graph, ros_environment
from hand_pose_ros.paths import source_checkout_root

QUIET_PERIOD_S = 1.0  # the graph is drained once no hands came for this long


def add_arguments(parser: argparse.ArgumentParser) -> None:
    root = source_checkout_root() or Path.cwd()
    parser.add_argument("--config", default=str(root / "config" / "demo.yaml"),
                        help="graph to run (default: config/demo.yaml)")
    parser.add_argument("--input", help="video/folder/bag to play instead of the bundled video")
    parser.add_argument("--out", default="out", help="output folder (default: out)")
    parser.add_argument("--model", help="hand_pose_node's model instead of the config's "
                        "(any name of `hand-pose info`, e.g. ehpe, handformer2t)")


def write_graph_config(args: argparse.Namespace, out: Path) -> Path:
    """The demo graph with absolute input/output paths, saved where the outputs go."""
    root = source_checkout_root() or Path.cwd()
    graph = yaml.safe_load(Path(args.config).read_text())
    source = graph["source_node"]["ros__parameters"]
    source["source"] = str(Path(args.input).resolve()) if args.input else str(
        (root / source["source"]).resolve())
    graph["recorder_node"]["ros__parameters"]["output"] = str((out / "demo_bag").resolve())
    if args.model:
        graph["hand_pose_node"]["ros__parameters"]["model"] = args.model
    path = out / "demo_graph.yaml"
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


def run_graph(config: Path) -> None:
    """Run the graph until the source is done and the pipeline drained."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from hand_pose_ros.msg import HandArray

    last_hands = [time.monotonic()]
    os.environ.update(ros_environment())  # the watcher uses the graph's transport settings
    with rclpy.init(), Graph(config) as graph:
        watcher = rclpy.create_node("demo_watcher")
        watcher.create_subscription(HandArray, "hands",
                                    lambda _: last_hands.__setitem__(0, time.monotonic()), 10)
        executor = SingleThreadedExecutor()
        executor.add_node(watcher)
        while "source_node" in graph.running():
            if graph.failed():
                raise RuntimeError(f"node(s) failed: {graph.failed()}")
            executor.spin_once(timeout_sec=0.1)
        if graph.failed():
            raise RuntimeError(f"node(s) failed: {graph.failed()}")
        while time.monotonic() - last_hands[0] < QUIET_PERIOD_S:
            executor.spin_once(timeout_sec=0.1)
        # Producers first, the recorder last, so it records everything they sent.
        graph.stop([n for n in graph.names if n != "recorder_node"])
        graph.stop(["recorder_node"])
        watcher.destroy_node()
        if failed := {n: c for n, c in graph.failed().items() if c not in (0, -2)}:
            raise RuntimeError(f"node(s) failed: {failed}")


def read_recording(bag: Path) -> dict:
    """Images, camera info, hands (by stamp) and diagnostics from the demo recording."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import CameraInfo, Image, JointState

    from hand_pose_ros.msg import HandArray

    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
             "hand_pose_ros/msg/HandArray": HandArray,
             "diagnostic_msgs/msg/DiagnosticArray": DiagnosticArray,
             "sensor_msgs/msg/JointState": JointState}
    data = {"images": [], "info": None, "hands": {}, "hand_log_ns": {}, "diagnostics": [],
            "joint_states": []}
    with AnyReader([bag]) as reader:
        connections = [c for c in reader.connections if c.msgtype in types]
        for connection, log_ns, raw in reader.messages(connections=connections):
            msg = deserialize_message(raw, types[connection.msgtype])
            if connection.msgtype == "sensor_msgs/msg/Image":
                data["images"].append(msg)
            elif connection.msgtype == "sensor_msgs/msg/CameraInfo":
                data["info"] = msg
            elif connection.msgtype == "hand_pose_ros/msg/HandArray":
                stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                data["hands"][stamp] = msg
                data["hand_log_ns"][stamp] = log_ns
            elif connection.msgtype == "sensor_msgs/msg/JointState":
                data["joint_states"].append(msg)
            else:
                data["diagnostics"].append(msg)
    return data


def annotate(data: dict, path: Path) -> None:
    """Write the recorded frames with each frame's hands drawn on them."""
    from hand_pose_ros.io.images import RawImage, to_bgr8
    from hand_pose_ros.viz import draw_mesh, draw_skeleton

    k = np.array(data["info"].k).reshape(3, 3) if data["info"] is not None else None
    writer = None
    for image_msg in data["images"]:
        image = to_bgr8(RawImage(image_msg.height, image_msg.width, image_msg.encoding,
                                 image_msg.step, image_msg.data))
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30,
                                     (image.shape[1], image.shape[0]))
        hands = data["hands"].get((image_msg.header.stamp.sec, image_msg.header.stamp.nanosec))
        for hand in hands.hands if hands else []:
            if hand.mesh.triangles and k is not None:
                vertices = np.array([[p.x, p.y, p.z] for p in hand.mesh.vertices])
                projected = (vertices / vertices[:, 2:3]) @ k.T
                faces = np.array([t.vertex_indices for t in hand.mesh.triangles])
                draw_mesh(image, projected[:, :2], faces)
            uv = np.array([[p.x, p.y] for p in hand.keypoints_image])
            draw_skeleton(image, uv, f"{hand.handedness} #{hand.tracking_id}")
        writer.write(image)
    if writer is not None:
        writer.release()


def summarise(data: dict, config: Path) -> dict:
    """The numbers of the run: frames, hands, latencies, FPS, hardware."""
    graph = yaml.safe_load(config.read_text())
    pose_params = graph["hand_pose_node"]["ros__parameters"]
    hands = data["hands"]
    stamps_ns = {s: s[0] * 10**9 + s[1] for s in hands}
    e2e_ms = [(data["hand_log_ns"][s] - stamps_ns[s]) / 1e6 for s in hands]
    log_times = sorted(data["hand_log_ns"].values())
    duration_s = (log_times[-1] - log_times[0]) / 1e9 if len(log_times) > 1 else 0.0
    node_status, retarget_status = {}, {}
    for array in data["diagnostics"]:
        for status in array.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name.startswith("hand_pose_node"):
                node_status = values
            elif status.name.startswith("retarget_node"):
                retarget_status = values
    stages = sorted({k[len("latency_ms_"):-4] for k in node_status if k.startswith("latency_ms_")})
    summary = {
        "input": graph["source_node"]["ros__parameters"]["source"],
        "model": pose_params.get("model"),
        "backend": pose_params.get("backend"),
        "hardware": f"{cpu_model()}, {os.cpu_count()} logical CPUs, no GPU used",
        "frames_published": len(data["images"]),
        "frames_processed": len(hands),
        "frames_with_hands": sum(1 for a in hands.values() if a.hands),
        "hands_found": sum(len(a.hands) for a in hands.values()),
        "frames_dropped": int(node_status.get("dropped", 0)),
        "frames_rejected": int(node_status.get("rejected", 0)),
        "fps": (len(hands) - 1) / duration_s if duration_s > 0 else 0.0,
        "latency_ms": {
            stage: {"p50": float(node_status[f"latency_ms_{stage}_p50"]),
                    "p99": float(node_status[f"latency_ms_{stage}_p99"])}
            for stage in stages
        },
        "latency_ms_end_to_end": {
            "p50": float(np.percentile(e2e_ms, 50)) if e2e_ms else None,
            "p99": float(np.percentile(e2e_ms, 99)) if e2e_ms else None,
        },
        "ground_truth": None,
    }
    if retarget_status:
        finite = all(np.all(np.isfinite(js.position)) for js in data["joint_states"])
        summary["retargeting"] = {
            "robot": retarget_status.get("robot"),
            "joint_states": len(data["joint_states"]),
            "all_finite": bool(finite),
            "solve_ms_p50": float(retarget_status.get("solve_ms_p50", "nan")),
            "hands_skipped": int(retarget_status.get("skipped", 0)),
        }
    processed = summary["frames_processed"]
    summary["detection_rate"] = summary["frames_with_hands"] / processed if processed else 0.0
    return summary


def print_summary(summary: dict, out: Path) -> None:
    print(f"\nhand_pose_ros demo - {summary['model']} on {summary['backend']}, "
          f"{summary['hardware']}")
    print(f"  input              {summary['input']}")
    print(f"  frames             {summary['frames_published']} published, "
          f"{summary['frames_processed']} processed, {summary['frames_dropped']} dropped, "
          f"{summary['frames_rejected']} rejected")
    print(f"  hands              {summary['hands_found']} in {summary['frames_with_hands']} "
          f"frames (detection rate {100 * summary['detection_rate']:.1f} %)")
    print(f"  throughput         {summary['fps']:.1f} FPS")
    e2e = summary["latency_ms_end_to_end"]
    if e2e["p50"] is not None:
        print(f"  end-to-end latency p50 {e2e['p50']:.1f} ms, p99 {e2e['p99']:.1f} ms "
              "(image stamp -> hands received)")
    print("  per stage (ms)     p50     p99")
    for stage, value in summary["latency_ms"].items():
        print(f"    {stage:<16} {value['p50']:6.1f}  {value['p99']:6.1f}")
    if "retargeting" in summary:
        r = summary["retargeting"]
        print(f"  retargeting        {r['robot']}: {r['joint_states']} JointState commands "
              f"(all finite: {r['all_finite']}), solve p50 {r['solve_ms_p50']:.2f} ms, "
              f"{r['hands_skipped']} hands skipped")
    print("  accuracy           the bundled input has no ground truth")
    print(f"  outputs            {out}/demo_bag (MCAP), {out}/demo_annotated.mp4, "
          f"{out}/demo_summary.json")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "demo_bag", ignore_errors=True)
    config = write_graph_config(args, out)
    started = time.monotonic()
    run_graph(config)
    data = read_recording(out / "demo_bag")
    if not data["images"]:
        print("error: nothing was recorded; see the node logs above")
        return 1
    annotate(data, out / "demo_annotated.mp4")
    summary = summarise(data, config)
    summary["wall_time_s"] = time.monotonic() - started
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, out)
    return 0
