"""Evaluation: hand pose and mesh metrics (``metrics``)."""

from hand_pose_ros.eval.metrics import (
    auc,
    f_score,
    joint_errors,
    mpjpe,
    mrrpe,
    pa_mpjpe,
    pa_mpvpe,
    pck,
    pck_2d,
    pck_curve,
    procrustes_align,
)

__all__ = [
    "auc",
    "f_score",
    "joint_errors",
    "mpjpe",
    "mrrpe",
    "pa_mpjpe",
    "pa_mpvpe",
    "pck",
    "pck_2d",
    "pck_curve",
    "procrustes_align",
]
