"""Many cameras, many devices (issue 22), with real processes on 127.0.0.1: two instances as the template unit
systemd/fer-edge@.service starts them, two `fer-edge watch --share` consumers splitting a daemon's messages, and
a site mosquitto bridged to a central one that is stopped for 30 s (systemd/mosquitto-bridge.conf)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")
TEMPLATE = REPO / "systemd" / "fer-edge@.service"


class Process:
    """A real process with its merged output read by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code, "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def processes():
    started: list[Process] = []

    def start(argv: list[str], env: dict[str, str] | None = None) -> Process:
        started.append(Process(argv, env))
        return started[-1]

    yield start
    for process in started:  # a failed assertion must not leave one running
        process.kill()


def instance_command(instance: str, config_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The ExecStart and Environment of fer-edge@<instance>.service as systemd expands them (%i the instance,
    %l the short host name; systemd.unit(5) "Specifiers"), with this checkout's fer-edge and `config_dir` in
    place of /opt/fer-edge and /etc/fer-edge."""
    host = socket.gethostname().split(".")[0]
    lines = dict(line.split("=", 1) for line in TEMPLATE.read_text().splitlines()
                 if line.startswith(("ExecStart=", "Environment=")))

    def expand(text: str) -> str:
        return text.replace("%i", instance).replace("%l", host)

    argv = shlex.split(expand(lines["ExecStart"]).replace("/etc/fer-edge/", f"{config_dir}/"))
    assert argv[0] == "/opt/fer-edge/.venv/bin/fer-edge"
    name, value = expand(lines["Environment"]).split("=", 1)
    return [sys.executable, "-m", "device", *argv[1:]], {name: value}


def test_template_instances_are_separate_processes_named_after_host_and_camera(tmp_path, broker, clip, processes,
                                                                              shipped_model):
    common = (f'[source]\nuri = "{clip}"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
              'home_assistant = false\n[service]\nmax_frames = 60\n')
    (tmp_path / "kitchen.toml").write_text(common)
    (tmp_path / "door.toml").write_text(common + 'device_id = "front-door"\n')  # a file's device_id wins
    host = socket.gethostname().split(".")[0]
    with Recorder(broker.port) as recorder:
        started = [processes(*instance_command(name, tmp_path)) for name in ("kitchen", "door")]
        results = [process.finish(timeout=90) for process in started]
        time.sleep(0.3)
    assert [code for code, _ in results] == [0, 0], results
    assert started[0].process.pid != started[1].process.pid
    devices = {m.topic.split("/")[1] for m in recorder.messages}
    assert devices == {f"{host}-kitchen", "front-door"}, devices
    for device in devices:
        statuses = [m.payload for m in recorder.on(f"{device}/status")]
        assert statuses == ["online", "offline"], (device, statuses)
        assert recorder.on(f"{device}/emotions"), device


def test_shared_watchers_split_the_messages_each_to_exactly_one(tmp_path, broker, clip, processes, shipped_model):
    watch = [sys.executable, "-m", "device", "watch", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
             "--share", "dashboards", "--topic", "fer-edge/#", "--timeout", "60"]
    with Recorder(broker.port) as everything:  # a plain subscriber: gets every message
        watchers = [processes(watch), processes(watch)]
        probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        probe.connect("127.0.0.1", broker.port)
        probe.loop_start()
        deadline = time.monotonic() + 20
        while not all(w.lines for w in watchers):  # both subscribed: the probes reach each of them in turn
            assert time.monotonic() < deadline, [w.lines for w in watchers]
            probe.publish("fer-edge/probe/x", "probe", qos=1).wait_for_publish(2)
            time.sleep(0.1)
        probe.disconnect()
        probe.loop_stop()
        config = tmp_path / "empty.toml"
        config.touch()
        daemon = processes([sys.executable, "-m", "device", "run", "--config", str(config), "--device-id", "test",
                            "--source", str(clip), "--source-realtime", "true", "--mqtt-host", "127.0.0.1",
                            "--mqtt-port", str(broker.port),
                            "--mqtt-emotions-max-hz", "30", "--mqtt-stats-interval-s", "0.5",
                            "--service-max-frames", "150"])
        code, output = daemon.finish(timeout=90)
        time.sleep(0.5)
        for watcher in watchers:
            watcher.process.send_signal(signal.SIGINT)
        outputs = [w.finish(timeout=30)[1] for w in watchers]  # slow on a loaded 2-core host
    assert code == 0, output
    sent = [f"{m.topic} {m.payload}" for m in everything.messages if "/test/" in m.topic and not m.retain]
    got = [[line.rstrip("\n") for line in out.splitlines() if line.startswith("fer-edge/test/")] for out in outputs]
    assert len(sent) > 40 and len(set(sent)) == len(sent)  # each `emotions` has its frame number: all distinct
    assert not set(got[0]) & set(got[1]), "a message reached both watchers"
    assert sorted(got[0] + got[1]) == sorted(sent), "a message reached neither watcher"
    assert got[0] and got[1], "the group did not share the load"


BRIDGE = REPO / "systemd" / "mosquitto-bridge.conf"


def persistent_broker(folder: Path, extra: str = "") -> Mosquitto:
    """mosquitto on 127.0.0.1 with persistence under `folder` (saved on SIGTERM, read at start)."""
    folder.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(folder)
    user = "user root\n" if os.geteuid() == 0 else ""
    broker.config.write_text(f"listener {broker.port} 127.0.0.1\nallow_anonymous true\n{user}persistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 0\n{extra}")
    return broker


class Consumer:
    """A central consumer: paho-mqtt MQTT 5 with a persistent session (clean_start false, session expiry 1 h),
    QoS 1, Retain As Published; subscribes once (a resumed session keeps its subscriptions)."""

    def __init__(self, port: int) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.messages: list[mqtt.MQTTMessage] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="central-consumer",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.times: list[float] = []
        self.client.on_message = lambda client, userdata, message: (self.times.append(time.monotonic()),
                                                                    self.messages.append(message))
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=properties)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscription not acknowledged"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        if not flags.session_present:  # retain as published: state the bridge sends again is marked retained
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            client.subscribe([("fer-edge/#", options), ("homeassistant/#", options)])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_site_bridge_delivers_every_qos1_message_after_30_s_without_the_central_broker(tmp_path, clip, processes,
                                                                                       shipped_model):
    central = persistent_broker(tmp_path / "central").start()
    site_config = BRIDGE.read_text().replace("address central.example.org:1883", f"address 127.0.0.1:{central.port}")
    assert f"127.0.0.1:{central.port}" in site_config
    site = persistent_broker(tmp_path / "site", site_config).start()
    consumer = Consumer(central.port)
    try:
        with Recorder(site.port) as at_site:  # what the daemon published, as the site broker got it
            config = tmp_path / "empty.toml"
            config.touch()
            daemon = processes([sys.executable, "-m", "device", "run", "--config", str(config), "--device-id", "cam",
                                "--source", str(clip), "--source-realtime", "true", "--source-loop", "true",
                                "--mqtt-host", "127.0.0.1", "--mqtt-port", str(site.port),
                                "--mqtt-qos-emotions", "1", "--mqtt-emotions-max-hz", "5"])
            deadline = time.monotonic() + 30
            while not any(m.topic.endswith("/emotions") for m in consumer.messages):
                assert time.monotonic() < deadline and daemon.process.poll() is None, "no emotions at the centre"
                time.sleep(0.1)
            central.stop()
            stopped = time.monotonic()
            time.sleep(30.0)
            during = [m for m in at_site.messages if stopped + 0.5 < m.at < time.monotonic()]
            central.start()
            restarted = time.monotonic()
            deadline = restarted + 30
            while not [m for m in at_site.on("/emotions") if m.at > restarted + 3]:
                time.sleep(0.1)
                assert time.monotonic() < deadline
            last = at_site.on("/emotions")[-1].payload
            while last not in {m.payload.decode() for m in consumer.messages} and time.monotonic() < deadline:
                time.sleep(0.1)  # the queue flushed and the stream live again
            daemon.process.send_signal(signal.SIGTERM)
            code, output = daemon.finish(timeout=20)
            time.sleep(1.0)
    finally:
        consumer.close()
        site.stop()
        central.stop()
    assert code == 0, output
    emotions_during = [m for m in during if m.topic.endswith("/emotions")]
    assert len(emotions_during) >= 50, len(emotions_during)  # up to 5 Hz for 30 s
    got: dict[tuple[str, str], list[mqtt.MQTTMessage]] = {}
    for message in consumer.messages:
        got.setdefault((message.topic, message.payload.decode()), []).append(message)
    qos1 = [m for m in during if m.topic.rsplit("/", 1)[1] in ("status", "dominant", "emotions", "events")]
    missing = [(m.topic, m.payload) for m in qos1 if (m.topic, m.payload) not in got]
    assert not missing, f"{len(missing)} of {len(qos1)} QoS 1 messages published meanwhile never arrived: {missing[:3]}"
    # The bridge sends retained state (status, dominant, discovery) again on each reconnection attempt; with
    # Retain As Published each copy says it is retained state. Anything else arrives once, or a copy says dup.
    for key, copies in got.items():
        assert sum(1 for m in copies if not (m.retain or m.dup)) <= 1, (key, [(m.retain, m.dup) for m in copies])
    assert all(m.retain for m in consumer.messages if m.topic.endswith("/status"))
    assert last in {m.payload.decode() for m in consumer.messages}, "the emotions stream did not resume"
    assert any(topic.startswith("homeassistant/") for topic, _ in got), "discovery was not bridged"


def test_share_group_and_device_id_from_the_environment_are_checked(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    watch = subprocess.run([sys.executable, "-m", "device", "watch", "--share", "a/b"], cwd=REPO, capture_output=True,
                           text=True, env=env, timeout=30, check=False)
    assert watch.returncode == 2 and "share group 'a/b' must not contain '/'" in watch.stderr, watch.stderr
    config = tmp_path / "c.toml"
    config.touch()
    check = subprocess.run([sys.executable, "-m", "device", "check-config", "--config", str(config)], cwd=REPO,
                           capture_output=True, text=True, env={**env, "FER_EDGE_DEVICE_ID": "pi/kitchen"}, timeout=30,
                           check=False)
    assert check.returncode == 2 and "Traceback" not in check.stderr, check.stderr
    assert "service.device_id: 'pi/kitchen' (from $FER_EDGE_DEVICE_ID) must not contain '/'" in check.stderr
    good = subprocess.run([sys.executable, "-m", "device", "check-config", "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, env={**env, "FER_EDGE_DEVICE_ID": "pi-kitchen"}, timeout=30,
                          check=False)
    assert good.returncode == 0 and json.loads(good.stdout)["service"]["device_id"] == "pi-kitchen", good.stderr
