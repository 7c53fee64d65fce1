"""Per-track events: the lifecycle on the real tracker, and the daemon's `events` on the real clip via mosquitto."""

from __future__ import annotations

import datetime as dt
import json

import jsonschema
import numpy as np
import pytest

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder
from device.config import TrackingSettings
from device.contract import LABELS
from device.events import TrackEvents
from device.topics import payload_schema
from device.tracking import FaceTracker
from tests.conftest import CLIP
from tests.test_daemon import finish, start_daemon

HAPPY, SAD = np.eye(7, dtype=np.float32)[LABELS.index("happy")], np.eye(7, dtype=np.float32)[LABELS.index("sad")]


def test_a_track_is_new_then_updated_on_each_shown_change_then_ends_with_its_seconds():
    tracker = FaceTracker(TrackingSettings(smoothing_s=0, min_dwell_s=0, hysteresis=0.1, max_missed_s=1.0))
    events = TrackEvents(LABELS)
    box = (100, 100, 80, 80)
    got = []
    for step in range(31):  # 3 s at 10 fps: happy for 1 s, then sad
        now = step / 10
        tracker.update([box], np.stack([HAPPY if now < 1.0 else SAD]), now)
        got += [json.loads(e) for e in events.update(tracker.tracks, now)]
    for now in (3.5, 4.2):  # the face is gone: after max_missed_s the track ends
        tracker.update([], np.zeros((0, 7), np.float32), now)
        got += [json.loads(e) for e in events.update(tracker.tracks, now)]
    assert [e["type"] for e in got] == ["new", "update", "end"]
    for event in got:
        jsonschema.validate(event, payload_schema("events"))
    new, update, end = got
    assert new["emotion"] == "happy" and new["end_time"] is None and new["face_id"] == 1
    assert update["emotion"] == "sad" and update["emotion_seconds"]["happy"] == pytest.approx(1.0)
    assert end["end_time"] is not None and end["start_time"] == new["start_time"]
    assert end["emotion_seconds"]["happy"] == pytest.approx(1.0) and end["emotion_seconds"]["sad"] == pytest.approx(2.0)
    assert sum(end["emotion_seconds"].values()) == pytest.approx(3.0)  # first to last frame that saw it
    assert events.open_tracks == 0 and events.end_all() == []


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")
def test_the_daemon_publishes_schema_valid_events_with_qos_1(tmp_path, shipped_model):
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found (the test clip lives in ../shared/media)")
    broker = Mosquitto(tmp_path).start()
    try:
        with Recorder(broker.port) as recorder:
            daemon = start_daemon(tmp_path, "--source", str(CLIP), "--mqtt-host", "127.0.0.1", "--mqtt-port",
                                  str(broker.port), "--service-max-frames", "150")
            code, output = finish(daemon)
            recorder.wait_for("status", "offline")
    finally:
        broker.stop()
    assert code == 0, output
    events = recorder.on("/events")
    assert all(m.qos == 1 and not m.retain for m in events)
    payloads = [json.loads(m.payload) for m in events]
    for payload in payloads:
        jsonschema.validate(payload, payload_schema("events"))
    # One woman, one track: it starts, may change its shown emotion, and ends when the daemon stops.
    assert payloads[0]["type"] == "new" and payloads[-1]["type"] == "end"
    assert {p["face_id"] for p in payloads} == {1} and {p["type"] for p in payloads[1:-1]} <= {"update"}
    end = payloads[-1]
    start, stop = (dt.datetime.fromisoformat(end[key]) for key in ("start_time", "end_time"))
    assert start <= stop
    # The seconds are the clip's media time between the first and the last frame that saw her (150 frames).
    assert 3.0 < sum(end["emotion_seconds"].values()) <= 150 / 29.97, end  # the clip is 29.97 fps
    shown = [p["emotion"] for p in payloads]
    assert all(a != b for a, b in zip(shown[:-1], shown[1:-1], strict=False))  # an update is a change
    faces = [m.payload for m in recorder.on("/faces")]
    assert faces[0] == "1" and faces[-1] == "0"
    for payload in faces:
        jsonschema.validate(payload, payload_schema("faces"))
    for message in recorder.on("/attributes"):
        jsonschema.validate(json.loads(message.payload), payload_schema("attributes"))


def test_the_events_and_attributes_schemas_follow_a_chosen_label_set():
    subset = ("happy", "sad", "neutral")
    events = TrackEvents(subset)
    tracker = FaceTracker(TrackingSettings())
    tracker.update([(0, 0, 50, 50)], np.stack([HAPPY]), 0.0)
    (new,) = [json.loads(e) for e in events.update(tracker.tracks, 0.0)]
    assert list(new["emotion_seconds"]) == list(subset)
    jsonschema.validate(new, payload_schema("events", subset))
    with pytest.raises(jsonschema.ValidationError):  # the seven-label schema wants all seven: not vacuous
        jsonschema.validate(new, payload_schema("events"))
    attributes = {"face_id": 1, "emotion": "sad", "confidence": 0.5, "scores": dict.fromkeys(subset, 1 / 3)}
    jsonschema.validate(attributes, payload_schema("attributes", subset))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**attributes, "emotion": "angry"}, payload_schema("attributes", subset))
