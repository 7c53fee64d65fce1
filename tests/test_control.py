"""The detection switch with real parts: the daemon on the real clip, mosquitto (with the README's ACL), real
restarts, and the state file under $STATE_DIRECTORY."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import pytest

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder
from device.control import DetectionSwitch, state_directory
from device.topics import Topics, payload_schema
from tests.conftest import CLIP, REPO
from tests.test_daemon import finish, start_daemon

TOPICS = Topics("fer-edge", "test")
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")


def open_files(pid: int) -> set[str]:
    """The files a process has open now (/proc/<pid>/fd)."""
    folder = Path(f"/proc/{pid}/fd")
    names = set()
    for fd in folder.iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            names.add(os.readlink(fd))
    return names


def publish(port: int, topic: str, payload: str, username: str | None = None, password: str | None = None,
            retain: bool = False) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if username:
        client.username_pw_set(username, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def live_daemon(tmp_path: Path, port: int, *flags: str) -> subprocess.Popen:
    return start_daemon(tmp_path, "--source", str(CLIP), "--source-loop", "true", "--source-realtime", "true",
                        "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--mqtt-stats-interval-s", "0.5", *flags)


def stop(daemon: subprocess.Popen) -> str:
    daemon.send_signal(signal.SIGTERM)
    code, output = finish(daemon, timeout=15)
    assert code == 0, output[-3000:]
    return output


@needs_mosquitto
def test_off_releases_the_camera_publishes_only_status_and_stats_and_survives_a_restart(tmp_path, clip,
                                                                                         shipped_model):
    broker = Mosquitto(tmp_path).start()
    try:
        with Recorder(broker.port, topic="#") as recorder:
            daemon = live_daemon(tmp_path, broker.port)
            recorder.wait_for("/emotions", timeout=30)
            assert recorder.wait_for("/detection/state", timeout=5).payload == "ON"
            assert str(clip.resolve()) in open_files(daemon.pid)
            publish(broker.port, TOPICS.detection_set, "OFF")
            off = recorder.wait_for("/detection/state", "OFF", timeout=2)
            assert recorder.wait_for("/dominant", "none", timeout=2).at - off.at < 2.0
            time.sleep(2.5)
            after = [m for m in recorder.on("") if m.at > off.at + 1.0]  # the loop pauses within a frame
            assert {m.topic for m in after} == {TOPICS.stats}, {m.topic for m in after}  # stats go on, 0 frames
            assert all(json.loads(m.payload)["frames"] == 0 for m in after)
            assert str(clip.resolve()) not in open_files(daemon.pid)  # the source is closed, not merely unread
            assert (tmp_path / "state" / "detection").read_text() == "OFF\n"
            output = stop(daemon)
            assert "detection off: frame source closed" in output

            # A real restart: the switch is still off, the camera is never opened; a retained command is ignored.
            publish(broker.port, TOPICS.detection_set, "ON", retain=True)
            recorder.messages.clear()
            daemon = live_daemon(tmp_path, broker.port)
            assert recorder.wait_for("/detection/state", timeout=30).payload == "OFF"
            publish(broker.port, TOPICS.detection_set, "", retain=True)  # cleared (an empty payload, also ignored)
            time.sleep(3.0)
            assert not recorder.on("/emotions") and str(clip.resolve()) not in open_files(daemon.pid)
            publish(broker.port, TOPICS.detection_set, "bogus")  # ignored, logged
            publish(broker.port, TOPICS.detection_set, "ON")
            on = recorder.wait_for("/detection/state", "ON", timeout=2)
            assert recorder.wait_for("/emotions", timeout=15).at > on.at
            output = stop(daemon)
        assert "detection off (kept in" in output and "detection/set: ignored 'bogus'" in output
        assert "detection/set: ignored a retained 'ON'" in output
        for message in recorder.messages:
            if message.topic.endswith("/detection/state"):
                assert message.qos == 1
                jsonschema.validate(message.payload, payload_schema("detection"))
            elif message.topic == TOPICS.stats:
                jsonschema.validate(json.loads(message.payload), payload_schema("stats"))
        assert (tmp_path / "state" / "detection").read_text() == "ON\n"
    finally:
        broker.stop()


def readme_acl() -> str:
    """The mosquitto ACL lines shown in the README (the block after '<!-- acl -->')."""
    match = re.search(r"<!-- acl -->\s*```text\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert match, "README has no ACL block after <!-- acl -->"
    return match.group(1)


@needs_mosquitto
def test_the_readme_acl_lets_only_home_assistant_flip_the_switch(tmp_path, clip, shipped_model):
    passwords = tmp_path / "passwords"
    for index, user in enumerate(("fer-edge", "homeassistant", "viewer")):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if index == 0 else []), str(passwords), user,
                        f"{user}-pw"], check=True)
    acl = tmp_path / "acl"
    acl.write_text(readme_acl())
    broker = Mosquitto(tmp_path, f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n").start()
    secret = tmp_path / "mqtt-password"
    secret.write_text("fer-edge-pw\n")
    secret.chmod(0o600)
    try:
        with Recorder(broker.port, username="viewer", password="viewer-pw") as viewer:
            daemon = live_daemon(tmp_path, broker.port, "--mqtt-username", "fer-edge", "--mqtt-password-file",
                                 str(secret))
            viewer.wait_for("/emotions", timeout=30)  # the viewer may read
            publish(broker.port, TOPICS.detection_set, "OFF", "viewer", "viewer-pw")
            time.sleep(1.5)
            assert [m.payload for m in viewer.on("/detection/state")] == ["ON"]  # refused by the broker
            publish(broker.port, TOPICS.detection_set, "OFF", "homeassistant", "homeassistant-pw")
            viewer.wait_for("/detection/state", "OFF", timeout=2)
            stop(daemon)
    finally:
        broker.stop()


def test_state_is_kept_in_the_state_directory_and_bad_files_fall_back_to_the_default(tmp_path, caplog):
    assert state_directory(None, {"STATE_DIRECTORY": "/var/lib/fer-edge:/var/lib/other"}) == Path("/var/lib/fer-edge")
    assert state_directory(tmp_path, {"STATE_DIRECTORY": "/var/lib/fer-edge"}) == tmp_path
    assert state_directory(None, {"XDG_STATE_HOME": "/home/pi/.state"}) == Path("/home/pi/.state/fer-edge")
    path = tmp_path / "deep" / "detection"
    switch = DetectionSwitch(path, default=True)
    seen = []
    switch.add_listener(seen.append)
    assert switch.is_on and switch.set(False, "test") and not switch.set(False)
    assert path.read_text() == "OFF\n" and seen == [False] and switch.changed.is_set()
    assert not DetectionSwitch(path, default=True).is_on  # the kept state wins over the default
    switch.command("ON ")
    assert DetectionSwitch(path, default=False).is_on
    path.write_text("maybe\n")
    assert not DetectionSwitch(path, default=False).is_on and "holds 'maybe'" in caplog.text
