"""Per-face latency of `EmotionClassifier`, and the machine a measurement ran on (light: no daemon stages),
shared by `convert/quantize.py` (the model card), `training/train.py` (the run's config) and `benchmarks/`."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from device.classifier import EmotionClassifier


def per_face_ms(call: Callable[[], object], batch: int, iterations: int) -> list[float]:
    """Run `call` `iterations` times; ms per face of each call (`batch` faces a call)."""
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000.0 / batch)
    return samples


def classifier_latency(model: Path, faces48: np.ndarray, iterations: int = 300, threads: int = 1,
                       tta: str = "none") -> dict:
    """Median and p95 ms per face of `EmotionClassifier.predict` on one `(48, 48)` uint8 face at a time
    (`faces48[:1]`), after 20 warm-up calls, with the given TTA mode (`device.contract.TTA_MODES`).

    Raises:
        device.classifier.ModelError: the model cannot be loaded.
    """
    classifier = EmotionClassifier(model, num_threads=threads, tta=tta)
    per_face_ms(lambda: classifier.predict(faces48[:1]), 1, 20)  # warm-up
    samples = per_face_ms(lambda: classifier.predict(faces48[:1]), 1, iterations)
    return {"median_ms": statistics.median(samples), "p95_ms": float(np.percentile(samples, 95)), "threads": threads,
            "batch": 1, "iterations": iterations, "tta": tta}


def machine() -> dict:
    """The machine and library versions a measurement ran on: `cpu` (model name), `cores`, `platform`,
    `python`, `numpy`, `opencv`, `ai_edge_litert` (or "not installed")."""
    import cv2

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - tflite-runtime instead
        litert = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "opencv": cv2.__version__, "ai_edge_litert": litert}
