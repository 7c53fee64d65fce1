"""`fer-edge watch`: print the messages of fer-edge devices as `topic payload` lines (like mosquitto_sub -v).

With `share`, every filter is subscribed as the MQTT 5 shared subscription `$share/<group>/<filter>` (MQTT 5.0
section 4.8.2, https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901250) with paho-mqtt's
MQTT v5 client: the broker hands each message to one subscriber of the group, so several consumers split a
fleet's messages. The broker sends no retained messages on a shared subscription.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections import Counter

import paho.mqtt.client as mqtt


def share_group_problem(group: str) -> str | None:
    """Why `group` cannot be an MQTT 5 share name (empty, or holding '/', '+' or '#'), or None where it can."""
    if not group:
        return "must not be empty"
    if any(c in group for c in "/+#"):
        return "must not contain '/', '+' or '#' (MQTT 5.0 section 4.8.2)"
    return None


def subscriptions(topic: str | list[str], share: str | None = None) -> list[str]:
    """The filters to subscribe: `topic` as given, or each as `$share/<share>/<filter>`."""
    filters = [topic] if isinstance(topic, str) else list(topic)
    return [f"$share/{share}/{name}" for name in filters] if share else filters


def watch(host: str, port: int, topic: str | list[str], count: int = 0, until: str | None = None, timeout: float = 0,
          summary: bool = False, share: str | None = None) -> int:
    """Subscribe to `topic` (one filter or a list) and print each message; stop after `count` messages, a
    message whose payload is `until`, or `timeout` s. With `summary`, print at the end how many messages
    arrived per topic (and the payloads of `status`). With `share` (a group name), subscribe as that MQTT 5
    shared-subscription group (see the module docstring). Returns 0, or 1 when the broker cannot be reached or
    nothing arrived in time; SIGINT or SIGTERM ends it as a finished watch."""
    done = threading.Event()
    received = 0
    per_topic: Counter[str] = Counter()
    status_payloads: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties):
        for name in subscriptions(topic, share):
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

    # Shared subscriptions are MQTT 5; a plain watch stays on MQTT 3.1.1, which every broker speaks.
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5 if share else mqtt.MQTTv311)
    client.on_connect, client.on_message = on_connect, on_message
    try:
        client.connect(host, port)
    except OSError as err:
        print(f"cannot reach MQTT broker {host}:{port}: {err}", file=sys.stderr)
        return 1
    client.loop_start()
    if threading.current_thread() is threading.main_thread():
        # SIGINT (Ctrl-C) and SIGTERM end the watch cleanly, with its summary; set here because a shell starts
        # background jobs with SIGINT ignored, and Python then raises no KeyboardInterrupt.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: done.set())
    finished = done.wait(timeout or None)
    client.disconnect()
    client.loop_stop()
    if summary:
        print(f"== summary: {received} messages", flush=True)
        for name, n in sorted(per_topic.items()):
            extra = f" ({' -> '.join(status_payloads)})" if name.endswith("/status") else ""
            print(f"{n:6d}  {name}{extra}", flush=True)
    return 0 if finished or received else 1
