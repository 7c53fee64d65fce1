"""Home Assistant discovery, the birth message and removal, against mosquitto with the daemon on the real clip.
(`tests/test_home_assistant_core.py` runs the same device against a real Home Assistant.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from benchmarks.broker import MOSQUITTO, Recorder
from device.homeassistant import ENTITIES, discovery_messages, project_version, removal_topics
from device.topics import Topics
from tests.conftest import CLIP, REPO
from tests.test_daemon import finish, start_daemon

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")
TOPICS = Topics("fer-edge", "test")


def retained(port: int, topic: str = "#", wait_s: float = 1.0) -> dict[str, str]:
    """What a new subscriber gets from the broker's retained messages."""
    with Recorder(port, topic=topic) as late:
        time.sleep(wait_s)
    return {m.topic: m.payload for m in late.messages if m.retain}


def run_daemon(tmp_path, port: int, *flags: str) -> None:
    code, output = finish(start_daemon(tmp_path, "--source", str(CLIP), "--mqtt-host", "127.0.0.1", "--mqtt-port",
                                       str(port), "--service-max-frames", "30", *flags))
    assert code == 0, output


def test_every_entity_is_announced_on_one_device_with_availability_and_origin(tmp_path, broker, clip,
                                                                              shipped_model):
    run_daemon(tmp_path, broker.port)
    configs = {topic: json.loads(payload) for topic, payload in retained(broker.port, "homeassistant/#").items()}
    assert set(configs) == {TOPICS.discovery_for(component, object_id) for component, object_id in ENTITIES}
    card = json.loads((REPO / "device" / "models" / "fer_int8.json").read_text())
    for config in configs.values():
        assert config["availability_topic"] == TOPICS.status and config["payload_not_available"] == "offline"
        assert config["device"] == {"identifiers": ["fer_edge_test"], "name": "fer-edge test", "manufacturer":
                                    "fer-edge", "model": card["name"], "sw_version": project_version()}
        assert config["origin"]["name"] == "fer-edge"
    assert project_version() != "unknown"
    assert len({config["unique_id"] for config in configs.values()}) == len(ENTITIES)
    emotion = configs[TOPICS.discovery]
    assert emotion["state_topic"] == TOPICS.dominant and emotion["json_attributes_topic"] == TOPICS.attributes
    switch = configs[TOPICS.discovery_for("switch", "detection")]
    assert (switch["command_topic"], switch["state_topic"]) == (TOPICS.detection_set, TOPICS.detection_state)
    diagnostics = [c for c in configs.values() if c.get("entity_category") == "diagnostic"]
    assert {c["state_topic"] for c in diagnostics} == {TOPICS.stats} and len(diagnostics) == 4
    # The retained state Home Assistant reads, as left by the run.
    state = retained(broker.port)
    assert state[TOPICS.status] == "offline" and state[TOPICS.detection_state] == "ON" and TOPICS.faces in state


def test_home_assistant_false_announces_nothing_and_no_commands_means_no_switch(tmp_path, broker, clip,
                                                                                shipped_model):
    run_daemon(tmp_path, broker.port, "--mqtt-home-assistant", "false")
    assert retained(broker.port, "homeassistant/#") == {}
    run_daemon(tmp_path, broker.port, "--mqtt-detection-commands", "false")
    configs = retained(broker.port, "homeassistant/#")
    assert len(configs) == len(ENTITIES) - 1 and TOPICS.discovery_for("switch", "detection") not in configs


def test_the_birth_message_brings_discovery_and_state_back_to_an_emptied_broker(tmp_path, broker, clip,
                                                                                 shipped_model):
    with Recorder(broker.port, topic="#") as recorder:
        daemon = start_daemon(tmp_path, "--source", str(CLIP), "--source-loop", "true", "--source-realtime", "true",
                              "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port))
        recorder.wait_for("/dominant", timeout=30)
        recorder.wait_for("/faces", timeout=5)
        for topic in removal_topics(TOPICS):  # what a broker restarted without persistence has lost
            recorder.client.publish(topic, "", qos=1, retain=True).wait_for_publish(5)
        # Published once, not as frames go by: only the birth message brings them back.
        once = {TOPICS.discovery_for(c, o) for c, o in ENTITIES} | {TOPICS.status, TOPICS.detection_state}
        assert not once & set(retained(broker.port, wait_s=0.5))
        recorder.client.publish(TOPICS.birth, "offline", qos=1).wait_for_publish(5)  # Home Assistant's will
        time.sleep(0.5)
        assert not once & set(retained(broker.port, wait_s=0.3))  # only `online` asks for it
        recorder.client.publish(TOPICS.birth, "online", qos=1).wait_for_publish(5)
        time.sleep(1.0)
        back = retained(broker.port)
        daemon.terminate()
        code, output = finish(daemon, timeout=15)
    assert code == 0 and "Home Assistant is online" in output, output[-2000:]
    assert set(back) >= once | {TOPICS.dominant, TOPICS.faces}
    assert back[TOPICS.status] == "online" and back[TOPICS.detection_state] == "ON"


def test_remove_ha_leaves_nothing_retained(tmp_path, broker, clip, shipped_model):
    run_daemon(tmp_path, broker.port)
    assert len(retained(broker.port)) >= len(ENTITIES) + 3
    config = tmp_path / "empty.toml"
    result = subprocess.run([sys.executable, "-m", "device", "remove-ha", "--config", str(config), "--device-id",
                             "test", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port)], cwd=REPO,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "13 retained topics cleared" in result.stderr
    assert retained(broker.port) == {}


def test_remove_ha_with_no_broker_listening_exits_1_with_the_address_and_no_traceback(tmp_path):
    with socket.socket() as probe:  # a loopback port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "empty.toml"
    config.write_text("")
    result = subprocess.run([sys.executable, "-m", "device", "remove-ha", "--config", str(config),
                             "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port)], cwd=REPO,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1, result.stderr
    assert f"MQTT broker 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_a_device_id_home_assistant_cannot_take_in_a_topic_is_made_safe():
    topics = Topics("fer-edge", "pi.kitchen")
    messages = discovery_messages(topics, "fer_int8")
    assert all(topic.startswith("homeassistant/") and "/pi_kitchen/" in topic for topic in messages)
    assert json.loads(messages[topics.discovery])["state_topic"] == "fer-edge/pi.kitchen/dominant"
    assert json.loads(messages[topics.discovery])["device"]["name"] == "fer-edge pi.kitchen"
    url = json.loads(discovery_messages(topics, "m", configuration_url="http://pi:8080/")[topics.discovery])
    assert url["device"]["configuration_url"] == "http://pi:8080/"
