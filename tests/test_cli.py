"""`fer-edge classify`, `check-config` and the README's demo command, run as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.broker import MOSQUITTO
from tests.conftest import REPO


def astronaut() -> Path:
    skimage_data = pytest.importorskip("skimage.data")
    return Path(skimage_data.__file__).parent / "astronaut.png"


def fer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "device", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)


def test_classify_prints_one_json_object_per_image_and_annotates(tmp_path, shipped_model):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 200, np.uint8))
    result = fer("classify", str(astronaut()), str(blank), "--annotate", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(line["image"]).name for line in lines] == ["astronaut.png", "blank.png"]
    (face,) = lines[0]["faces"]  # one face in the portrait
    x, y, w, h = face["bbox"]
    assert 150 < x < 200 and 40 < y < 90 and 80 < w < 130  # her face, in image pixels
    assert face["emotion"] in face["scores"] and abs(sum(face["scores"].values()) - 1) < 0.02
    assert lines[1]["faces"] == []
    assert (tmp_path / "out" / "astronaut.png").is_file()
    # The TFLite runtime's own stderr line goes through logging (at DEBUG), not around the log format.
    assert "XNNPACK" not in result.stderr, result.stderr


def test_classify_unreadable_image_exits_3(tmp_path, shipped_model):
    (tmp_path / "x.jpg").write_text("no image")
    result = fer("classify", str(tmp_path / "x.jpg"))
    assert result.returncode == 3 and "x.jpg: not a readable image" in result.stderr


def test_check_config_prints_the_effective_settings():
    result = fer("check-config", "--config", str(REPO / "systemd" / "config.toml"), "--mqtt-port", "1999")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mqtt"]["port"] == 1999


def test_every_flag_documents_its_type_default_and_meaning():
    from device import config

    result = fer("run", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps help lines
    for flag, section, key in config.flag_names():
        assert flag in text
        assert f"[config: {section}.{key}]" in text, flag
    assert "--mqtt-port INT MQTT broker port (integer; default 1883) [config: mqtt.port]" in text
    assert "--mqtt-emotions-max-hz FLOAT most `emotions` messages per second (number; default 5.0; unit Hz)" in text
    assert "--detector-kind {yunet,haar}" in text and "--leds-pins JSON" in text
    assert "--service-log-level {DEBUG,INFO,WARNING,ERROR}" in text


@pytest.mark.parametrize("flag", ["--source", "--mqtt-port", "--mqtt-host", "--leds-pins", "--source-uri",
                                  "--tracking-smoothing"])
def test_classify_takes_only_the_flags_it_uses(flag, tmp_path):
    result = fer("classify", str(tmp_path / "a.png"), flag, "1")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: fer-edge classify"), result.stderr
    assert f"unrecognized arguments: {flag}" in result.stderr
    help_text = fer("classify", "--help").stdout
    assert flag not in help_text and "--detector-kind" in help_text and "--classifier-threads" in help_text


def test_an_unknown_flag_prints_the_subcommands_usage():
    for command in ("run", "check-config", "watch"):
        result = fer(command, "--no-such-flag")
        assert result.returncode == 2
        assert result.stderr.startswith(f"usage: fer-edge {command}"), result.stderr
        assert "unrecognized arguments: --no-such-flag" in result.stderr


@pytest.mark.skipif(Path("/etc/fer-edge/config.toml").exists(), reason="this machine has /etc/fer-edge/config.toml")
def test_check_config_without_a_file_says_it_shows_the_defaults_and_errors_name_no_missing_file():
    result = fer("check-config")
    assert result.returncode == 0, result.stderr
    assert "/etc/fer-edge/config.toml does not exist: showing the defaults" in result.stderr
    assert json.loads(result.stdout)["mqtt"]["port"] == 1883
    bad = fer("check-config", "--mqtt-port", "x")
    assert bad.returncode == 2
    assert "defaults + flags: mqtt.port" in bad.stderr and "/etc/fer-edge" not in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")
def test_readme_demo_shows_messages_arriving_at_a_subscriber(shipped_model):
    result = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, capture_output=True, text=True, timeout=600,
                            check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "fer-edge/demo/status online" in out and "fer-edge/demo/status offline" in out
    assert "fer-edge/demo/emotions {" in out and "fer-edge/demo/dominant " in out
    assert out.index("status online") < out.index("emotions {") < out.index("status offline")
    # Paced like a camera: several emotions, stats, the Home Assistant discovery, then a per-topic summary.
    assert out.count("fer-edge/demo/emotions {") >= 5 and out.count("fer-edge/demo/stats {") >= 2, out
    assert "homeassistant/sensor/demo/emotion/config {" in out
    summary = out[out.index("== summary:"):]
    assert "fer-edge/demo/status (online -> offline)" in summary
    for topic in ("emotions", "dominant", "stats"):
        assert f"fer-edge/demo/{topic}\n" in summary
    assert "XNNPACK" not in out and "setuptools" not in out.lower()


def test_setup_venv_installs_once_and_is_quiet_after():
    venv = Path(sys.executable).parent.parent
    if not (venv / "pyvenv.cfg").is_file() or venv != REPO / ".venv":
        pytest.skip("the tests do not run from the project's .venv")
    run = [["bash", "scripts/setup-venv.sh", "dev"]]
    first = subprocess.run(*run, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(*run, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and again.stdout == "" and again.stderr == "", again.stderr  # nothing reinstalled
    assert (venv / ".fer-edge-installed").read_text().split()[1] == "dev"
