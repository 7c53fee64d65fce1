"""The frame loop: source -> faces -> classifier -> tracks -> MQTT and LEDs; paused while detection is off.

Each stage is timed (ms per frame) and reported on `stats`. No image, crop or embedding leaves the
process; annotated frames are written only where the user asked for them (`annotate`,
`debug_snapshots`), and shown only on the opt-in live view page (`[web]`, `device/web.py`), in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from device.config import Settings
from device.contract import to_gray
from device.control import DetectionSwitch
from device.events import TrackEvents
from device.faces import Box, FaceDetector
from device.recognition import FaceLimit, classify_faces
from device.sources import redact_url
from device.topics import NO_FACE, FaceResult, Topics, attributes_payload, emotions_payload, stats_payload
from device.tracking import FaceTracker
from device.video import open_video_writer

log = logging.getLogger(__name__)

STAGES = ("read", "detect", "classify", "publish", "total")
CPU_TEMP = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature_c() -> float | None:
    """CPU temperature in degrees C from the kernel's thermal zone 0, where readable."""
    try:
        return int(CPU_TEMP.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


@dataclass
class _Interval:
    """Counters for one stats interval."""

    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    faces: int = 0
    ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


def draw(image: np.ndarray, boxes: list[Box], labels: list[str]) -> np.ndarray:
    """A copy of `image` with each face box and its label drawn."""
    out = image.copy()
    for (x, y, w, h), label in zip(boxes, labels, strict=True):
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 255, 0), 2)
        cv2.putText(out, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
    return out


class Pipeline:
    """Runs the frame loop until the source ends, `stop` is set, or `max_frames` is reached.

    Args:
        settings: the whole configuration (each part goes to its own stage).
        source: the frame source; None where frames are handed to `process` directly.
        detector, classifier: the stages (`classifier.predict`: `(N, 48, 48) uint8 -> (N, 7)`).
        publisher: an `MqttPublisher`, or None with MQTT off.
        leds: an `EmotionLeds`, or None.
        on_frame: called after every frame, and every 0.1 s while paused (the service sends the systemd watchdog
            from here).
        detection: the detection switch (`device.control`); None: always on.
        open_source: opens the source again when detection is turned back on (`source` may be None while off).
        live: a `device.liveview.LiveView` for the live view page, or None with the page off.
    """

    def __init__(self, settings: Settings, source, detector: FaceDetector, classifier, publisher=None, leds=None,
                 on_frame: Callable[[], None] | None = None, detection: DetectionSwitch | None = None,
                 open_source: Callable[[], object] | None = None, live=None) -> None:
        self.settings, self.source, self.detector, self.classifier = settings, source, detector, classifier
        self.publisher, self.leds, self.on_frame, self.live = publisher, leds, on_frame, live
        self.detection, self.open_source = detection, open_source
        self.events = TrackEvents(settings.classifier.labels)
        self.faces_in_view: int | None = None  # live tracks, as last published on `faces`
        self._index_base = 0  # frame indices go on counting after the source is opened again
        self.topics = Topics(settings.mqtt.topic_root, settings.service.device_id, settings.mqtt.discovery_prefix)
        self.tracker = FaceTracker(settings.tracking)
        self.face_limit = FaceLimit(settings.detector.max_faces)
        self.dominant: str | None = None
        self.frames = 0
        self._last_face_at = -float("inf")
        self._last_emotions_at = -float("inf")
        self._interval = _Interval()
        self.stage_ms_total: dict[str, float] = dict.fromkeys(STAGES, 0.0)  # since start, for benchmarks
        self._writer: cv2.VideoWriter | None = None
        self._video_size: tuple[int, int] = (0, 0)
        self._resize_logged = False

    def run(self, stop: threading.Event) -> None:
        """Process frames until the source ends or `stop` is set."""
        max_frames = self.settings.service.max_frames
        try:
            while not stop.is_set() and not (max_frames and self.frames >= max_frames):
                if self.detection is not None and (self.source is None or not self.detection.is_on):
                    self._pause(stop)  # also where detection came on before the first frame: it opens the source
                    continue
                started = time.perf_counter()
                frame = self.source.read()
                if frame is None:
                    if not stop.is_set():
                        log.info("source ended after %d frames", self.frames)
                    break
                self.process(frame.image, self._index_base + frame.index, started)
                if self.on_frame:
                    self.on_frame()
        finally:
            self._end_tracks()
            if self._writer is not None:
                self._writer.release()

    def _pause(self, stop: threading.Event) -> None:
        """Detection off: release the source, end every track, `dominant` none, LEDs paused; only `stats` go on.
        Returns when detection is on again (the source reopened) or `stop` is set."""
        if self.source is not None:
            self.source.close()
            self.source = None
            log.info("detection off: frame source closed")
        if self.live is not None:
            self.live.clear()  # the page shows no frame, face or emotion from before
        self._end_tracks()
        self._set_dominant(NO_FACE)
        if self.leds:
            self.leds.pause()
        interval = _Interval()
        while not stop.is_set() and not self.detection.is_on:
            self.detection.changed.wait(0.1)
            self.detection.changed.clear()
            if self.on_frame:
                self.on_frame()
            if time.monotonic() - interval.started >= self.settings.mqtt.stats_interval_s:
                self._publish_stats(interval)
                interval = _Interval()
        if not stop.is_set():
            self._index_base = self.frames
            self.source = self.open_source()
            log.info("detection on: frame source %s opened", redact_url(self.settings.source.uri))
        self._interval = _Interval()

    def _end_tracks(self) -> None:
        """Every open track ends (`events`), none is in view (`faces`)."""
        self.tracker.tracks = []
        for event in self.events.end_all():
            self._send(self.topics.events, event, qos=1)
        self._set_faces(0)

    def _send(self, topic: str, payload: str, qos: int, retain: bool = False) -> None:
        if self.publisher:
            self.publisher.publish(topic, payload, qos=qos, retain=retain)

    def _set_faces(self, count: int) -> None:
        if count != self.faces_in_view:
            self.faces_in_view = count
            self._send(self.topics.faces, str(count), qos=1, retain=True)

    def _set_dominant(self, dominant: str) -> None:
        if dominant == self.dominant:
            return
        self.dominant = dominant
        log.info("dominant emotion: %s", dominant)
        self._send(self.topics.dominant, dominant, qos=self.settings.mqtt.qos_dominant, retain=True)
        if dominant == NO_FACE:
            self._send(self.topics.attributes, attributes_payload(None), qos=0, retain=True)
        if self.leds:
            self.leds.show(None if dominant == NO_FACE else dominant)

    def process(self, image: np.ndarray, index: int, started: float | None = None,
                at: float | None = None) -> list[FaceResult]:
        """Detect, classify, track and publish the faces of one `(H, W, 3)` uint8 BGR frame.

        Args:
            image: the frame; index: its number from 0.
            started: `time.perf_counter()` when reading it began (for the `read` stage time).
            at: the frame's time for smoothing, s (default: `_clock`).
        """
        t_read = time.perf_counter()
        started = t_read if started is None else started
        gray = to_gray(image)
        found = self.face_limit(self.detector.detect(image, gray))
        boxes = [face.box for face in found]
        t_detect = time.perf_counter()
        probabilities = classify_faces(gray, found, self.classifier)
        t_classify = time.perf_counter()
        clock = self._clock(index) if at is None else at
        tracks = self.tracker.update(boxes, probabilities, clock)
        faces = [FaceResult(t.face_id, box, tuple(float(p) for p in probs), t.emotion, t.confidence,
                            tuple(float(p) for p in t.scores))
                 for t, box, probs in zip(tracks, boxes, probabilities, strict=True)]
        self._publish(index, faces)
        for event in self.events.update(self.tracker.tracks, clock):
            self._send(self.topics.events, event, qos=1)
        self._set_faces(len(self.tracker.tracks))
        if self.live is not None:
            self._show(image, index, faces)
        t_publish = time.perf_counter()
        self._annotate(image, boxes, [f"{f.smoothed} {f.smoothed_confidence:.0%}" for f in faces], index)
        self.frames += 1
        self._account(len(faces), {"read": t_read - started, "detect": t_detect - t_read,
                                   "classify": t_classify - t_detect, "publish": t_publish - t_classify,
                                   "total": t_publish - started})
        return faces

    def _clock(self, index: int) -> float:
        """The time that smoothing runs on, s: the media time of a file not paced in real time (index / fps),
        so a clip gives the same result however fast it is processed; the monotonic clock otherwise."""
        source = self.source
        if source is not None and not source.live and not self.settings.source.realtime and source.fps:
            return index / source.fps
        return time.monotonic()

    def _publish(self, index: int, faces: list[FaceResult]) -> None:
        now = time.monotonic()
        mqtt = self.settings.mqtt
        if faces:
            self._last_face_at = now
            main = max(faces, key=lambda f: f.bbox[2] * f.bbox[3])
            dominant = main.smoothed
        elif now - self._last_face_at >= mqtt.no_face_timeout_s:
            dominant = NO_FACE
        else:
            dominant = self.dominant  # a face may be missed for a frame or two
        if self.publisher and faces and now - self._last_emotions_at >= 1.0 / mqtt.emotions_max_hz:
            self._last_emotions_at = now
            labels = self.settings.classifier.labels
            self.publisher.publish(self.topics.emotions, emotions_payload(index, faces, labels=labels),
                                   qos=mqtt.qos_emotions)
            self.publisher.publish(self.topics.attributes, attributes_payload(main, labels), qos=0, retain=True)
        if dominant is not None:
            self._set_dominant(dominant)
        if self.leds:
            self.leds.face_seen(bool(faces))

    def idle(self) -> None:
        """Called while a live source waits for a frame (its `on_wait`): `stats` go on, with the source's health."""
        self._account(0, {})

    def _show(self, image: np.ndarray, index: int, faces: list[FaceResult]) -> None:
        """Hand the frame to the live view page, only while someone looks (a reference: no copy, no encoding)."""
        now = time.monotonic()
        self.live.tick(now)
        if self.live.wanted(now):
            self.live.offer(image, index, faces, self.dominant, now)

    def _account(self, faces: int, seconds: dict[str, float]) -> None:
        interval = self._interval
        if seconds:  # a frame; none from `idle`
            interval.frames += 1
        interval.faces += faces
        for stage, value in seconds.items():
            interval.ms[stage] += value * 1000.0
            self.stage_ms_total[stage] += value * 1000.0
        if time.monotonic() - interval.started < self.settings.mqtt.stats_interval_s:
            return
        self._publish_stats(interval)
        self._interval = _Interval()

    def _publish_stats(self, interval: _Interval) -> None:
        """`stats` for one interval; one without frames (detection off) gives 0 fps and 0 ms."""
        elapsed = time.monotonic() - interval.started
        frames = max(interval.frames, 1)
        health = getattr(self.source, "health", None)
        payload = stats_payload(
            fps=interval.frames / elapsed, frames=interval.frames,
            latency_ms={stage: total / frames for stage, total in interval.ms.items()},
            dropped_frames=self.source.dropped if self.source else 0,
            dropped_messages=self.publisher.dropped if self.publisher else 0,
            dropped_faces=self.face_limit.dropped, faces_per_frame=interval.faces / frames,
            cpu_temp_c=cpu_temperature_c(), source=health() if health else None)
        log.debug("stats %s", payload)
        if self.publisher:
            self.publisher.publish(self.topics.stats, payload, qos=0)
        if self.live is not None:
            self.live.set_stats(payload)

    def _annotate(self, image: np.ndarray, boxes: list[Box], labels: list[str], index: int) -> None:
        service = self.settings.service
        if service.annotate is None and service.debug_snapshots is None:
            return
        drawn = draw(image, boxes, labels)
        if service.annotate is not None:
            if self._writer is None:
                fps = (self.source.fps if self.source else 0) or 10.0
                self._video_size = (image.shape[1], image.shape[0])
                self._writer = open_video_writer(service.annotate, fps, self._video_size)
            if (drawn.shape[1], drawn.shape[0]) != self._video_size:
                # A video has one frame size (a folder's images may differ): fit to the first frame's.
                if not self._resize_logged:
                    self._resize_logged = True
                    log.info("annotate: frame %d is %dx%d, the video %dx%d: resizing such frames", index,
                             drawn.shape[1], drawn.shape[0], *self._video_size)
                drawn = cv2.resize(drawn, self._video_size, interpolation=cv2.INTER_AREA)
            self._writer.write(drawn)
        if service.debug_snapshots is not None and boxes:
            service.debug_snapshots.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(service.debug_snapshots / f"frame_{index:06d}.jpg"), drawn)
