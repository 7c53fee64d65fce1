"""The device as a real Home Assistant sees it: Home Assistant core (current release, `tests/home_assistant.py`)
on 127.0.0.1 against the tests' mosquitto, while the daemon runs on the real clip."""

from __future__ import annotations

import json
import re
import signal
import time

import jsonschema
import pytest

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder
from device.homeassistant import ENTITIES
from device.topics import Topics, payload_schema
from tests.conftest import CLIP, REPO
from tests.home_assistant import HomeAssistantCore, install
from tests.test_daemon import finish, start_daemon

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")
LABELS = ["happy", "sad", "surprise", "neutral"]  # a subset, in label order: the options are these and none
TOPICS = Topics("fer-edge", "test")


@pytest.fixture(scope="module")
def home_assistant_installed():
    reason = install()
    if reason:
        pytest.skip(f"Home Assistant not available: {reason}")


def readme_automation() -> str:
    """The README's example automation (the YAML block after '<!-- automation -->'), for the device `test`."""
    match = re.search(r"<!-- automation -->\s*```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert match, "README has no automation block after <!-- automation -->"
    return match.group(1).replace("fer-edge/kitchen/events", TOPICS.events)


def registry_entities(ha: HomeAssistantCore) -> dict[str, dict]:
    """unique_id -> entity registry entry of this device's entities."""
    return {entry["unique_id"]: entry for entry in ha.ws("config/entity_registry/list")
            if entry["platform"] == "mqtt" and entry["unique_id"].startswith("fer_edge_test_")}


def all_available(ha: HomeAssistantCore, entity_ids: list[str]) -> dict[str, dict] | None:
    states = {entity_id: ha.state(entity_id) for entity_id in entity_ids}
    if all(state and state["state"] != "unavailable" and not state["attributes"].get("restored")
           for state in states.values()):
        return states
    return None


def clear_retained(port: int) -> None:
    """Delete every retained message of the device (what a broker restarted without persistence has lost)."""
    from device.homeassistant import removal_topics

    with Recorder(port, topic="#") as client:
        for topic in removal_topics(TOPICS):
            client.client.publish(topic, "", qos=1, retain=True).wait_for_publish(5)
    with Recorder(port, topic="#") as late:
        time.sleep(0.5)
    # The discovery configs, `status` and the switch are published once: only the birth message brings them back
    # (`attributes`, `dominant` and `faces` come again as the frames go by).
    once = {TOPICS.discovery_for(c, o) for c, o in ENTITIES} | {TOPICS.status, TOPICS.detection_state}
    assert not once & {m.topic for m in late.messages if m.retain}, "retained messages left"


def check_entities_on_one_device(ha: HomeAssistantCore, recorder: Recorder) -> dict[str, str]:
    """Every entity exists, on one device, and is available; the emotion follows `dominant`, its attributes the
    main face's smoothed scores. Returns object_id -> entity_id."""
    entities = ha.wait(lambda: (found := registry_entities(ha)) and len(found) == len(ENTITIES) and found,
                       30, "all entities in Home Assistant's registry")
    assert len({entry["device_id"] for entry in entities.values()}) == 1
    ids = {unique_id.removeprefix("fer_edge_test_"): entry["entity_id"] for unique_id, entry in entities.items()}
    states = ha.wait(lambda: all_available(ha, list(ids.values())), 20, "every entity available")
    assert entities["fer_edge_test_fps"]["entity_category"] == "diagnostic"
    assert states[ids["emotion"]]["attributes"]["options"] == [*LABELS, "none"]
    recorder.wait_for("/dominant", timeout=10)
    shown = ha.wait(lambda: (s := ha.state(ids["emotion"])) and s["state"] in LABELS and
                    s["state"] == recorder.on("/dominant")[-1].payload and s, 10,
                    "the emotion entity showing the last `dominant`")
    assert set(shown["attributes"]["scores"]) == set(LABELS)
    assert 0 < shown["attributes"]["confidence"] <= 1
    assert ha.state(ids["occupancy"])["state"] == "on" and int(ha.state(ids["faces"])["state"]) >= 1
    ha.wait(lambda: ha.state(ids["fps"])["state"] not in ("unknown", "unavailable"), 10, "fps from stats")
    assert ha.state(ids["detection"])["state"] == "on"
    return ids


def check_privacy_switch(ha: HomeAssistantCore, recorder: Recorder, ids: dict[str, str]) -> None:
    """switch.turn_off through Home Assistant: frames stop and the emotion is `none` within 2 s; on resumes."""
    sent = time.monotonic()
    ha.call("switch", "turn_off", entity_id=ids["detection"])
    ha.wait(lambda: ha.state(ids["emotion"])["state"] == "none", 2.0, "emotion none after turn_off")
    ha.wait(lambda: ha.state(ids["detection"])["state"] == "off", 2.0, "switch off")
    assert time.monotonic() - sent < 2.5
    off_at = recorder.wait_for("/detection/state", "OFF", timeout=1).at
    time.sleep(1.5)
    late = [m.topic for m in recorder.on("") if m.at > off_at + 0.5 and m.topic.startswith("fer-edge/")]
    assert set(late) <= {TOPICS.stats, TOPICS.status, TOPICS.detection_state}, late
    assert ha.state(ids["occupancy"])["state"] == "off"
    ha.call("switch", "turn_on", entity_id=ids["detection"])
    ha.wait(lambda: ha.state(ids["detection"])["state"] == "on", 2.0, "switch on")
    ha.wait(lambda: ha.state(ids["emotion"])["state"] in LABELS, 15, "an emotion again after turn_on")


def check_readme_automation(ha: HomeAssistantCore, recorder: Recorder) -> None:
    """The README's automation fires on an `events` message of 10 s of sadness, not on a shorter one."""
    automation = ha.wait(lambda: [s["entity_id"] for s in ha.request("GET", "/api/states")
                                  if s["entity_id"].startswith("automation.")], 5, "the README automation")
    assert len(automation) == 1 and ha.state(automation[0])["state"] == "on"
    seconds = dict.fromkeys(LABELS, 0.0)
    for face_id, sad in ((41, 4.0), (42, 12.5)):
        event = {"type": "end", "face_id": face_id, "start_time": "2026-01-01T10:00:00.000Z",
                 "end_time": "2026-01-01T10:00:20.000Z", "emotion": "sad", "confidence": 0.8,
                 "emotion_seconds": {**seconds, "sad": sad}}
        jsonschema.validate(event, payload_schema("events", LABELS))
        recorder.client.publish(TOPICS.events, json.dumps(event), qos=1).wait_for_publish(5)
    notes = ha.wait(lambda: ha.ws("persistent_notification/get"), 5, "the automation's notification")
    assert [note["message"] for note in notes] == ["Face 42 in the kitchen looked sad for 10 s"]


def check_restart_without_retained(ha: HomeAssistantCore, broker: Mosquitto, recorder: Recorder,
                                   ids: dict[str, str]) -> None:
    """A Home Assistant restart against a broker without retained messages: the birth message brings all back."""
    ha.stop()
    clear_retained(broker.port)
    births = len(recorder.on(TOPICS.birth))
    ha.start()
    ha.wait(lambda: "online" in [m.payload for m in recorder.on(TOPICS.birth)[births:]], 30,
            "Home Assistant's birth message after its restart")
    ha.wait(lambda: all_available(ha, list(ids.values())), 30, "every entity back after the restart")
    assert ha.state(ids["emotion"])["attributes"]["options"] == [*LABELS, "none"]


def check_nothing_refused(ha: HomeAssistantCore, recorder: Recorder) -> None:
    """Values Home Assistant would refuse never reached the broker, nor did anything else of the device make
    Home Assistant complain (a template error, a refused config)."""
    for message in recorder.on(TOPICS.dominant):
        if message.payload != "":  # not the test's own clearing of the retained message
            jsonschema.validate(message.payload, payload_schema("dominant", LABELS))
    expected = ("Skipping pip installation", "setting up triggers for Sad for 10 s")  # --skip-pip; see below
    problems = [line for line in ha.errors(("WARNING", "ERROR", "CRITICAL"))
                if not any(text in line for text in expected)]
    assert not problems, problems


def test_home_assistant_sees_controls_and_follows_the_device(tmp_path, home_assistant_installed, shipped_model):
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found (the test clip lives in ../shared/media)")
    broker = Mosquitto(tmp_path).start()
    ha = HomeAssistantCore(tmp_path / "ha", extra_config=readme_automation())
    daemon = None
    try:
        ha.start()
        ha.onboard()
        with Recorder(broker.port, topic="#") as recorder:
            ha.add_mqtt(broker.port)
            recorder.wait_for(TOPICS.birth, "online", timeout=10)  # Home Assistant's MQTT client is connected
            # The automation's MQTT trigger could not subscribe before MQTT was set up (the warning
            # `check_nothing_refused` expects): attach it again.
            ha.call("automation", "turn_off", entity_id="all")
            ha.call("automation", "turn_on", entity_id="all")
            daemon = start_daemon(tmp_path, "--source", str(CLIP), "--source-loop", "true", "--source-realtime",
                                  "true", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                                  "--mqtt-stats-interval-s", "1", "--classifier-labels", json.dumps(LABELS))
            ids = check_entities_on_one_device(ha, recorder)
            check_privacy_switch(ha, recorder, ids)
            check_readme_automation(ha, recorder)
            check_restart_without_retained(ha, broker, recorder, ids)
            check_nothing_refused(ha, recorder)

            # The daemon stops: every entity becomes unavailable.
            daemon.send_signal(signal.SIGTERM)
            code, output = finish(daemon, timeout=15)
            daemon = None
            assert code == 0, output[-3000:]
            ha.wait(lambda: all(ha.state(entity_id)["state"] == "unavailable" for entity_id in ids.values()), 5,
                    "every entity unavailable after the daemon stopped")
    finally:
        if daemon is not None:
            daemon.kill()
            daemon.wait(timeout=10)
        ha.stop()
        broker.stop()
