"""Temporal filters for keypoints (reused by retargeting).

``OneEuroFilter`` is the 1-euro filter of Casiez, Roussel and Vogel (CHI 2012): a first-order
low-pass whose cutoff rises with speed, so slow motion is smoothed (less jitter) and fast motion
follows with little lag. It filters arrays of any shape element-wise, with timestamps in seconds.

Parameters: ``min_cutoff`` (Hz) is the cutoff at rest (lower = smoother); ``beta`` (per unit of
the signal's speed, e.g. s/m for metres) raises the cutoff with speed (higher = less lag);
``d_cutoff`` (Hz) smooths the speed estimate.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Element-wise 1-euro filter; call it with each new sample and its time stamp."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of Hz, got {value}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filtered value of sample ``x`` taken at time ``t`` (seconds).

        A first sample, a change of shape, or a time that does not move forward restarts the
        filter from ``x`` (e.g. a bag played again), so stale state never leaks into the output.
        """
        x = np.asarray(x, dtype=np.float64)
        if (self._x is None or x.shape != self._x.shape or self._t is None or t <= self._t
                or not math.isfinite(t)):
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()
