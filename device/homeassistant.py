"""Home Assistant: one device with several entities from MQTT discovery, its birth message, and its removal.

Every entity's config is retained on `<discovery_prefix>/<component>/<node_id>/<object>/config` and carries
availability on `status`, the device block (one device per `device_id`: model = the model card's name,
sw_version = fer-edge's version) and `origin` (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):

    sensor.emotion         `dominant`, an enum of the labels and `none`; attributes from `attributes`
    sensor.faces           `faces`, the number of faces tracked now
    binary_sensor.occupancy  `faces` > 0 (device class occupancy)
    switch.detection       `detection/set` commands, `detection/state` (the privacy switch, `device.control`)
    sensor.fps, ms_per_frame, cpu_temperature, dropped_messages   from `stats`, entity_category diagnostic

When Home Assistant (re)starts it publishes `online` on `<discovery_prefix>/status` (its birth message); the
daemon then publishes discovery and every retained state again, so a broker that lost its retained messages
still ends up holding them (https://www.home-assistant.io/integrations/mqtt/#birth-and-last-will-messages).
"""

from __future__ import annotations

import json
import logging
import time
from importlib import metadata

from device.contract import LABELS
from device.topics import NO_FACE, OFF, OFFLINE, ON, ONLINE, Topics

log = logging.getLogger(__name__)

# (component, object id) of every entity, also those a setting leaves out: removal clears them all.
ENTITIES = (("sensor", "emotion"), ("sensor", "faces"), ("binary_sensor", "occupancy"), ("switch", "detection"),
            ("sensor", "fps"), ("sensor", "ms_per_frame"), ("sensor", "cpu_temperature"),
            ("sensor", "dropped_messages"))


def project_version() -> str:
    """fer-edge's version as installed (pyproject.toml's `version`), or `unknown` when run from a bare copy."""
    try:
        return metadata.version("fer-edge")
    except metadata.PackageNotFoundError:
        return "unknown"


def discovery_messages(topics: Topics, model: str, labels: tuple[str, ...] | list[str] = LABELS, *,
                       switch: bool = True, configuration_url: str | None = None) -> dict[str, str]:
    """`{config topic: JSON}` of every entity (see the module docstring).

    Args:
        topics: the device's topics.
        model: the model card's name (`device` block `model`).
        labels: the published emotions; the emotion sensor's `options` are these and `none`.
        switch: include the detection switch (false where `mqtt.detection_commands` is off).
        configuration_url: a page of the device (e.g. a live view) shown in Home Assistant's device page.
    """
    device = {"identifiers": [f"fer_edge_{topics.node_id}"], "name": f"fer-edge {topics.device_id}",
              "manufacturer": "fer-edge", "model": model, "sw_version": project_version()}
    if configuration_url:
        device["configuration_url"] = configuration_url
    common = {"availability_topic": topics.status, "payload_available": ONLINE, "payload_not_available": OFFLINE,
              "device": device, "origin": {"name": "fer-edge", "sw_version": project_version()}}
    stats = {"state_topic": topics.stats, "entity_category": "diagnostic", "state_class": "measurement"}
    entities = {
        ("sensor", "emotion"): {
            "name": "Emotion", "state_topic": topics.dominant, "json_attributes_topic": topics.attributes,
            "device_class": "enum", "options": [*labels, NO_FACE], "icon": "mdi:emoticon-outline"},
        ("sensor", "faces"): {
            "name": "Faces in view", "state_topic": topics.faces, "state_class": "measurement",
            "unit_of_measurement": "faces", "icon": "mdi:account-multiple"},
        ("binary_sensor", "occupancy"): {
            "name": "Face in view", "state_topic": topics.faces, "device_class": "occupancy",
            "value_template": "{{ 'ON' if value | int(0) > 0 else 'OFF' }}"},
        ("switch", "detection"): {
            "name": "Detection", "command_topic": topics.detection_set, "state_topic": topics.detection_state,
            "payload_on": ON, "payload_off": OFF, "state_on": ON, "state_off": OFF, "icon": "mdi:cctv"},
        ("sensor", "fps"): {
            **stats, "name": "Frame rate", "unit_of_measurement": "fps", "icon": "mdi:speedometer",
            "value_template": "{{ value_json.fps }}"},
        ("sensor", "ms_per_frame"): {
            **stats, "name": "Time per frame", "device_class": "duration", "unit_of_measurement": "ms",
            # No frame in the interval (detection off): no time per frame, the sensor shows unknown.
            "value_template": "{{ value_json.latency_ms.total if value_json.frames > 0 else 'None' }}"},
        ("sensor", "cpu_temperature"): {
            **stats, "name": "CPU temperature", "device_class": "temperature", "unit_of_measurement": "°C",
            "value_template": "{{ value_json.cpu_temp_c if value_json.cpu_temp_c is not none else 'None' }}"},
        ("sensor", "dropped_messages"): {
            **stats, "name": "Dropped messages", "state_class": "total_increasing", "icon": "mdi:message-alert",
            "value_template": "{{ value_json.dropped_messages }}"},
    }
    if not switch:
        del entities[("switch", "detection")]
    return {topics.discovery_for(component, object_id): json.dumps(
                {**config, "unique_id": f"fer_edge_{topics.node_id}_{object_id}", **common})
            for (component, object_id), config in entities.items()}


def removal_topics(topics: Topics) -> list[str]:
    """Every retained topic the device leaves on a broker: each entity's config, then the state topics."""
    return [topics.discovery_for(component, object_id) for component, object_id in ENTITIES] + \
        list(topics.retained_state)


class HomeAssistant:
    """Announces the device through `publisher` (an `MqttPublisher`) and answers Home Assistant's birth message.

    Args:
        publisher: publishes and subscribes.
        topics: the device's topics.
        messages: `discovery_messages(...)`.
    """

    def __init__(self, publisher, topics: Topics, messages: dict[str, str]) -> None:
        self.publisher, self.topics, self.messages = publisher, topics, messages

    def announce(self) -> None:
        """Publish discovery (retained, QoS 1) and listen for the birth message."""
        for topic, payload in self.messages.items():
            self.publisher.publish(topic, payload, qos=1, retain=True)
        self.publisher.subscribe(self.topics.birth, self._on_birth, qos=1)

    def _on_birth(self, payload: str, retained: bool) -> None:
        if payload != ONLINE:
            return
        log.info("Home Assistant is online (%s): publishing discovery and state again", self.topics.birth)
        self.publisher.republish()


def remove_device(settings, password: str | None = None, timeout_s: float = 10.0) -> int:
    """Clear every retained message of this device from the broker (`fer-edge remove-ha`): the empty retained
    payload on each entity's config removes it from Home Assistant, and on each state topic deletes the state.

    Args:
        settings: a `device.config.Settings` (its `mqtt` section and `service.device_id`).
        password: the broker password (`config.read_password`).
        timeout_s: how long to wait for the broker, s.

    Returns: 0 when the broker took every message; 1 when it could not be reached in time.

    Raises:
        device.config.ConfigError: the TLS files cannot be loaded.
    """
    from device.mqtt import make_client  # paho only where the command runs

    mqtt = settings.mqtt
    topics = Topics(mqtt.topic_root, settings.service.device_id, mqtt.discovery_prefix)
    client = make_client(mqtt, f"fer-edge-{topics.device_id}-remove", password)
    status = _RetainedStatus(client, topics.status)
    broker = f"MQTT broker {mqtt.host}:{mqtt.port}"
    if not _connect(client, mqtt, broker, timeout_s):
        return 1
    try:
        client.subscribe(topics.status, qos=1)
        time.sleep(0.5)  # the retained status, if any, arrives first: a running daemon would announce it again
        if status.payload == ONLINE:
            log.warning("%s says online: stop the daemon first (systemctl disable --now fer-edge), or it "
                        "announces the device again when Home Assistant or the broker restarts", topics.status)
        cleared = _clear_retained(client, removal_topics(topics), broker, timeout_s)
        if cleared is None:
            return 1
        log.info("removed %s from Home Assistant and the broker: %d retained topics cleared",
                 f"fer-edge {topics.device_id}", cleared)
        return 0
    finally:
        client.disconnect()
        client.loop_stop()


class _RetainedStatus:
    """The last payload seen on the daemon's status topic (None before any), kept from paho's network thread."""

    def __init__(self, client, topic: str) -> None:
        self.payload: str | None = None
        client.message_callback_add(topic, self._on_message)

    def _on_message(self, client, userdata, message) -> None:
        self.payload = message.payload.decode(errors="replace")


def _connect(client, mqtt, broker: str, timeout_s: float) -> bool:
    """Connect and start paho's network loop; False (logged, the loop stopped) where the broker refuses,
    cannot be reached, or does not accept within `timeout_s` s."""
    import threading

    accepted = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("%s refused the connection: %s", broker, reason_code)
        else:
            accepted.set()

    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s)
    except OSError as err:
        log.error("%s: %s", broker, err)
        return False
    client.loop_start()
    if not accepted.wait(timeout_s):
        log.error("%s did not accept the connection within %.0f s", broker, timeout_s)
        client.disconnect()
        client.loop_stop()
        return False
    return True


def _clear_retained(client, topics: list[str], broker: str, timeout_s: float) -> int | None:
    """Publish the empty retained payload (QoS 1) on each of `topics`; how many the broker confirmed, or None
    (logged) where it did not confirm them all within `timeout_s` s or the connection dropped."""
    infos = [client.publish(topic, "", qos=1, retain=True) for topic in topics]
    deadline = time.monotonic() + timeout_s
    try:
        for info in infos:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
    except (RuntimeError, ValueError) as err:  # paho: the connection dropped while they were in flight
        log.error("%s: lost while removing (%s)", broker, err)
        return None
    if not all(info.is_published() for info in infos):
        log.error("%s did not confirm every removal within %.0f s", broker, timeout_s)
        return None
    return len(infos)
