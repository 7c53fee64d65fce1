"""The MQTT topics of a device and the payloads published on them: the one place that defines both.

`device/schemas/*.schema.json` describe exactly these payloads (JSON Schema 2020-12) for all seven labels;
`payload_schema(name, labels)` gives the schema for a chosen `[classifier] labels` subset.

    fer-edge/<device_id>/status     "online" | "offline"          retained; "offline" is also the LWT
    fer-edge/<device_id>/emotions   JSON, each processed frame with faces (rate-limited)
    fer-edge/<device_id>/dominant   "<emotion>" | "none"          retained; the smoothed main face
    fer-edge/<device_id>/stats      JSON, every stats interval
    homeassistant/sensor/<device_id>/emotion/config               retained Home Assistant discovery
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from device.contract import LABELS

ONLINE, OFFLINE, NO_FACE = "online", "offline", "none"
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
    def discovery(self) -> str:
        return f"{self.discovery_prefix}/sensor/{self.device_id}/emotion/config"


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


def discovery_payload(topics: Topics, model: str, labels: tuple[str, ...] | list[str] = LABELS,
                      configuration_url: str | None = None) -> str:
    """Home Assistant MQTT discovery for a `dominant` sensor with availability on `status`
    (https://www.home-assistant.io/integrations/sensor.mqtt/); its enum options are `labels` and `none`.
    `configuration_url`: the live view page's address (with `[web]` on), shown as the device's "Visit" link."""
    device = {"identifiers": [f"fer_edge_{topics.device_id}"], "name": f"fer-edge {topics.device_id}",
              "manufacturer": "fer-edge", "model": model}
    if configuration_url:
        device["configuration_url"] = configuration_url
    return json.dumps({
        "name": "Emotion",
        "unique_id": f"fer_edge_{topics.device_id}_emotion",
        "state_topic": topics.dominant,
        "availability_topic": topics.status,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device_class": "enum",
        "options": [*labels, NO_FACE],
        "icon": "mdi:emoticon-outline",
        "device": device,
    })


def payload_schema(name: str, labels: tuple[str, ...] | list[str] = LABELS) -> dict:
    """The JSON Schema of a topic's payload (`status`, `emotions`, `dominant`, `stats`) for the chosen labels:
    `device/schemas/<name>.schema.json` with every list of the seven emotions cut down to `labels`.

    Raises:
        FileNotFoundError: no schema of that name.
    """
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return _restrict(schema, tuple(labels)) if tuple(labels) != LABELS else schema


def _restrict(node, labels: tuple[str, ...]):
    if isinstance(node, list):
        if set(LABELS) <= set(node):  # an enum or a `required` of the seven (maybe with "none")
            return [item for item in node if item not in LABELS or item in labels]
        return [_restrict(item, labels) for item in node]
    if isinstance(node, dict):
        return {key: _restrict(value, labels) for key, value in node.items()
                if not (key in LABELS and set(LABELS) <= set(node) and key not in labels)}
    return node
