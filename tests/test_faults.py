"""Faults as an operator meets them (issue 11): real processes, real files, a real mosquitto with TLS and
password files made by openssl and mosquitto_passwd, real signals. `test_readme_fault_table` runs every row of
the README's fault table; the other tests check what one row cannot (CPU, log volume, memory, retained state).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder, free_port
from device import MAX_IMAGE_PIXELS
from device import config as cfg
from tests.conftest import CLIP, REPO, SHIPPED_MODEL
from tests.test_daemon import OPENSSL, make_tls_files

needs_broker = pytest.mark.skipif(MOSQUITTO is None or OPENSSL is None,
                                  reason="mosquitto and openssl are needed (apt-get install mosquitto openssl)")
IS_ROOT = os.geteuid() == 0


class Daemon:
    """`python -m device ARGS` with its merged output read by a thread, so a test can wait for a line."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "device", *args], cwd=REPO, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline and self.process.poll() is None, \
                f"no {text!r} within {timeout} s:\n{self.output}"
            time.sleep(0.05)

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code, self.output

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def brokers(tmp_path_factory, tls_files):
    """A plain, a TLS and a password-protected mosquitto, started once for the module."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed")
    folder = tmp_path_factory.mktemp("brokers")
    ca, cert, key = tls_files
    passwords = folder / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "pi", "s3cret"], check=True)
    started = {"plain": Mosquitto(folder).start(),
               "tls": Mosquitto(folder, f"allow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n").start(),
               "auth": Mosquitto(folder, f"allow_anonymous false\npassword_file {passwords}\n").start()}
    yield started
    for broker in started.values():
        broker.stop()


def run_flags(tmp_path: Path, *flags: str) -> list[str]:
    config = tmp_path / "empty.toml"
    config.touch()
    return ["run", "--config", str(config), "--device-id", "test", *flags]


def mqtt_flags(port: int, *flags: str) -> list[str]:
    return ["--source", str(CLIP), "--source-loop", "true", "--source-realtime", "true", "--mqtt-host", "127.0.0.1",
            "--mqtt-port", str(port), "--mqtt-home-assistant", "false", *flags]


def toml(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path / name


def empty_jpg(tmp_path: Path) -> Path:
    (tmp_path / "z.jpg").touch()
    return tmp_path / "z.jpg"


def huge_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A valid grayscale PNG of `width` x `height` black pixels, about 1 MB on disk, written row by row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    squeeze = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    data = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


# Each README row: how to cause it -> (fer-edge arguments, the signal sent once the log says the row's text).
Setup = Callable[[Path, dict], tuple[list[str], signal.Signals | None]]
ROWS: dict[str, Setup] = {
    "config path is a folder": lambda t, b: (["check-config", "--config", str(t)], None),
    "config file is not UTF-8": lambda t, b: (["check-config", "--config", str(latin1(t))], None),
    "config file cannot be read (permissions)": lambda t, b: (["check-config", "--config", str(unreadable(t))], None),
    "`port = true` (a boolean where a number belongs)":
        lambda t, b: (["check-config", "--config", str(toml(t, "[mqtt]\nport = true\n"))], None),
    '`topic_root = "$SYS"` (or a leading `/`, `+`, `#`)':
        lambda t, b: (["check-config", "--config", str(toml(t, '[mqtt]\ntopic_root = "$SYS"\n'))], None),
    "`device_id` with a control character (NUL, newline)":
        lambda t, b: (["check-config", "--config", str(toml(t, '[service]\ndevice_id = "kitchen\\u0000"\n'))], None),
    "`--mqtt-password S3cret` (flags are never abbreviated)":
        lambda t, b: (run_flags(t, "--mqtt-password", "S3cret"), None),
    "`password_file` is not UTF-8": lambda t, b: (run_flags(t, "--source", str(CLIP), "--mqtt-username", "pi",
                                                            "--mqtt-password-file", str(not_utf8(t))), None),
    "`tls_ca` is not a certificate": lambda t, b: (run_flags(t, "--source", str(CLIP), "--mqtt-tls", "true",
                                                             "--mqtt-tls-ca", str(toml(t, "[x]\n"))), None),
    "model file is corrupt": lambda t, b: (run_flags(t, "--source", str(CLIP), "--mqtt-enabled", "false", "--model",
                                                     str(toml(t, "TFL3 but no model", "m.tflite"))), None),
    "`[web] listen` on any address but loopback without a password":
        lambda t, b: (run_flags(t, "--source", str(CLIP), "--mqtt-enabled", "false", "--web-enabled", "true",
                                "--web-listen", "0.0.0.0:8080"), None),
    "`[web] listen` port already in use (or not allowed by the unit)":
        lambda t, b: (run_flags(t, "--source", str(CLIP), "--mqtt-enabled", "false", "--web-enabled", "true",
                                "--web-listen", f"127.0.0.1:{held_port()}"), None),
    '`prior = "uniform"` and a model card without `train_class_frequencies`':
        lambda t, b: (run_flags(t, "--source", str(CLIP), "--mqtt-enabled", "false", "--model",
                                str(card_without_frequencies(t)), "--classifier-prior", "uniform"), None),
    "source file missing": lambda t, b: (run_flags(t, "--source", str(t / "missing.mp4"), "--mqtt-enabled", "false"),
                                         None),
    "image source with no readable image":
        lambda t, b: (run_flags(t, "--source", str(empty_jpg(t)), "--mqtt-enabled", "false"), None),
    "the same with `loop = true`": lambda t, b: (run_flags(t, "--source", str(empty_jpg(t)), "--mqtt-enabled", "false",
                                                           "--source-loop", "true", "--source-frame-timeout-s", "2"),
                                                 None),
    "`classify` of an image above 50 megapixels":
        lambda t, b: (["classify", str(huge_png(t / "huge.png", 8000, 8000)), "--config", str(toml(t, ""))], None),
    "broker down (connection refused)":
        lambda t, b: (run_flags(t, *mqtt_flags(free_port())), signal.SIGTERM),
    "host name does not resolve":
        lambda t, b: (run_flags(t, *mqtt_flags(1883), "--mqtt-host", "fer-edge-test.invalid"), signal.SIGTERM),
    "plain client on a TLS listener": lambda t, b: (run_flags(t, *mqtt_flags(b["tls"].port)), signal.SIGTERM),
    "broker certificate not signed by `tls_ca`":
        lambda t, b: (run_flags(t, *mqtt_flags(b["tls"].port, "--mqtt-tls", "true")), signal.SIGTERM),
    "wrong password": lambda t, b: (run_flags(t, *mqtt_flags(b["auth"].port, "--mqtt-username", "pi",
                                                            "--mqtt-password-file", str(toml(t, "wrong\n", "pw")))),
                                    signal.SIGTERM),
    "SIGTERM, SIGINT or SIGHUP": lambda t, b: (run_flags(t, *mqtt_flags(b["plain"].port)), signal.SIGHUP),
}


_HELD: list[socket.socket] = []  # listening sockets kept open for the rest of the session


def held_port() -> int:
    """A port on 127.0.0.1 that a socket of this process listens on (so the daemon cannot bind it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    _HELD.append(sock)
    return sock.getsockname()[1]


def card_without_frequencies(tmp_path: Path) -> Path:
    """A copy of the shipped model whose card (a model converted before the prior keys) lacks the frequencies."""
    model = tmp_path / "old" / "fer_int8.tflite"
    model.parent.mkdir()
    shutil.copy(SHIPPED_MODEL, model)
    card = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())
    card.pop("train_class_frequencies")
    model.with_suffix(".json").write_text(json.dumps(card))
    return model


def latin1(tmp_path: Path) -> Path:
    (tmp_path / "latin1.toml").write_bytes(b'[mqtt]\nhost = "k\xfcche"\n')  # as an old editor saves it
    return tmp_path / "latin1.toml"


def unreadable(tmp_path: Path) -> Path:
    path = toml(tmp_path, "[mqtt]\nport = 1883\n")
    path.chmod(0)
    return path


def not_utf8(tmp_path: Path) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_bytes(b"s3cr\xe9t\n")  # Latin-1, as an old editor saves it
    path.chmod(0o600)
    return path


def readme_fault_rows() -> list[tuple[str, str, str]]:
    """`(fault, log text, exit code)` of every row of the README's fault table."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("#### Faults", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) == 4 and cells[0] not in ("fault", "---"):
            rows.append((cells[0], cells[2].strip("`"), cells[3].split()[0]))
    return rows


def test_every_readme_fault_row_has_a_case():
    assert [fault for fault, _, _ in readme_fault_rows()] == list(ROWS)


@needs_broker
@pytest.mark.parametrize("fault, says, code", readme_fault_rows(), ids=lambda v: str(v)[:40])
def test_readme_fault_table(fault, says, code, tmp_path, brokers, daemons, shipped_model):
    if fault == "config file cannot be read (permissions)" and IS_ROOT:
        pytest.skip("running as root, who reads any file whatever its permissions")
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    args, send = ROWS[fault](tmp_path, brokers)
    daemon = daemons(*args)
    if send is not None:
        daemon.wait_for("MQTT broker" if send == signal.SIGHUP else says)
        daemon.process.send_signal(send)
    returncode, output = daemon.finish()
    assert says in output, output
    assert returncode == int(code), output
    assert "Traceback" not in output and "S3cret" not in output, output


def test_empty_image_on_a_loop_backs_off_logs_once_and_stops_on_sigterm(tmp_path, daemons, shipped_model):
    """Issue 11: 100% CPU, 170,000 log lines a second, SIGTERM ignored."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).touch()
    for source in (empty_jpg(tmp_path), folder):
        daemon = daemons(*run_flags(tmp_path, "--source", str(source), "--source-loop", "true", "--mqtt-enabled",
                                    "false", "--source-frame-timeout-s", "60"))
        daemon.wait_for("not a readable image")
        cpu_before = daemon.cpu_seconds()
        time.sleep(2.0)
        busy = daemon.cpu_seconds() - cpu_before
        sent = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code, output = daemon.finish(timeout=10)
        assert code == 0 and time.monotonic() - sent < 2.0, output
        assert busy < 0.3, f"{busy:.2f} s of CPU in 2 s while no image could be read"
        assert output.count("not a readable image") == (1 if source.is_file() else 2), output
        assert "source ended" not in output


def test_sighup_is_a_clean_stop_that_publishes_offline(tmp_path, brokers, daemons, shipped_model):
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    with Recorder(brokers["plain"].port) as recorder:
        daemon = daemons(*run_flags(tmp_path, *mqtt_flags(brokers["plain"].port)))
        recorder.wait_for("test/status", "online")
        daemon.process.send_signal(signal.SIGHUP)
        code, output = daemon.finish(timeout=10)
        recorder.wait_for("test/status", "offline", timeout=5)
    assert code == 0 and "SIGHUP received, stopping" in output, output


def test_wrong_password_is_logged_once_while_retrying(tmp_path, brokers, daemons, shipped_model):
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    secret = toml(tmp_path, "wrong\n", "pw")
    secret.chmod(0o600)
    auth = brokers["auth"]
    attempts_before = auth.log.read_text().count("not authorised")
    daemon = daemons(*run_flags(tmp_path, *mqtt_flags(auth.port, "--mqtt-username", "pi", "--mqtt-password-file",
                                                      str(secret))))
    daemon.wait_for("refused the connection")
    deadline = time.monotonic() + 15  # paho retries after 1 s, then 2 s
    while auth.log.read_text().count("not authorised") - attempts_before < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    daemon.process.send_signal(signal.SIGTERM)
    code, output = daemon.finish(timeout=10)
    assert auth.log.read_text().count("not authorised") - attempts_before >= 3, "the daemon did not retry"
    assert code == 0 and output.count("refused the connection") == 1, output
    assert "credentials of user 'pi' were not accepted" in output


def test_world_readable_password_file_is_used_with_a_warning(tmp_path, caplog):
    secret = toml(tmp_path, "s3cret\n", "pw")
    secret.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert cfg.read_password(cfg.MqttSettings(password_file=secret), None) == "s3cret"
    assert "readable by every user (mode 644)" in caplog.text
    caplog.clear()
    secret.chmod(0o640)
    with caplog.at_level(logging.WARNING):
        cfg.read_password(cfg.MqttSettings(password_file=secret), None)
    assert "readable by every user" not in caplog.text


def test_a_password_in_place_of_its_file_is_not_repeated(tmp_path, daemons):
    config = toml(tmp_path, '[mqtt]\nusername = "pi"\npassword_file = "S3cret"\n')
    code, output = daemons("run", "--config", str(config), "--source", str(tmp_path / "x.mp4")).finish()
    assert code == 2 and "mqtt.password_file: cannot read" in output and "S3cret" not in output, output


def test_no_parser_of_the_cli_takes_abbreviations():
    from device.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict)).choices
    assert not parser.allow_abbrev and subparsers
    for name, sub in subparsers.items():
        assert not sub.allow_abbrev, name
    for argv, flag in ((["run", "--mqtt-password", "S3cret"], "--mqtt-password"),
                       (["run", "--mqtt-password-fil=S3cret"], "--mqtt-password-fil"),
                       (["check-config", "--config=x.toml", "--mqtt-ho", "S3cret"], "--mqtt-ho"),
                       (["watch", "--mqtt-h", "S3cret"], "--mqtt-h")):
        result = subprocess.run([sys.executable, "-m", "device", *argv], cwd=REPO, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 2, (argv, result.stderr)
        assert f"unrecognized arguments: {flag}" in result.stderr and "S3cret" not in result.stderr, result.stderr


@pytest.mark.parametrize("key, value, problem", [
    ("device_id", "kitchen\x00", "control characters"),
    ("device_id", "kitchen\n", "control characters"),
    ("device_id", "kit\x1bchen", "control characters"),
    ("device_id", "kitchen+1", "wildcards"),
    ("device_id", "$kitchen", "start with '$'"),
    ("device_id", "home/kitchen", "'/' or spaces"),
    ("topic_root", "fer\x00edge", "control characters"),
    ("topic_root", "fer-edge/#", "wildcards"),
    ("topic_root", "$SYS", "start with '$'"),
    ("topic_root", "/fer-edge", "start or end with '/'"),
    ("topic_root", "home//fer", "empty level"),
    ("discovery_prefix", "home\tassistant", "control characters"),
])
def test_topic_parts_are_checked_against_the_mqtt_spec(key, value, problem):
    section = "service" if key == "device_id" else "mqtt"
    with pytest.raises(cfg.ConfigError, match=rf"{section}\.{key}: Value error, .*{re.escape(problem)}"):
        cfg.load_settings(None, {(section, key): value})
    settings = cfg.load_settings(None, {("mqtt", "topic_root"): "home/fer-edge", ("service", "device_id"): "küche-1"})
    assert settings.mqtt.topic_root == "home/fer-edge" and settings.service.device_id == "küche-1"


@pytest.mark.parametrize("text, key", [
    ("[mqtt]\nport = true\n", "mqtt.port"),
    ("[mqtt]\nqos_status = false\n", "mqtt.qos_status"),
    ("[source]\nfps = true\n", "source.fps"),
    ('[leds]\npins = {happy = true}\n', "leds.pins"),
])
def test_booleans_are_not_numbers(tmp_path, text, key):
    with pytest.raises(cfg.ConfigError, match=rf"{re.escape(key)}: Value error, a boolean"):
        cfg.load_settings(toml(tmp_path, text))
    assert cfg.load_settings(toml(tmp_path, "[mqtt]\ntls = true\nport = 8883\n")).mqtt.port == 8883


def test_config_file_faults_name_the_file(tmp_path):
    with pytest.raises(cfg.ConfigError, match=f"{re.escape(str(tmp_path))}: is a folder"):
        cfg.load_settings(tmp_path)
    with pytest.raises(cfg.ConfigError, match=r"latin1.toml: not UTF-8 text \(byte 16\)"):
        cfg.load_settings(latin1(tmp_path))


@pytest.mark.skipif(IS_ROOT, reason="running as root, who reads any file whatever its permissions")
def test_unreadable_config_file_is_named(tmp_path):
    with pytest.raises(cfg.ConfigError, match="c.toml: cannot read the config file: Permission denied"):
        cfg.load_settings(unreadable(tmp_path))


def test_tls_files_that_are_not_certificates_name_key_and_path(tmp_path, tls_files):
    from device.mqtt import MqttPublisher
    from device.topics import Topics

    ca, cert, key = tls_files
    topics = Topics("fer-edge", "test")
    not_pem = toml(tmp_path, "hello\n", "not.pem")
    for settings, message in [
        (cfg.MqttSettings(tls_ca=not_pem), f"mqtt.tls_ca: {not_pem}: not a PEM CA certificate"),
        (cfg.MqttSettings(tls_ca=tmp_path / "missing.crt"), "mqtt.tls_ca: .*missing.crt: no such file"),
        (cfg.MqttSettings(tls_ca=ca, tls_cert=not_pem, tls_key=key), "mqtt.tls_cert/tls_key: .*not.pem"),
        (cfg.MqttSettings(tls_ca=ca, tls_cert=cert, tls_key=ca), "mqtt.tls_cert/tls_key: .*not a PEM certificate"),
    ]:
        with pytest.raises(cfg.ConfigError, match=message):
            MqttPublisher(settings, topics)


@pytest.mark.parametrize("flags, says", [
    (["--mqtt-tls", "true", "--mqtt-tls-ca", "{ca}"], "TLS handshake failed"),  # a TLS client on a plain listener
    (["--mqtt-tls-ca", "{other_ca}"], "TLS certificate verification failed"),
])
def test_tls_failures_say_so_instead_of_unreachable(flags, says, tmp_path, brokers, tls_files, daemons,
                                                   shipped_model):
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    other_ca, _, _ = make_tls_files(tmp_path)
    port = brokers["plain"].port if "handshake" in says else brokers["tls"].port
    flags = [f.format(ca=tls_files[0], other_ca=other_ca) for f in flags]
    daemon = daemons(*run_flags(tmp_path, *mqtt_flags(port, *flags)))
    daemon.wait_for(says)
    daemon.process.send_signal(signal.SIGTERM)
    code, output = daemon.finish(timeout=10)
    assert code == 0 and output.count(says) == 1 and "unreachable" not in output, output


def test_classify_refuses_a_30000_px_square_png_without_decoding_it(tmp_path, shipped_model):
    """Issue 11: a 920 KB PNG of 30000x30000 px took `classify` to 5.35 GB of memory."""
    huge = huge_png(tmp_path / "huge.png")
    assert huge.stat().st_size < 2_000_000 and MAX_IMAGE_PIXELS < 30000 * 30000
    # A fresh parent, so that RUSAGE_CHILDREN is the peak memory of this one `classify`.
    probe = ("import resource, subprocess, sys; r = subprocess.run([sys.executable, '-m', 'device', 'classify', "
             f"{str(huge)!r}], capture_output=True, text=True); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stderr)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                            check=True)
    code, max_rss_kib = (int(v) for v in result.stdout.split("\n", 1)[0].split())
    assert code == 3 and "huge.png: 30000x30000 px is above the limit of 50,000,000 px" in result.stdout
    assert max_rss_kib < 1_000_000, f"peak RSS {max_rss_kib / 1e6:.1f} GB"


def test_image_size_reads_png_jpeg_and_bmp_headers(tmp_path):
    import cv2
    import numpy as np

    from device.sources import image_size, read_image

    image = np.zeros((30, 50, 3), np.uint8)
    for suffix in (".png", ".jpg", ".bmp"):
        cv2.imwrite(str(tmp_path / f"a{suffix}"), image)
        assert image_size(tmp_path / f"a{suffix}") == (50, 30), suffix
        assert read_image(tmp_path / f"a{suffix}").shape == (30, 50, 3)
    assert image_size(empty_jpg(tmp_path)) is None


def test_an_image_above_opencvs_own_limit_is_refused_without_a_traceback(tmp_path, shipped_model):
    """A format whose header `read_image` does not parse (TIFF) meets OPENCV_IO_MAX_IMAGE_PIXELS, which raises."""
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "big.tif"), np.zeros((8000, 8000), np.uint8))  # 64 MP, LZW: a small file
    result = subprocess.run([sys.executable, "-m", "device", "classify", str(tmp_path / "big.tif"), "--config",
                             str(toml(tmp_path, ""))], cwd=REPO, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    limit = os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"]  # MAX_IMAGE_PIXELS unless the environment sets its own
    if int(limit) >= 8000 * 8000:
        pytest.skip(f"OPENCV_IO_MAX_IMAGE_PIXELS={limit} is set in the environment, above this image")
    assert f"big.tif: above the limit of {limit} px (OPENCV_IO_MAX_IMAGE_PIXELS)" in result.stderr


def test_a_live_source_without_frames_returns_at_once_when_stopped():
    """A lost camera must not hold a SIGTERM for `frame_timeout_s`: `read` sees the stop flag."""
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    from device.config import SourceSettings
    from device.sources import LiveSource, SourceError, _OpenCvCapture

    opened = []

    def opener():
        if opened:  # gone for good after the first end
            raise SourceError("test stream: gone")
        opened.append(1)
        return _OpenCvCapture(str(CLIP), SourceSettings())

    stop = threading.Event()
    source = LiveSource(opener, SourceSettings(frame_timeout_s=5), name="test stream", stop=stop)
    try:
        deadline = time.monotonic() + 30
        while source._capture is not None or not opened:  # the capture thread runs through the clip
            assert time.monotonic() < deadline, "the clip did not end"
            time.sleep(0.05)
        source.read()  # the clip's last frame
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        assert source.read() is None  # before: waited the whole frame_timeout_s, then raised SourceLost
        assert time.monotonic() - started < 1.0
    finally:
        source.close()
