"""Per-face latency of `EmotionClassifier`, and the machine it ran on (light: no daemon imports), so that
`convert/quantize.py` writes the same measurement into the model card as the benchmark makes."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.fer_baseline import FER_VERSION
from device.classifier import EmotionClassifier


def per_face_ms(call, batch: int, iterations: int) -> list[float]:
    """Run `call` `iterations` times; ms per face of each call (`batch` faces a call)."""
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000.0 / batch)
    return samples


def classifier_latency(model: Path, faces48: np.ndarray, iterations: int = 300, threads: int = 1) -> dict:
    """Median and p95 ms per face of `EmotionClassifier.predict` on one face at a time (for the model card)."""
    classifier = EmotionClassifier(model, num_threads=threads)
    per_face_ms(lambda: classifier.predict(faces48[:1]), 1, 20)  # warm-up
    samples = per_face_ms(lambda: classifier.predict(faces48[:1]), 1, iterations)
    return {"median_ms": statistics.median(samples), "p95_ms": float(np.percentile(samples, 95)), "threads": threads,
            "batch": 1, "iterations": iterations}


def machine() -> dict:
    """The machine and library versions a measurement ran on."""
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
            "numpy": np.__version__, "opencv": cv2.__version__, "ai_edge_litert": litert,
            "fer_package_compared": FER_VERSION}
