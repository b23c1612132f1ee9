"""Getting frames in and results out: image encodings, camera intrinsics, frame sources, MCAP."""
