"""A real mosquitto broker on 127.0.0.1 for the tests and the benchmark (daemon start-up), and a recording
MQTT subscriber (paho-mqtt 2)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    """mosquitto on 127.0.0.1:`port` with `extra_config` lines; `start`/`stop` may be repeated."""

    def __init__(self, workdir: Path, extra_config: str = "allow_anonymous true\n", port: int | None = None):
        self.port = port or free_port()
        self.config = workdir / f"mosquitto-{self.port}.conf"
        # As root, mosquitto would switch to its own user, who cannot read pytest's private tmp folders.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.config.write_text(f"listener {self.port} 127.0.0.1\npersistence false\n{user}{extra_config}")
        self.log = workdir / f"mosquitto-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=self.log.open("ab"),
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log.read_text()}") from None
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class Message:
    topic: str
    payload: str
    retain: bool
    at: float
    qos: int = 0


@dataclass
class Recorder:
    """Subscribes to `topic` and records every message, thread-safe."""

    port: int
    topic: str = "fer-edge/#"
    messages: list[Message] = field(default_factory=list)
    tls_ca: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        if self.tls_ca:
            self.client.tls_set(ca_certs=self.tls_ca)
        self.client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(Message(message.topic, message.payload.decode(), bool(message.retain),
                                         time.monotonic(), message.qos))

    def __enter__(self) -> Recorder:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscription not acknowledged"
        return self

    def __exit__(self, *exc) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, suffix: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, suffix: str, payload: str | None = None, timeout: float = 20.0) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.on(suffix):
                if payload is None or message.payload == payload:
                    return message
            time.sleep(0.02)
        raise AssertionError(f"no {suffix} {payload or ''} within {timeout} s; got {[m.topic for m in self.messages]}")
