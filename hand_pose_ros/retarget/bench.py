"""``hand-pose retarget-bench``: our retargeting against dex-retargeting, same frames, same robot.

Both solvers get the same keypoint sequence (synthetic, see synthetic.py: open, pinch, fist,
point, interpolated motion, a turning wrist, 2 mm noise by default), already expressed in the
robot base frame's orientation, and the same robot: dex-retargeting loads a URDF written from
our kinematic model (HandKinematics.to_urdf), with our points as links, our scale and, for
vector retargeting, the wrist->fingertip vectors of our config (dex-retargeting's usual vector
set; our solver also has finger-segment vectors). Filters are off on both sides.

dex-retargeting runs in a subprocess of another interpreter when it is not importable here:
``--peer-python``, else ``<repo>/.venv-peers/bin/python``; ``--setup-peers`` creates that venv
(torch==2.13.0 first, then dex-retargeting==0.5.0 and six).

Reported per method: median and p90 time per frame (ours: the solve, and the whole step with
checks, filter and safety gate), the fingertip-vector error (mean over frames and fingertips
of | robot (tip - wrist) - scale * human (tip - wrist) |, mm), and the thumb-index tip
distance on the pinch frames (mm).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hand_pose_ros.hand.joints import JOINT_NAMES

_REPO = Path(__file__).resolve().parents[2]
PEER_VENV = _REPO / ".venv-peers"
# dex-retargeting imports torch and six without declaring them; torch must be the local CPU build.
PEER_PACKAGES = (("torch==2.13.0",), ("dex-retargeting==0.5.0", "six"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robot", required=True, help="robot name, e.g. allegro, leap, shadow")
    parser.add_argument("--side", default="right", choices=("right", "left"))
    parser.add_argument("--methods", default="vector,dexpilot",
                        help="comma-separated: vector, dexpilot, position (position: ours only)")
    parser.add_argument("--frames", type=int, default=300, help="frames in the sequence")
    parser.add_argument("--noise", type=float, default=0.002, help="keypoint noise std, m")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keypoints", type=Path, default=None,
                        help="optional .npy (N, 21, 3) camera-frame keypoints of --side's hand "
                             "to use instead of the synthetic sequence")
    parser.add_argument("--peer-python", type=Path, default=None,
                        help="interpreter with dex-retargeting (default: this one if it has it, "
                             "else <repo>/.venv-peers/bin/python)")
    parser.add_argument("--setup-peers", action="store_true",
                        help="create <repo>/.venv-peers with dex-retargeting if it is missing")
    parser.add_argument("--no-peer", action="store_true", help="time only our retargeting")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


def setup_peer_venv(venv: Path = PEER_VENV) -> Path:
    """Create ``venv`` with dex-retargeting (torch first: dex-retargeting imports it)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for packages in PEER_PACKAGES:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python


def find_peer_python(explicit: Path | None) -> Path | None:
    """An interpreter that can import dex_retargeting, or None."""
    candidates = [explicit] if explicit else [Path(sys.executable), PEER_VENV / "bin" / "python"]
    for python in candidates:
        if python and python.exists():
            ok = subprocess.run([str(python), "-c", "import dex_retargeting.retargeting_config"],
                                capture_output=True).returncode == 0
            if ok:
                return python
    return None


def tip_vector_error(kin, q_active: np.ndarray, human: np.ndarray, scale: float,
                     tips: list[str]) -> np.ndarray:
    """(N,) mean over ``tips`` of |robot (tip - wrist) - scale * human (tip - wrist)|, metres."""
    idx = {n: i for i, n in enumerate(kin.point_names)}
    h_idx = [JOINT_NAMES.index(t) for t in tips]
    out = np.empty(len(q_active))
    for i, q in enumerate(q_active):
        p = kin.point_positions(q)
        robot = p[[idx[t] for t in tips]] - p[idx["wrist"]]
        out[i] = np.mean(np.linalg.norm(robot - scale * human[i, h_idx], axis=1))
    return out


def _pinch_distance(kin, q_active, frames) -> float:
    idx = {n: i for i, n in enumerate(kin.point_names)}
    d = [np.linalg.norm(np.subtract(*kin.point_positions(q_active[f])[
        [idx["thumb_tip"], idx["index_tip"]]])) for f in frames]
    return float(np.median(d))


def peer_config(retargeter, method: str, urdf: Path) -> dict:
    """dex-retargeting's "retargeting" dict for the same robot, points and scale as ours."""
    robot = retargeter.robot
    tips = list(robot.dexpilot.fingertips)
    cfg = {"urdf_path": str(urdf), "scaling_factor": robot.scale, "low_pass_alpha": -1,
           "target_joint_names": list(retargeter.kin.active_joint_names)}
    if method == "vector":
        cfg.update(type="vector", target_origin_link_names=["wrist"] * len(tips),
                   target_task_link_names=tips,
                   target_link_human_indices=[[0] * len(tips),
                                              [JOINT_NAMES.index(t) for t in tips]])
    elif method == "dexpilot":
        n = len(tips)
        origin = [j for i in range(1, n) for j in range(i + 1, n + 1)] + [0] * n
        task = [i for i in range(1, n) for j in range(i + 1, n + 1)] + list(range(1, n + 1))
        human = [0] + [JOINT_NAMES.index(t) for t in tips]
        cfg.update(type="dexpilot", wrist_link_name="wrist", finger_tip_link_names=tips,
                   target_link_human_indices=[[human[o] for o in origin],
                                              [human[t] for t in task]])
    else:
        raise ValueError(f"no dex-retargeting comparison for method {method!r}")
    return cfg


def run_peer(python: Path, retargeter, method: str, human: np.ndarray) -> dict:
    """Run dex-retargeting in ``python``; return its active-joint solutions and frame times."""
    with tempfile.TemporaryDirectory(prefix="retarget-bench-") as tmp:
        tmp = Path(tmp)
        urdf = tmp / f"{retargeter.robot.name}_{retargeter.robot.side}.urdf"
        urdf.write_text(retargeter.kin.to_urdf(retargeter.robot.name))
        np.save(tmp / "human.npy", human)
        job = {"config": peer_config(retargeter, method, urdf), "human": str(tmp / "human.npy"),
               "out": str(tmp / "out.npz")}
        (tmp / "job.json").write_text(json.dumps(job))
        worker = Path(__file__).with_name("peer_worker.py")
        done = subprocess.run([str(python), str(worker), str(tmp / "job.json")],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"dex-retargeting worker failed:\n{done.stderr[-3000:]}")
        out = np.load(tmp / "out.npz")
        names = [str(n) for n in out["joint_names"]]
        kin = retargeter.kin
        full = np.array(out["qpos"])[:, [names.index(n) for n in kin.joint_names]]
        return {"q": np.array([kin.to_active(q) for q in full]), "seconds": out["seconds"]}


def bench_method(robot: str, side: str, method: str, keypoints: np.ndarray,
                 pinch_frames: list[int], peer_python: Path | None) -> dict:
    from hand_pose_ros.retarget.config import RetargetConfig

    retargeter = RetargetConfig(robot=robot, side=side, method=method,
                                filter_min_cutoff=0.0).build()
    kin, scale = retargeter.kin, retargeter.robot.scale
    tips = list(retargeter.robot.dexpilot.fingertips)
    human = np.array([retargeter.human_in_base(k) for k in keypoints])

    solve_s, q_ours = [], []
    for kp in keypoints:
        tic = time.perf_counter()
        q, _ = retargeter.solve(kp)
        solve_s.append(time.perf_counter() - tic)
        q_ours.append(q)
    retargeter.reset()
    step_s = []
    for i, kp in enumerate(keypoints):
        tic = time.perf_counter()
        retargeter.step(kp, i / 30.0)
        step_s.append(time.perf_counter() - tic)
    q_ours = np.array(q_ours)
    result = {
        "ours_ms_p50": 1e3 * float(np.median(solve_s)),
        "ours_ms_p90": 1e3 * float(np.percentile(solve_s, 90)),
        "ours_step_ms_p50": 1e3 * float(np.median(step_s)),
        "ours_tip_error_mm": 1e3 * float(np.mean(tip_vector_error(kin, q_ours, human, scale,
                                                                  tips))),
        "ours_pinch_mm": 1e3 * _pinch_distance(kin, q_ours, pinch_frames),
    }
    if peer_python is not None and method != "position":
        peer = run_peer(peer_python, retargeter, method, human)
        result.update({
            "peer_ms_p50": 1e3 * float(np.median(peer["seconds"])),
            "peer_ms_p90": 1e3 * float(np.percentile(peer["seconds"], 90)),
            "peer_tip_error_mm": 1e3 * float(np.mean(tip_vector_error(kin, peer["q"], human,
                                                                      scale, tips))),
            "peer_pinch_mm": 1e3 * _pinch_distance(kin, peer["q"], pinch_frames),
        })
        result["ratio"] = result["peer_ms_p50"] / result["ours_ms_p50"]
    return result


def run(args: argparse.Namespace) -> int:
    from hand_pose_ros.hand.joints import Handedness
    from hand_pose_ros.retarget.synthetic import synthetic_sequence

    side = Handedness.RIGHT if args.side == "right" else Handedness.LEFT
    if args.keypoints is not None:
        keypoints = np.load(args.keypoints)
        pinch_frames = []
    else:
        keypoints = synthetic_sequence(args.frames, side, args.seed, args.noise)
        # The sequence holds the exact pinch pose at frame 20 (see synthetic_sequence).
        pinch_frames = [20]
    peer_python = None
    if not args.no_peer:
        peer_python = find_peer_python(args.peer_python)
        if peer_python is None and args.setup_peers:
            peer_python = setup_peer_venv()
        if peer_python is None:
            print("dex-retargeting not found: timing ours only (use --setup-peers or "
                  "--peer-python to compare)", file=sys.stderr)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    report = {"robot": args.robot, "side": args.side, "frames": len(keypoints),
              "noise_m": args.noise, "methods": {}}
    for method in methods:
        res = bench_method(args.robot, args.side, method, keypoints, pinch_frames, peer_python)
        report["methods"][method] = res
        line = (f"{args.robot} {args.side} {method:9s} ours {res['ours_ms_p50']:.3f} ms "
                f"(step {res['ours_step_ms_p50']:.3f}) err {res['ours_tip_error_mm']:.1f} mm")
        if pinch_frames:
            line += f" pinch {res['ours_pinch_mm']:.1f} mm"
        if "peer_ms_p50" in res:
            line += (f" | dex-retargeting {res['peer_ms_p50']:.3f} ms err "
                     f"{res['peer_tip_error_mm']:.1f} mm")
            if pinch_frames:
                line += f" pinch {res['peer_pinch_mm']:.1f} mm"
            line += f" | ratio {res['ratio']:.1f}x"
        print(line)
    # Top-level summary: the first method (vector by default).
    report.update({k: v for k, v in report["methods"][methods[0]].items()})
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
