"""A fleet against one broker: N simulated devices publishing the project's real payloads at the default rates
through the project's own publisher (`device.mqtt.MqttPublisher`, one paho client and network thread each, in
worker processes of up to 150 devices), one mosquitto on 127.0.0.1 and one subscriber on `fer-edge/#` (QoS 1).

Each device, as a daemon with a face in view at the default settings (`device/config.py` MqttSettings):
`emotions` (one face, `topics.emotions_payload`) at `emotions_max_hz` = 5 Hz, QoS 0; `stats` every
`stats_interval_s` = 10 s, QoS 0; `dominant` (retained, QoS 1) changing every 5 s; `status` on connect.
Measured per N over `--seconds` after all devices are connected: messages delivered per second (all
topics), loss of `emotions` (published but not delivered), latency publish -> delivery of `emotions` (p50/p99,
ms: the subscriber's arrival time minus the time just before `publish` was called, both CLOCK_MONOTONIC, one
clock for all processes), and the broker's CPU (utime + stime from /proc/<pid>/stat, % of one core). The
publishers and the subscriber are Python on the same machine: their cost is part of the latency, and they
compete with the broker for the cores.

    python benchmarks/fleet.py                            # N = 1, 10, 100, 500; 10 s each
    python benchmarks/fleet.py --devices 1,10 --seconds 5 --out /tmp/fleet
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/fleet.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

from benchmarks.broker import MOSQUITTO, Mosquitto  # noqa: E402
from device.config import MqttSettings  # noqa: E402
from device.contract import LABELS  # noqa: E402
from device.mqtt import MqttPublisher  # noqa: E402
from device.topics import FaceResult, Topics, emotions_payload, stats_payload  # noqa: E402

DEFAULTS = MqttSettings()
DOMINANT_EVERY_S = 5.0
CONNECT_TIMEOUT_S = 60.0
DRAIN_S = 2.0
PER_PROCESS = 150  # devices per worker process (paho's select() and its 1024 descriptors)


def broker_cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid`, s (fields 14 and 15 of /proc/<pid>/stat, proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Subscriber:
    """One paho client on `fer-edge/#`, QoS 1: the arrival time of every message, keyed by (topic, frame)."""

    def __init__(self, port: int) -> None:
        self.arrivals: dict[tuple[str, int], float] = {}
        self.count = 0
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-subscriber")
        self.client.on_connect = lambda client, *args: client.subscribe("fer-edge/#", qos=1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("fleet subscriber: subscription not acknowledged")

    def _on_message(self, client, userdata, message) -> None:
        now = time.monotonic()
        self.count += 1
        if message.topic.endswith("/emotions"):
            self.arrivals[(message.topic, json.loads(message.payload)["frame"])] = now

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _face(rng: np.random.Generator) -> FaceResult:
    scores = rng.dirichlet(np.ones(len(LABELS)))
    best = LABELS[int(np.argmax(scores))]
    return FaceResult(1, (200, 80, 120, 120), tuple(float(s) for s in scores), best, float(scores.max()))


def _stats() -> str:
    return stats_payload(fps=15.0, frames=150, latency_ms=dict.fromkeys(("read", "detect", "classify", "publish",
                                                                         "total"), 1.0),
                         dropped_frames=0, dropped_messages=0, dropped_faces=0, faces_per_frame=1.0, cpu_temp_c=None)


def _devices(port: int, first: int, count: int, total: int, seconds: float, ready, go, results) -> None:
    """A worker process: devices `first` .. `first + count - 1` of `total`; publishes from `go`'s start time
    for `seconds`, then puts `(sent, published, dropped)` on `results`. paho waits on select(), which takes
    no file descriptor above 1023, and each client holds three: hence a few processes for a large fleet."""
    rng = np.random.default_rng(first)
    settings = MqttSettings(host="127.0.0.1", port=port, home_assistant=False)
    publishers = [MqttPublisher(settings, Topics("fer-edge", f"sim{first + i:04d}")) for i in range(count)]
    for publisher in publishers:
        publisher.start()
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    connected = all(p.connected_event.wait(max(0.0, deadline - time.monotonic())) for p in publishers)
    ready.put(connected)
    started = go.get()
    sent: dict[tuple[str, int], float] = {}
    published, frame, period = 0, 0, 1.0 / DEFAULTS.emotions_max_hz
    faces = [_face(rng) for _ in range(16)]
    next_stats = started + DEFAULTS.stats_interval_s * rng.random(count)  # devices do not tick together
    next_dominant = started + DOMINANT_EVERY_S * rng.random(count)
    while started + frame * period < started + seconds:
        # One tick: every device publishes one `emotions`, spread over the tick as cameras are not in step.
        for i, publisher in enumerate(publishers):
            delay = started + frame * period + period * (first + i) / total - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            topic = publisher.topics.emotions
            sent[(topic, frame)] = time.monotonic()
            publisher.publish(topic, emotions_payload(frame, [faces[(frame + i) % len(faces)]]),
                              qos=DEFAULTS.qos_emotions)
            published += 1
            now = time.monotonic()
            if now >= next_stats[i]:
                next_stats[i] += DEFAULTS.stats_interval_s
                publisher.publish(publisher.topics.stats, _stats(), qos=0)
                published += 1
            if now >= next_dominant[i]:
                next_dominant[i] += DOMINANT_EVERY_S
                publisher.publish(publisher.topics.dominant, LABELS[(frame + i) % len(LABELS)],
                                  qos=DEFAULTS.qos_dominant, retain=True)
                published += 1
        frame += 1
    time.sleep(DRAIN_S)
    for publisher in publishers:
        publisher.stop(timeout_s=0.2)
    results.put((sent, published, sum(p.dropped for p in publishers)))


def run_fleet(devices: int, seconds: float, port: int, broker_pid: int) -> dict:
    """Connect `devices` publishers (in processes of at most `PER_PROCESS`), publish for `seconds`, measure;
    see the module docstring."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    gos = []
    subscriber = Subscriber(port)
    workers = []
    for first in range(0, devices, PER_PROCESS):
        go = context.Queue()
        count = min(PER_PROCESS, devices - first)
        workers.append(context.Process(target=_devices, args=(port, first, count, devices, seconds, ready, go,
                                                               results), daemon=True))
        gos.append(go)
        workers[-1].start()
    try:
        if not all(ready.get(timeout=CONNECT_TIMEOUT_S + 30) for _ in workers):
            raise RuntimeError(f"{devices} devices: not all connected within {CONNECT_TIMEOUT_S:.0f} s")
        time.sleep(0.5)  # the connect-time `status` messages arrive before the window
        subscriber.count = 0
        started = time.monotonic() + 0.2
        cpu_before = broker_cpu_seconds(broker_pid)
        for go in gos:
            go.put(started)
        parts = [results.get(timeout=seconds + CONNECT_TIMEOUT_S) for _ in workers]
        cpu = broker_cpu_seconds(broker_pid) - cpu_before
        elapsed = seconds
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
        subscriber.close()
    sent = {key: at for part in parts for key, at in part[0].items()}
    latencies = np.array([(subscriber.arrivals[key] - at) * 1000.0 for key, at in sent.items()
                          if key in subscriber.arrivals])
    delivered = len(latencies)
    return {"devices": devices, "processes": len(workers), "seconds": elapsed, "emotions_published": len(sent),
            "messages_published": sum(part[1] for part in parts), "emotions_delivered": delivered,
            "delivered_per_s": round(subscriber.count / elapsed, 1),  # all published in the window
            "emotions_per_s_offered": round(len(sent) / elapsed, 1),
            "loss": round(1.0 - delivered / len(sent), 5) if sent else None,
            "latency_ms_p50": round(float(np.percentile(latencies, 50)), 2) if delivered else None,
            "latency_ms_p99": round(float(np.percentile(latencies, 99)), 2) if delivered else None,
            "broker_cpu_percent": round(100.0 * cpu / (elapsed + DRAIN_S), 1),
            "publisher_queue_dropped": sum(part[2] for part in parts)}


def measure(device_counts: list[int], seconds: float) -> dict:
    """One mosquitto (restarted for each N, so that every N starts alike) and `run_fleet` for each N."""
    if MOSQUITTO is None:
        return {"skipped": "mosquitto is not installed"}
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for devices in device_counts:
            broker = Mosquitto(Path(work)).start()
            try:
                print(f"fleet: {devices} devices, {seconds:.0f} s ...", flush=True)
                rows.append(run_fleet(devices, seconds, broker.port, broker.process.pid))
            finally:
                broker.stop()
    usage = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, check=False)
    version = (usage.stdout + usage.stderr).splitlines()[0].strip()  # "mosquitto version 2.0.11"
    return {"broker": version, "subscriber_qos": 1, "rows": rows,
            "rates": {"emotions_hz": DEFAULTS.emotions_max_hz, "qos_emotions": DEFAULTS.qos_emotions,
                      "stats_interval_s": DEFAULTS.stats_interval_s, "dominant_every_s": DOMINANT_EVERY_S}}


def markdown(fleet: dict) -> list[str]:
    """The fleet table for the report."""
    if "skipped" in fleet:
        return ["", f"Fleet: not measured ({fleet['skipped']})."]
    lines = ["", f"| devices on one {fleet['broker']} | msgs/s delivered (all topics) | `emotions` offered / s | "
             "`emotions` loss | latency p50 / p99, ms | broker CPU, % of a core |", "|---|---|---|---|---|---|"]
    for row in fleet["rows"]:
        lines.append(f"| {row['devices']} | {row['delivered_per_s']:.0f} | {row['emotions_per_s_offered']:.0f} | "
                     f"{row['loss']:.2%} | {row['latency_ms_p50']:.1f} / {row['latency_ms_p99']:.1f} | "
                     f"{row['broker_cpu_percent']:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="1,10,100,500", help="comma-separated N (default 1,10,100,500)")
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing time per N, s (default 10)")
    parser.add_argument("--out", type=Path, default=None, help="write fleet.json here")
    args = parser.parse_args(argv)
    fleet = measure([int(n) for n in args.devices.split(",")], args.seconds)
    print("\n".join(markdown(fleet)))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fleet.json").write_text(json.dumps(fleet, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
