"""The benchmark's view of `device.machine`: the same latency helpers, and `machine()` with the version of
the `fer` package the benchmark compares against. New code imports `device.machine` directly."""

from __future__ import annotations

from benchmarks.fer_baseline import FER_VERSION
from device import machine as _machine
from device.machine import classifier_latency, per_face_ms

__all__ = ["classifier_latency", "machine", "per_face_ms"]


def machine() -> dict:
    """`device.machine.machine()` plus `fer_package_compared`."""
    return {**_machine.machine(), "fer_package_compared": FER_VERSION}
