"""The daemon end to end with real parts: mosquitto on 127.0.0.1, the real clip, the shipped int8 model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")
OPENSSL = shutil.which("openssl")
SCHEMAS = REPO / "device" / "schemas"


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def start_daemon(tmp_path: Path, *flags: str) -> subprocess.Popen:
    config = tmp_path / "empty.toml"
    config.touch()
    # Like systemd's StateDirectory=: the detection switch's state stays in this test's folder.
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "device", "run", "--config", str(config), "--device-id", "test",
                             *flags], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_daemon_on_the_clip_publishes_schema_valid_messages(tmp_path, broker, clip, shipped_model):
    with Recorder(broker.port) as recorder:
        daemon = start_daemon(tmp_path, "--source", str(clip), "--mqtt-host", "127.0.0.1", "--mqtt-port",
                              str(broker.port), "--mqtt-stats-interval-s", "0.2", "--service-max-frames", "150",
                              "--mqtt-emotions-max-hz", "1000")
        code, output = finish(daemon)
        recorder.wait_for("status", "offline")
    assert code == 0, output
    statuses = [m.payload for m in recorder.on("/status")]
    assert statuses[0] == "online" and statuses[-1] == "offline"
    emotions = recorder.on("/emotions")
    assert len(emotions) >= 100  # nearly every frame has her face; the rate limit is set high here
    for message in emotions:
        jsonschema.validate(json.loads(message.payload), schema("emotions"))
    faces = [face for m in emotions for face in json.loads(m.payload)["faces"]]
    assert {face["face_id"] for face in faces} == {1}  # one woman, tracked as one face
    assert recorder.on("/stats")
    for message in recorder.on("/stats"):
        jsonschema.validate(json.loads(message.payload), schema("stats"))
    for message in recorder.on("/dominant"):
        jsonschema.validate(message.payload, schema("dominant"))
    # A subscriber arriving after the run still gets the retained state.
    with Recorder(broker.port) as late:
        dominant = late.wait_for("dominant", timeout=5)
        status = late.wait_for("status", timeout=5)
    assert dominant.retain and dominant.payload == recorder.on("/dominant")[-1].payload
    assert status.retain and status.payload == "offline"


def test_a_chosen_label_set_is_what_every_message_carries(tmp_path, broker, clip, shipped_model):
    from device.topics import payload_schema

    subset = ["happy", "sad", "neutral"]
    with Recorder(broker.port, topic="#") as recorder:
        daemon = start_daemon(tmp_path, "--source", str(clip), "--mqtt-host", "127.0.0.1", "--mqtt-port",
                              str(broker.port), "--service-max-frames", "120", "--mqtt-emotions-max-hz", "1000",
                              "--classifier-labels", json.dumps(subset))
        code, output = finish(daemon)
        recorder.wait_for("status", "offline")
    assert code == 0, output
    emotions = [json.loads(m.payload) for m in recorder.on("/emotions")]
    assert len(emotions) >= 80
    for payload in emotions:
        jsonschema.validate(payload, payload_schema("emotions", subset))
        for face in payload["faces"]:
            assert list(face["scores"]) == subset and abs(sum(face["scores"].values()) - 1) < 0.01
            assert face["emotion"] in subset and face["smoothed_emotion"] in subset
    # The seven-label schema rejects these payloads (scores lack four labels): the subset schema is not vacuous.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(emotions[0], schema("emotions"))
    dominant = [m.payload for m in recorder.on("/dominant")]
    assert dominant
    for payload in dominant:
        jsonschema.validate(payload, payload_schema("dominant", subset))
    config = json.loads(recorder.wait_for("/emotion/config", timeout=5).payload)
    assert config["options"] == [*subset, "none"]


def test_home_assistant_discovery_is_retained(tmp_path, broker, clip, shipped_model):
    daemon = start_daemon(tmp_path, "--source", str(clip), "--mqtt-host", "127.0.0.1", "--mqtt-port",
                          str(broker.port), "--service-max-frames", "5")
    code, output = finish(daemon)
    assert code == 0, output
    with Recorder(broker.port, topic="homeassistant/#") as recorder:
        config = json.loads(recorder.wait_for("/emotion/config", timeout=5).payload)
    assert config["state_topic"] == "fer-edge/test/dominant"
    assert config["availability_topic"] == "fer-edge/test/status"


def test_broker_restart_mid_run_does_not_stop_processing(tmp_path, clip, shipped_model):
    broker = Mosquitto(tmp_path).start()
    try:
        with Recorder(broker.port) as before:
            daemon = start_daemon(tmp_path, "--source", str(clip), "--source-realtime", "true", "--mqtt-host",
                                  "127.0.0.1", "--mqtt-port", str(broker.port), "--mqtt-emotions-max-hz", "10")
            first = json.loads(before.wait_for("emotions").payload)["frame"]
        broker.stop()
        time.sleep(2.0)  # ~60 frames of the clip pass while the broker is down
        broker.start()
        with Recorder(broker.port) as after:
            after.wait_for("status", "online", timeout=15)  # published again on reconnect
            after.wait_for("dominant", timeout=5)
            with Recorder(broker.port) as late:  # the restarted broker holds the state again
                assert late.wait_for("dominant", timeout=5).retain
                assert late.wait_for("status", "online", timeout=5).retain
            time.sleep(1.0)
            frames = [json.loads(m.payload)["frame"] for m in after.on("/emotions")]
            daemon.send_signal(signal.SIGTERM)
            code, output = finish(daemon)
    finally:
        broker.stop()
    assert code == 0, output
    # Messages from the outage were queued and delivered, and frames went on meanwhile.
    assert min(frames) < first + 60 < max(frames), (first, frames)
    assert output.count("MQTT broker lost") == 1 and "MQTT broker back" in output


def test_sigterm_stops_within_two_seconds_and_publishes_offline(tmp_path, broker, clip, shipped_model):
    with Recorder(broker.port) as recorder:
        daemon = start_daemon(tmp_path, "--source", str(clip), "--source-loop", "true", "--source-realtime", "true",
                              "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port))
        recorder.wait_for("emotions")
        sent = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code, output = finish(daemon, timeout=10)
        stopped = time.monotonic() - sent
        offline = recorder.wait_for("status", "offline", timeout=2)
    assert code == 0, output
    assert stopped < 2.0, f"took {stopped:.2f} s"
    assert offline.at - sent < 2.0


def test_daemon_with_the_broker_down_still_processes_the_clip(tmp_path, clip, shipped_model):
    from benchmarks.broker import free_port

    daemon = start_daemon(tmp_path, "--source", str(clip), "--mqtt-host", "127.0.0.1", "--mqtt-port",
                          str(free_port()), "--service-max-frames", "100")
    code, output = finish(daemon)
    assert code == 0, output
    assert "source ended" not in output and output.count("unreachable") == 1


@pytest.mark.parametrize("flags, code, message", [
    (["--mqtt-prot", "1"], 2, "unrecognized arguments: --mqtt-prot"),
    (["--mqtt-port", "99999"], 2, "mqtt.port: Input should be less than 65536"),
    (["--tracking-smoothing-s", "-1"], 2, "tracking.smoothing_s: Input should be greater than or equal to 0"),
    (["--source", "/nonexistent/clip.mp4"], 3, "/nonexistent/clip.mp4: video file not found"),
    (["--source", "/nonexistent/folder/"], 3, "not found"),
    (["--mqtt-enabled", "true", "--mqtt-tls-ca", "/nonexistent/ca.crt"], 2, "mqtt.tls_ca: /nonexistent/ca.crt"),
    (["--leds-enabled", "true", "--leds-pins", '{"happy": 17}'], 2, "leds: "),
])
def test_bad_flags_and_sources_give_documented_exit_codes(tmp_path, flags, code, message):
    result = start_daemon(tmp_path, "--mqtt-enabled", "false", *flags)
    returncode, output = finish(result)
    assert returncode == code and message in output, output


def test_unknown_config_key_is_named_with_the_allowed_keys(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[mqtt]\nhost = "x"\nprot = 1883\n')
    result = subprocess.run([sys.executable, "-m", "device", "check-config", "--config", str(config)], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "bad.toml: mqtt.prot: unknown key; allowed: enabled, host, port" in result.stderr


def test_corrupt_model_exits_2(tmp_path, clip):
    model = tmp_path / "corrupt.tflite"
    model.write_bytes(b"TFL3 but not really a model")
    code, output = finish(start_daemon(tmp_path, "--source", str(clip), "--model", str(model),
                                       "--mqtt-enabled", "false"))
    assert code == 2 and "corrupt.tflite: not a usable TFLite model" in output


def test_corrupt_face_detector_exits_2(tmp_path, clip):
    detector = tmp_path / "face_detection_yunet_2023mar.onnx"
    detector.write_bytes(b"not the YuNet model")
    code, output = finish(start_daemon(tmp_path, "--source", str(clip), "--detector-model", str(detector),
                                       "--mqtt-enabled", "false"))
    assert code == 2 and "face_detection_yunet_2023mar.onnx: sha256" in output and "Traceback" not in output
    code, output = finish(start_daemon(tmp_path, "--source", str(clip), "--detector-model",
                                       str(tmp_path / "missing.onnx"), "--mqtt-enabled", "false"))
    assert code == 2 and "missing.onnx: YuNet model not found" in output


def test_password_authentication(tmp_path, clip, shipped_model):
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "pi", "s3cret"], check=True)
    broker = Mosquitto(tmp_path, f"allow_anonymous false\npassword_file {passwords}\n").start()
    try:
        secret = tmp_path / "mqtt-password"
        secret.write_text("s3cret\n")
        with Recorder(broker.port, username="pi", password="s3cret") as recorder:
            # The password comes from systemd's credentials directory, never from the command line.
            env_dir = tmp_path / "credentials"
            env_dir.mkdir()
            (env_dir / "mqtt-password").write_text("s3cret\n")
            os.environ["CREDENTIALS_DIRECTORY"] = str(env_dir)
            try:
                daemon = start_daemon(tmp_path, "--source", str(clip), "--mqtt-host", "127.0.0.1", "--mqtt-port",
                                      str(broker.port), "--mqtt-username", "pi", "--service-max-frames", "30")
            finally:
                del os.environ["CREDENTIALS_DIRECTORY"]
            code, output = finish(daemon)
            recorder.wait_for("status", "offline")
            assert code == 0 and recorder.on("/emotions"), output
            secret.write_text("wrong\n")
            daemon = start_daemon(tmp_path, "--source", str(clip), "--mqtt-host", "127.0.0.1", "--mqtt-port",
                                  str(broker.port), "--mqtt-username", "pi", "--mqtt-password-file", str(secret),
                                  "--service-max-frames", "30")
            code, output = finish(daemon)
            assert code == 0 and "refused the connection: Not authorized" in output, output
    finally:
        broker.stop()


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=fer-edge test CA",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
            "-extfile", "san.ext", "-out", "server.crt")
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed (apt-get install openssl)")
def test_tls(tmp_path, clip, shipped_model):
    ca, cert, key = make_tls_files(tmp_path)
    broker = Mosquitto(tmp_path, f"allow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n").start()
    try:
        with Recorder(broker.port, tls_ca=str(ca)) as recorder:
            daemon = start_daemon(tmp_path, "--source", str(clip), "--mqtt-host", "127.0.0.1", "--mqtt-port",
                                  str(broker.port), "--mqtt-tls-ca", str(ca), "--service-max-frames", "30")
            code, output = finish(daemon)
            recorder.wait_for("status", "offline")
        assert code == 0 and recorder.on("/emotions"), output
    finally:
        broker.stop()
