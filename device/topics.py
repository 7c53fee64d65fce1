"""The MQTT topics of a device and the payloads published on them: the one place that defines both.

`device/schemas/*.schema.json` describe exactly these payloads (JSON Schema 2020-12) for all seven labels;
`payload_schema(name, labels)` gives the schema for a chosen `[classifier] labels` subset.

    fer-edge/<device_id>/status     "online" | "offline"          retained; "offline" is also the LWT
    fer-edge/<device_id>/emotions   JSON, each processed frame with faces (rate-limited)
    fer-edge/<device_id>/dominant   "<emotion>" | "none"          retained; the smoothed main face
    fer-edge/<device_id>/stats      JSON, every stats interval
    fer-edge/<device_id>/attributes JSON, the main face's smoothed scores   retained (the emotion's attributes)
    fer-edge/<device_id>/faces      "<n>", faces tracked now               retained
    fer-edge/<device_id>/events     JSON, one per face track: new | update | end
    fer-edge/<device_id>/detection/state  "ON" | "OFF"                     retained; the detection switch
    fer-edge/<device_id>/detection/set    "ON" | "OFF"                     commands to the daemon
    homeassistant/<component>/<node_id>/<object>/config            retained Home Assistant discovery
    homeassistant/status            "online" from Home Assistant: discovery and state are published again
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

from device.contract import LABELS

ONLINE, OFFLINE, NO_FACE = "online", "offline", "none"
ON, OFF = "ON", "OFF"  # the detection switch's payloads (Home Assistant's MQTT switch defaults)
SCHEMAS = Path(__file__).resolve().parent / "schemas"


@dataclass(frozen=True)
class Topics:
    """Topic names for one device under `root` (default `fer-edge`)."""

    root: str
    device_id: str
    discovery_prefix: str = "homeassistant"

    @property
    def base(self) -> str:
        return f"{self.root}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def emotions(self) -> str:
        return f"{self.base}/emotions"

    @property
    def dominant(self) -> str:
        return f"{self.base}/dominant"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def attributes(self) -> str:
        return f"{self.base}/attributes"

    @property
    def faces(self) -> str:
        return f"{self.base}/faces"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def detection_state(self) -> str:
        return f"{self.base}/detection/state"

    @property
    def detection_set(self) -> str:
        return f"{self.base}/detection/set"

    @property
    def retained_state(self) -> tuple[str, ...]:
        """Every retained state topic (what removing the device clears)."""
        return self.status, self.dominant, self.attributes, self.faces, self.detection_state

    @property
    def node_id(self) -> str:
        """`device_id` as Home Assistant's discovery topics allow it (`[a-zA-Z0-9_-]`, others become `_`)."""
        return re.sub(r"[^a-zA-Z0-9_-]", "_", self.device_id)

    @property
    def birth(self) -> str:
        """Home Assistant's birth and last-will topic (`online` / `offline`)."""
        return f"{self.discovery_prefix}/status"

    def discovery_for(self, component: str, object_id: str) -> str:
        """The retained discovery config topic of one entity, e.g. `homeassistant/switch/<node_id>/detection/config`."""
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"

    @property
    def discovery(self) -> str:
        return self.discovery_for("sensor", "emotion")


@dataclass(frozen=True)
class FaceResult:
    """One classified face in one frame.

    `bbox` is `(x, y, w, h)` in source-frame px; `scores` are this frame's `(7,)` probabilities in
    label order; `smoothed` is the tracked face's emotion after smoothing, hysteresis and dwell, and
    `smoothed_confidence` its smoothed probability (so each label travels with its own distribution's score).
    """

    face_id: int
    bbox: tuple[int, int, int, int]
    scores: tuple[float, ...]
    smoothed: str
    smoothed_confidence: float
    smoothed_scores: tuple[float, ...] = ()  # the track's `(7,)` smoothed probabilities, label order

    @property
    def emotion(self) -> str:
        return LABELS[max(range(len(self.scores)), key=self.scores.__getitem__)]

    @property
    def confidence(self) -> float:
        return max(self.scores)


def utc_now() -> str:
    """ISO 8601 UTC timestamp with milliseconds, e.g. `2026-11-21T14:30:00.123Z`."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def emotions_payload(frame: int, faces: list[FaceResult], timestamp: str | None = None,
                     labels: tuple[str, ...] | list[str] = LABELS) -> str:
    """JSON for `emotions` (schema: `emotions.schema.json`, or `device.schemas.schema("emotions", labels)`);
    `scores` holds the chosen `labels` only (their probabilities already renormalised by the classifier)."""
    return json.dumps({
        "timestamp": timestamp or utc_now(),
        "frame": frame,
        "faces": [{
            "face_id": face.face_id,
            "bbox": [int(v) for v in face.bbox],
            "emotion": face.emotion,
            "confidence": round(float(face.confidence), 4),
            "smoothed_emotion": face.smoothed,
            "smoothed_confidence": round(float(face.smoothed_confidence), 4),
            "scores": {label: round(float(s), 4) for label, s in zip(LABELS, face.scores, strict=True)
                       if label in labels},
        } for face in faces],
    })


SOURCE_OK = {"state": "ok", "reason": None, "lost_s": None}


def stats_payload(*, fps: float, frames: int, latency_ms: dict[str, float], dropped_frames: int,
                  dropped_messages: int, dropped_faces: int, faces_per_frame: float, cpu_temp_c: float | None,
                  source: dict | None = None) -> str:
    """JSON for `stats` (schema: `stats.schema.json`); latencies are mean ms per frame and stage; `source` is
    the frame source's health (`LiveSource.health()`: state ok | lost, the reason, s since the last frame),
    `SOURCE_OK` where not given."""
    return json.dumps({
        "timestamp": utc_now(),
        "fps": round(fps, 2),
        "frames": frames,
        "latency_ms": {stage: round(ms, 2) for stage, ms in latency_ms.items()},
        "dropped_frames": dropped_frames,
        "dropped_messages": dropped_messages,
        "dropped_faces": dropped_faces,
        "faces_per_frame": round(faces_per_frame, 3),
        "cpu_temp_c": None if cpu_temp_c is None else round(cpu_temp_c, 1),
        "source": source or SOURCE_OK,
    })


def attributes_payload(face: FaceResult | None, labels: tuple[str, ...] | list[str] = LABELS) -> str:
    """JSON for `attributes` (schema: `attributes.schema.json`): the main (largest) face's smoothed emotion,
    its smoothed confidence and smoothed scores of the chosen `labels`; all null without a face."""
    if face is None:
        return json.dumps({"face_id": None, "emotion": NO_FACE, "confidence": None, "scores": None})
    return json.dumps({
        "face_id": face.face_id,
        "emotion": face.smoothed,
        "confidence": round(float(face.smoothed_confidence), 4),
        "scores": {label: round(float(s), 4) for label, s in zip(LABELS, face.smoothed_scores, strict=True)
                   if label in labels},
    })


def event_payload(kind: str, face_id: int, start_time: str, end_time: str | None, emotion: str, confidence: float,
                  emotion_seconds: dict[str, float]) -> str:
    """JSON for `events` (schema: `events.schema.json`), one face track's `new`, `update` or `end`.

    Args:
        kind: `new` (the track starts), `update` (its shown emotion changed) or `end` (the track is lost).
        start_time, end_time: ISO 8601 UTC (`utc_now()`); `end_time` is None until the `end`.
        emotion, confidence: the shown (smoothed) emotion and its smoothed probability in [0, 1].
        emotion_seconds: label -> seconds the track has shown it so far.
    """
    return json.dumps({
        "type": kind,
        "face_id": face_id,
        "start_time": start_time,
        "end_time": end_time,
        "emotion": emotion,
        "confidence": round(float(confidence), 4),
        "emotion_seconds": {label: round(seconds, 2) for label, seconds in emotion_seconds.items()},
    })


def payload_schema(name: str, labels: tuple[str, ...] | list[str] = LABELS) -> dict:
    """The JSON Schema of a topic's payload (`status`, `emotions`, `dominant`, `stats`, `attributes`, `faces`,
    `events`, `detection`) for the chosen labels:
    `device/schemas/<name>.schema.json` with every list of the seven emotions cut down to `labels`.

    Raises:
        FileNotFoundError: no schema of that name.
    """
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return _restrict(schema, tuple(labels)) if tuple(labels) != LABELS else schema


def _restrict(node, labels: tuple[str, ...]):
    if isinstance(node, list):
        if all(isinstance(item, str) for item in node) and set(LABELS) <= set(node):  # an enum or a `required`
            return [item for item in node if item not in LABELS or item in labels]
        return [_restrict(item, labels) for item in node]
    if isinstance(node, dict):
        return {key: _restrict(value, labels) for key, value in node.items()
                if not (key in LABELS and set(LABELS) <= set(node) and key not in labels)}
    return node
