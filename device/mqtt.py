"""MQTT publishing with paho-mqtt 2 (CallbackAPIVersion.VERSION2): LWT, retained state, offline queue.

A broker that is down at start or goes away never blocks the frame loop: paho's network thread
reconnects with backoff (1 s doubling to 30 s), messages published meanwhile wait in a bounded
queue (the oldest dropped and counted), and on every (re)connect `status` and every retained message
(`dominant`, Home Assistant discovery) are published again, so a broker restarted without
persistence holds them again. One log line when the broker is lost, one when it is back.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections import deque

import paho.mqtt.client as mqtt

from device.config import ConfigError, MqttSettings
from device.topics import OFFLINE, ONLINE, Topics

log = logging.getLogger(__name__)


class MqttPublisher:
    """Publishes a device's topics; thread-safe against paho's network thread.

    Args:
        settings: the `[mqtt]` section.
        topics: topic names of this device.
        password: the broker password (never taken from the command line; see `config.read_password`).

    Raises:
        device.config.ConfigError: the TLS CA, certificate or key cannot be loaded.
    """

    def __init__(self, settings: MqttSettings, topics: Topics, password: str | None = None) -> None:
        self.settings, self.topics = settings, topics
        self.dropped = 0
        self._lock = threading.Lock()
        self._connected = False
        self._lost_at: float | None = None
        self._queue: deque[tuple[str, str, int]] = deque(maxlen=settings.queue_size)
        self._retained: dict[str, tuple[str, int]] = {}
        self.connected_event = threading.Event()
        client_id = settings.client_id or f"fer-edge-{topics.device_id}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.will_set(topics.status, OFFLINE, qos=settings.qos_status, retain=True)
        if settings.username:
            self.client.username_pw_set(settings.username, password)
        if settings.tls or settings.tls_ca:
            try:
                self.client.tls_set(ca_certs=_str(settings.tls_ca), certfile=_str(settings.tls_cert),
                                    keyfile=_str(settings.tls_key), tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError, ValueError) as err:
                raise ConfigError(f"mqtt.tls_ca/tls_cert/tls_key: cannot load ({err})") from None
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self._unreachable_logged = False
        self._stopping = False
        self.started = False

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Connect in the background; returns at once, also when the broker is down."""
        log.info("MQTT broker %s:%d, topics under %s/", self.settings.host, self.settings.port, self.topics.base)
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        self.started = True

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> None:
        """Publish now if connected, else queue (retained messages are instead kept and re-sent on connect)."""
        with self._lock:
            if retain:
                self._retained[topic] = (payload, qos)
            if self._connected:
                info = self.client.publish(topic, payload, qos=qos, retain=retain)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    return
            if not retain:
                if len(self._queue) == self._queue.maxlen:
                    self.dropped += 1
                self._queue.append((topic, payload, qos))

    def stop(self, timeout_s: float = 1.0) -> None:
        """Publish `offline` (retained) on a clean stop, then disconnect; waits at most `timeout_s`."""
        with self._lock:
            self._stopping = True
            self._retained[self.topics.status] = (OFFLINE, self.settings.qos_status)
            info = self.client.publish(self.topics.status, OFFLINE, qos=self.settings.qos_status, retain=True) \
                if self._connected else None
        if info is not None:
            # Not delivered in time: the broker's LWT says offline instead.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=timeout_s)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s", self.settings.host, self.settings.port,
                      reason_code)
            return
        with self._lock:
            self._connected = True
            if self._lost_at is not None:
                log.info("MQTT broker back after %.1f s", time.monotonic() - self._lost_at)
                self._lost_at = None
            else:
                log.info("MQTT connected to %s:%d", self.settings.host, self.settings.port)
            client.publish(self.topics.status, ONLINE, qos=self.settings.qos_status, retain=True)
            for topic, (payload, qos) in self._retained.items():
                if topic != self.topics.status:
                    client.publish(topic, payload, qos=qos, retain=True)
            while self._queue:
                client.publish(*self._queue.popleft())
        self.connected_event.set()

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._unreachable_logged and self._lost_at is None:
            self._unreachable_logged = True
            log.warning("MQTT broker %s:%d unreachable; frames go on, messages are queued, retrying",
                        self.settings.host, self.settings.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
            if was_connected:
                self._lost_at = time.monotonic()
        if was_connected and not self._stopping:
            log.warning("MQTT broker lost (%s); frames go on, messages are queued, reconnecting", reason_code)


def _str(path) -> str | None:
    return None if path is None else str(path)
