"""`fer-edge watch`: print the messages of fer-edge devices as `topic payload` lines (like mosquitto_sub -v)."""

from __future__ import annotations

import sys
import threading
from collections import Counter

import paho.mqtt.client as mqtt


def watch(host: str, port: int, topic: str | list[str], count: int = 0, until: str | None = None, timeout: float = 0,
          summary: bool = False) -> int:
    """Subscribe to `topic` (one filter or a list) and print each message; stop after `count` messages, a
    message whose payload is `until`, or `timeout` s. With `summary`, print at the end how many messages
    arrived per topic (and the payloads of `status`). Returns 0, or 1 when the broker cannot be reached or
    nothing arrived in time."""
    done = threading.Event()
    received = 0
    per_topic: Counter[str] = Counter()
    status_payloads: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties):
        for name in [topic] if isinstance(topic, str) else topic:
            client.subscribe(name, qos=1)

    def on_message(client, userdata, message):
        nonlocal received
        payload = message.payload.decode(errors="replace")
        retained = " (retained)" if message.retain else ""
        print(f"{message.topic}{retained} {payload}", flush=True)
        received += 1
        per_topic[message.topic] += 1
        if message.topic.endswith("/status"):
            status_payloads.append(payload)
        if (count and received >= count) or (until is not None and payload == until and not message.retain):
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect, client.on_message = on_connect, on_message
    try:
        client.connect(host, port)
    except OSError as err:
        print(f"cannot reach MQTT broker {host}:{port}: {err}", file=sys.stderr)
        return 1
    client.loop_start()
    try:
        finished = done.wait(timeout or None)
    except KeyboardInterrupt:
        finished = True
    client.disconnect()
    client.loop_stop()
    if summary:
        print(f"== summary: {received} messages", flush=True)
        for name, n in sorted(per_topic.items()):
            extra = f" ({' -> '.join(status_payloads)})" if name.endswith("/status") else ""
            print(f"{n:6d}  {name}{extra}", flush=True)
    return 0 if finished or received else 1
