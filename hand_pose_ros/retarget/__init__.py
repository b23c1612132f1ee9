"""Retargeting: human hand keypoints to robot hand joint commands (ROS-free core).

Layout, split the dex-retargeting way: ``kinematics`` (robot hand FK and Jacobians, Pinocchio),
``optimizers`` (vector / DexPilot / position objectives, bounded Levenberg-Marquardt),
``retargeter`` (per-frame state: frames, warm start, filter), ``safety`` (plausibility checks,
limits, velocity limits, hold and safe pose), ``config`` (robot YAML + options with ``build()``),
``fetch`` and ``bench`` (the ``fetch-robots`` and ``retarget-bench`` commands), ``synthetic``
(anthropometric keypoint sequences).

    from hand_pose_ros.retarget.config import RetargetConfig
    retargeter = RetargetConfig(robot="allegro", side="right", method="vector").build()
    result = retargeter.step(keypoints_21x3_in_metres, t=time.monotonic())
    result.positions  # for retargeter.joint_names
"""
