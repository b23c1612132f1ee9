"""Helpers for tests that run real rclpy graphs: wait on events, never on fixed sleeps."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor


@contextmanager
def ros_context() -> Iterator[Context]:
    """An rclpy context of its own (no global state shared between tests)."""
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


def spin_until(
    executor: SingleThreadedExecutor,
    condition: Callable[[], bool],
    timeout_s: float = 20.0,
    what: str = "condition",
) -> None:
    """Spin ``executor`` until ``condition()`` holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        executor.spin_once(timeout_sec=0.05)
