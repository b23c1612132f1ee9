"""``hand-pose hand-bench``: accuracy and speed of the open hand model's fit and kinematics.

Fits random valid hands (random pose within the limits, shape, orientation and position) from
their 21 joints, once independently (cold) and once as a smoothly moving hand warm-started
from the previous frame; times use this thread's CPU time, so other processes do not count.
"""

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=200, help="hands to fit (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def _cpu_ms(function, repeat: int) -> float:
    """Best-of-5 mean CPU time of one call, milliseconds."""
    function()
    best = float("inf")
    for _ in range(5):
        start = time.thread_time()
        for _ in range(repeat):
            function()
        best = min(best, (time.thread_time() - start) / repeat)
    return 1000 * best


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from scipy.spatial.transform import Rotation

    from hand_pose_ros.hand.fit import HandFitter
    from hand_pose_ros.hand.model import OpenHandModel
    from hand_pose_ros.hand.poses import random_poses
    from hand_pose_ros.hand.skeleton import NUM_SHAPE

    if args.count < 2:
        raise SystemExit(f"--count must be at least 2, got {args.count}")
    torch.set_num_threads(args.threads)
    n, rng = args.count, np.random.default_rng(args.seed)
    model, fitter = OpenHandModel(), HandFitter()
    shapes = np.clip(rng.normal(scale=0.06, size=(n, NUM_SHAPE)), -0.15, 0.15)
    orient = Rotation.random(n, random_state=args.seed).as_rotvec()
    transl = rng.normal(scale=0.1, size=(n, 3)) + [0.0, 0.0, 0.5]
    random_hands = model.forward(random_poses(n, rng), shapes, orient, transl,
                                 with_vertices=False).joints
    # A moving hand: poses interpolated between random key poses, slowly turning.
    keys = random_poses(n // 10 + 1, rng)
    steps = np.linspace(0, 1, 10, endpoint=False)
    moving = np.stack([(1 - a) * keys[k] + a * keys[k + 1] for k in range(n // 10) for a in steps])
    turn = Rotation.from_rotvec(orient[0]) * Rotation.from_rotvec(
        np.linspace(0, 1, len(moving))[:, None] * [0.5, 0.3, 0.2])
    moving_hands = model.forward(moving, np.repeat(shapes[:1], len(moving), 0), turn.as_rotvec(),
                                 np.repeat(transl[:1], len(moving), 0), with_vertices=False).joints

    for label, hands, warm in (("random hands, cold", random_hands, False),
                               ("moving hand, warm start", moving_hands, True)):
        errors, worst, times, previous = [], [], [], None
        for joints in hands:
            start = time.thread_time()
            previous = fitter.fit(joints, init=previous if warm else None)
            times.append(time.thread_time() - start)
            per_joint = np.linalg.norm(previous.joints - joints, axis=1)
            errors.append(per_joint.mean())
            worst.append(per_joint.max())
        print(f"fit, {label} ({len(hands)}): mean joint error {1000 * np.mean(errors):.4f} mm "
              f"(worst hand {1000 * np.max(errors):.3f} mm, "
              f"worst joint {1000 * np.max(worst):.3f} mm); "
              f"{1000 * np.median(times):.2f} ms median, {1000 * np.mean(times):.2f} ms mean")
    fit = fitter.fit(random_hands[0])
    print(f"fit -> mesh vertices: {_cpu_ms(lambda: fitter.vertices(fit), 200):.3f} ms")
    for batch in (1, 64):
        pose = random_poses(batch, rng)
        pose32 = torch.tensor(pose, dtype=torch.float32)
        with torch.no_grad():
            timings = {
                "numpy float64": (lambda p=pose: model.forward(p, with_vertices=False),
                                  lambda p=pose: model.forward(p)),
                "torch float32": (lambda p=pose32: model.forward(p, with_vertices=False),
                                  lambda p=pose32: model.forward(p)),
            }
            for name, (joints_only, with_mesh) in timings.items():
                print(f"forward kinematics, batch {batch}, {name}: "
                      f"joints {_cpu_ms(joints_only, 50):.3f} ms, "
                      f"joints + mesh {_cpu_ms(with_mesh, 20):.3f} ms")
    return 0
