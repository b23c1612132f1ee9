"""Runs dex-retargeting on prepared keypoints; executed by ``retarget-bench`` in the peer venv.

Usage: ``<peer python> peer_worker.py JOB.json``. Imports only numpy and dex_retargeting (not
hand_pose_ros), so it runs in a venv that has dex-retargeting==0.5.0 and nothing of ours.

JOB.json: {"config": <dex-retargeting "retargeting" dict, urdf_path absolute>,
"human": <path of an .npy (N, 21, 3) array: human keypoints in the robot base frame's
orientation, wrist at the origin, metres>, "out": <path of the .npz to write>}.
The .npz holds ``qpos`` (N, dof) in ``joint_names`` order and ``seconds`` (N,), the wall time of
each ``retarget`` call.
"""

import json
import sys
import time

import numpy as np


def main(job_path: str) -> int:
    # Imported here: dex-retargeting exists only in the peer venv, and this module must still
    # import (e.g. for the package's import test) where it does not.
    from dex_retargeting.retargeting_config import RetargetingConfig

    with open(job_path) as f:
        job = json.load(f)
    config = RetargetingConfig.from_dict(dict(job["config"]))
    retargeting = config.build()
    human = np.load(job["human"])
    indices = retargeting.optimizer.target_link_human_indices
    qpos, seconds = [], []
    for frame in human:
        # The reference the dex-retargeting examples build from keypoints, per method.
        if retargeting.optimizer.retargeting_type == "POSITION":
            ref = frame[indices, :]
        else:
            ref = frame[indices[1], :] - frame[indices[0], :]
        tic = time.perf_counter()
        q = retargeting.retarget(ref)
        seconds.append(time.perf_counter() - tic)
        qpos.append(q)
    np.savez(
        job["out"],
        qpos=np.array(qpos),
        seconds=np.array(seconds),
        joint_names=np.array(retargeting.joint_names),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
