"""MQTT publishing with paho-mqtt 2 (CallbackAPIVersion.VERSION2): LWT, retained state, offline queue.

A broker that is down at start or goes away never blocks the frame loop: paho's network thread
reconnects with backoff (1 s doubling to 30 s), messages published meanwhile wait in a bounded
queue (the oldest dropped and counted), and on every (re)connect the subscriptions are made again and
`status` and every retained message (`dominant`, Home Assistant discovery, ...) are published again, so a
broker restarted without persistence holds them again. One log line when the broker is lost, one when it is back.

Every failure to connect is logged with its cause (refused, DNS, timeout, TLS certificate or handshake,
credentials refused, connection closed before the broker accepted it, e.g. a plain client on a TLS
listener), once per cause until a connection succeeds, so that retries never flood the log.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

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
        self._subscriptions: dict[str, int] = {}
        self.client = make_client(settings, client_id, password)
        self.client.will_set(topics.status, OFFLINE, qos=settings.qos_status, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self._failure_logged: str | None = None  # the cause last logged; reset by a successful connect
        self._refused = False  # the last CONNACK was a refusal (its disconnect needs no second log line)
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

    def subscribe(self, topic: str, callback: Callable[[str, bool], None], qos: int = 1) -> None:
        """Call `callback(payload, retained)` on paho's network thread for each message on `topic` (subscribed
        again on every reconnect). The callback must be quick; a payload that is not UTF-8 is dropped."""

        def on_message(client, userdata, message) -> None:
            try:
                payload = message.payload.decode("utf-8")
            except UnicodeDecodeError:
                log.warning("%s: ignored a payload that is not UTF-8 text", message.topic)
                return
            callback(payload, bool(message.retain))

        self.client.message_callback_add(topic, on_message)
        with self._lock:
            self._subscriptions[topic] = qos
            if self._connected:
                self.client.subscribe(topic, qos=qos)

    def republish(self) -> None:
        """Publish `online` and every retained message again (Home Assistant's birth message asks for it)."""
        with self._lock:
            if not self._connected:
                return  # the next connect publishes them all anyway
            self.client.publish(self.topics.status, ONLINE, qos=self.settings.qos_status, retain=True)
            for topic, (payload, qos) in self._retained.items():
                if topic != self.topics.status:
                    self.client.publish(topic, payload, qos=qos, retain=True)

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

    def _log_failure(self, cause: str, message: str, *args, level: int = logging.WARNING) -> None:
        """Log a connection failure once per cause: paho retries every 1-30 s, the log must not fill up."""
        if cause != self._failure_logged:
            self._failure_logged = cause
            log.log(level, message, *args)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._refused = reason_code.is_failure
        if reason_code.is_failure:
            credentials = reason_code.value in (4, 5, 0x86, 0x87)  # bad user name or password, not authorised
            hint = (f"the credentials of user {self.settings.username!r} were not accepted: check mqtt.username "
                    "and the password file; " if self.settings.username else
                    "the broker wants a user name and password (mqtt.username, mqtt.password_file); ") \
                if credentials else ""
            self._log_failure(f"refused {reason_code}", "MQTT broker %s:%d refused the connection: %s; %s"
                              "frames go on, messages are queued, retrying (logged once)", self.settings.host,
                              self.settings.port, reason_code, hint,
                              level=logging.ERROR if credentials else logging.WARNING)  # retrying will not mend it
            return
        self._failure_logged = None
        with self._lock:
            self._connected = True
            if self._lost_at is not None:
                log.info("MQTT broker back after %.1f s", time.monotonic() - self._lost_at)
                self._lost_at = None
            else:
                log.info("MQTT connected to %s:%d", self.settings.host, self.settings.port)
            for topic, qos in self._subscriptions.items():
                client.subscribe(topic, qos=qos)
            client.publish(self.topics.status, ONLINE, qos=self.settings.qos_status, retain=True)
            for topic, (payload, qos) in self._retained.items():
                if topic != self.topics.status:
                    client.publish(topic, payload, qos=qos, retain=True)
            while self._queue:
                client.publish(*self._queue.popleft())
        self.connected_event.set()

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError:` around the connect, so the cause is the exception
        # being handled (paho does not pass it).
        cause, network = describe_connect_error(sys.exc_info()[1], tls=bool(self.settings.tls or self.settings.tls_ca))
        if network and self._lost_at is not None:
            return  # "broker lost" was logged already; "back" follows
        self._log_failure(cause, "MQTT broker %s:%d %s; frames go on, messages are queued, retrying",
                          self.settings.host, self.settings.port, cause)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
            if was_connected:
                self._lost_at = time.monotonic()
        if was_connected and not self._stopping:
            log.warning("MQTT broker lost (%s); frames go on, messages are queued, reconnecting", reason_code)
        elif not was_connected and not self._stopping and not self._refused:
            # Closed before a CONNACK: a plain client on a TLS listener, a protocol error, a broker limit.
            hint = "" if self.settings.tls or self.settings.tls_ca else \
                " (is it a TLS listener? then set mqtt.tls = true and mqtt.tls_ca)"
            self._log_failure(f"closed {reason_code}", "MQTT broker %s:%d closed the connection before accepting "
                              "it (%s)%s; frames go on, messages are queued, retrying", self.settings.host,
                              self.settings.port, reason_code, hint)
        self._refused = False


def describe_connect_error(err: BaseException | None, tls: bool = False) -> tuple[str, bool]:
    """`(cause in words, whether it is a plain network fault)` for an exception raised while connecting."""
    if tls and isinstance(err, ConnectionResetError | ssl.SSLEOFError):
        # TCP connected, then the broker hung up on the ClientHello: it does not speak TLS on this port.
        return f"TLS handshake failed: the broker closed the connection ({err.strerror or err}; a plain, " \
            "non-TLS listener on this port? then set mqtt.tls = false)", False
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {err.verify_message} (check mqtt.tls_ca)", False
    if isinstance(err, ssl.SSLError):
        return f"TLS handshake failed: {err.reason or err} (a TLS listener on this port? same TLS versions?)", False
    if isinstance(err, socket.gaierror):
        return f"unreachable: host name not resolved (DNS: {err.strerror})", True
    if isinstance(err, ConnectionRefusedError):
        return "unreachable: connection refused (no broker listening on this port?)", True
    if isinstance(err, TimeoutError | socket.timeout):
        return "unreachable: timed out", True
    if isinstance(err, OSError):
        return f"unreachable: {err.strerror or err}", True
    return "unreachable", True


def make_client(settings: MqttSettings, client_id: str, password: str | None = None) -> mqtt.Client:
    """A paho client with the `[mqtt]` section's credentials and TLS set (not yet connected).

    Raises:
        device.config.ConfigError: the TLS CA, certificate or key cannot be loaded.
    """
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if settings.username:
        client.username_pw_set(settings.username, password)
    if settings.tls or settings.tls_ca:
        _check_tls_files(settings)
        try:
            client.tls_set(ca_certs=_str(settings.tls_ca), certfile=_str(settings.tls_cert),
                           keyfile=_str(settings.tls_key), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (OSError, ssl.SSLError, ValueError) as err:
            raise ConfigError(f"mqtt.tls_ca/tls_cert/tls_key: cannot load ({err})") from None
    return client


def _check_tls_files(settings: MqttSettings) -> None:
    """Name the key and the path of a TLS file that is missing or not PEM (paho's own error names neither)."""
    for key in ("tls_ca", "tls_cert", "tls_key"):
        path = getattr(settings, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"mqtt.{key}: {path}: no such file")
    if settings.tls_ca is not None:
        try:
            ssl.create_default_context(cafile=str(settings.tls_ca))
        except (ssl.SSLError, ValueError, OSError) as err:
            raise ConfigError(f"mqtt.tls_ca: {settings.tls_ca}: not a PEM CA certificate "
                              f"({getattr(err, 'reason', None) or err})") from None
    if settings.tls_cert is not None:
        try:
            ssl.create_default_context().load_cert_chain(str(settings.tls_cert), _str(settings.tls_key))
        except (ssl.SSLError, ValueError, OSError) as err:
            raise ConfigError(f"mqtt.tls_cert/tls_key: {settings.tls_cert}, {settings.tls_key}: not a PEM "
                              f"certificate and its key ({getattr(err, 'reason', None) or err})") from None


def _str(path) -> str | None:
    return None if path is None else str(path)
