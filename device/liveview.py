"""The hand-off between the frame loop and the live view page (`device/web.py`): the latest frame, its faces
and the state, filled by the pipeline only while someone looks.

The frame loop's cost is a few attribute reads per frame while no one looks, and while someone does, at most
`max_fps` times a second, keeping a reference to the frame (no copy, no encoding). The page's thread downscales,
draws and JPEG-encodes a frame once however many viewers there are, and only the latest: a viewer that cannot
keep up gets fewer frames, never older ones. Nothing here is written to disk and nothing waits on a viewer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from device.topics import FaceResult

JPEG_QUALITY = 80  # cv2.IMWRITE_JPEG_QUALITY: a 640 px frame is about 30-60 kB
DEMAND_S = 3.0  # a state or snapshot request keeps frames coming for this long, s


@dataclass(frozen=True)
class Snapshot:
    """One frame as the pipeline handed it over: the `(H, W, 3)` uint8 BGR image (not a copy: the frame loop
    does not write to it afterwards), its faces, and the state the page shows beside it."""

    seq: int
    index: int
    at: float  # time.monotonic() when handed over, s
    image: np.ndarray
    faces: tuple[FaceResult, ...]
    dominant: str | None


class LiveView:
    """The latest frame and state for the page; thread-safe (the frame loop writes, the page's thread reads).

    Args:
        max_fps: most frames a second taken from the frame loop, Hz.
        width: frames wider than this are downscaled to it for the page, px.

    The frame loop calls `tick` for every frame (the health endpoint's frame age) and `wanted` then `offer`
    for a frame the page may show; the page calls `watch`/`unwatch` around a stream, `demand` for a single
    request, and `jpeg` for the encoded latest frame. `detection` is the detection switch's state for the
    page (None: no switch; the control module sets it), `stats` the last `stats` payload as a dict.
    """

    def __init__(self, max_fps: float, width: int) -> None:
        self.min_interval_s = 1.0 / max_fps
        self.width = width
        self.viewers = 0
        self.detection: bool | None = None  # seam for the detection switch (issue 20): None = no switch
        self.stats: dict | None = None
        self.frames = 0
        self.last_frame_at: float | None = None
        self.on_offer: Callable[[], None] | None = None  # the page's wake-up, called from the frame loop
        self._demand_until = -float("inf")
        self._last_offer = -float("inf")
        self._latest: Snapshot | None = None
        self._encoded: tuple[int, bytes] | None = None
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()

    # --- the frame loop's side: cheap, never blocks on a viewer ---
    def tick(self, now: float) -> None:
        """Count a processed frame (`now`: time.monotonic(), s)."""
        self.frames += 1
        self.last_frame_at = now

    def wanted(self, now: float) -> bool:
        """Whether the page wants this frame: someone looks and `1 / max_fps` has passed since the last one."""
        return (self.viewers > 0 or now < self._demand_until) and now - self._last_offer >= self.min_interval_s

    def offer(self, image: np.ndarray, index: int, faces: list[FaceResult], dominant: str | None,
              now: float) -> None:
        """Hand over a `(H, W, 3)` uint8 BGR frame and its faces (kept by reference: not copied, not encoded)."""
        self._last_offer = now
        with self._lock:
            seq = self._latest.seq + 1 if self._latest else 1
            self._latest = Snapshot(seq, index, now, image, tuple(faces), dominant)
        if self.on_offer is not None:
            self.on_offer()

    def clear(self) -> None:
        """Forget the last frame, its faces and its encoding (detection turned off: nothing from before is shown)."""
        with self._lock, self._encode_lock:
            self._latest = None
            self._encoded = None

    def set_stats(self, payload: str) -> None:
        """Keep the last `stats` payload (JSON text, `topics.stats_payload`) for the page."""
        self.stats = json.loads(payload)

    # --- the page's side ---
    def watch(self) -> None:
        """A stream viewer arrives (frames are handed over while any is connected)."""
        with self._lock:
            self.viewers += 1

    def unwatch(self) -> None:
        with self._lock:
            self.viewers = max(0, self.viewers - 1)

    def demand(self, now: float | None = None) -> None:
        """A single request (state, snapshot): hand over frames for the next `DEMAND_S` s."""
        self._demand_until = (time.monotonic() if now is None else now) + DEMAND_S

    @property
    def latest(self) -> Snapshot | None:
        return self._latest

    def jpeg(self) -> tuple[int, int, bytes] | None:
        """`(seq, frame index, JPEG bytes)` of the latest frame, downscaled and annotated; encoded once per
        frame whichever viewer asks first. None before the first frame."""
        snapshot = self._latest
        if snapshot is None:
            return None
        with self._encode_lock:
            if self._encoded is None or self._encoded[0] != snapshot.seq:
                self._encoded = (snapshot.seq, encode(annotate(snapshot, self.width)))
            seq, data = self._encoded
        return seq, snapshot.index, data

    def state(self, now: float | None = None) -> dict:
        """What the page shows beside the frame (the JSON state endpoint's body)."""
        now = time.monotonic() if now is None else now
        snapshot = self._latest
        return {
            "frame": snapshot.index if snapshot else None,
            "frame_age_s": None if snapshot is None else round(now - snapshot.at, 3),
            "dominant": snapshot.dominant if snapshot else None,
            "faces": [{"face_id": f.face_id, "bbox": [int(v) for v in f.bbox], "emotion": f.smoothed,
                       "confidence": round(float(f.smoothed_confidence), 4)} for f in (snapshot.faces if snapshot
                                                                                        else ())],
            "detection": None if self.detection is None else ("on" if self.detection else "off"),
            "stats": self.stats,
        }


def annotate(snapshot: Snapshot, width: int) -> np.ndarray:
    """The snapshot's image downscaled to at most `width` px wide, each face's box, track id and shown emotion
    drawn (green), as a new `(h, w, 3)` uint8 BGR array."""
    image = snapshot.image
    scale = min(1.0, width / image.shape[1])
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        out = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    else:
        out = image.copy()
    for face in snapshot.faces:
        x, y, w, h = (round(v * scale) for v in face.bbox)
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 255, 0), 2)
        label = f"#{face.face_id} {face.smoothed} {face.smoothed_confidence:.0%}"
        (text_w, text_h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        bottom = max(text_h + base + 2, y - 2)  # above the box, or at the top edge of the frame
        cv2.rectangle(out, (x, bottom - text_h - base - 2), (x + text_w + 4, bottom), (0, 0, 0), cv2.FILLED)
        cv2.putText(out, label, (x + 2, bottom - base), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1, cv2.LINE_AA)
    return out


def encode(image: np.ndarray) -> bytes:
    """JPEG bytes of a `(h, w, 3)` uint8 BGR image (quality `JPEG_QUALITY`), in memory only."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("cv2.imencode could not encode the frame as JPEG")
    return data.tobytes()
