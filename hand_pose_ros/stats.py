"""Running statistics of a frame pipeline: per-stage latency percentiles and event counters.

Used by the nodes for /diagnostics and by the demo summary; plain Python, no ROS.
"""

from collections import Counter, defaultdict, deque

import numpy as np


class FrameStats:
    """Latencies (ms) per stage over the last ``window`` frames, and event counters."""

    def __init__(self, window: int = 1000):
        self._latencies: defaultdict[str, deque[float]] = defaultdict(
            lambda: deque(maxlen=window)
        )
        self.counters: Counter[str] = Counter()

    def add_latencies(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self._latencies[stage].append(float(ms))

    def count(self, event: str, n: int = 1) -> None:
        self.counters[event] += n

    def percentiles(self, stage: str) -> tuple[float, float] | None:
        """(p50, p99) in ms of ``stage`` over the window, or None before its first sample."""
        samples = self._latencies.get(stage)
        if not samples:
            return None
        p50, p99 = np.percentile(np.fromiter(samples, float), [50, 99])
        return float(p50), float(p99)

    def latency_summary(self) -> dict[str, dict[str, float]]:
        """{stage: {"p50": ms, "p99": ms, "samples": n}} for every stage seen."""
        summary = {}
        for stage in sorted(self._latencies):
            p50, p99 = self.percentiles(stage)
            summary[stage] = {"p50": p50, "p99": p99, "samples": len(self._latencies[stage])}
        return summary
