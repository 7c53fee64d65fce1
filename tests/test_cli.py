"""`fer-edge classify`, `check-config` and the README's demo command, run as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.broker import MOSQUITTO
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


def test_classify_unreadable_image_exits_3(tmp_path, shipped_model):
    (tmp_path / "x.jpg").write_text("no image")
    result = fer("classify", str(tmp_path / "x.jpg"))
    assert result.returncode == 3 and "x.jpg: not a readable image" in result.stderr


def test_check_config_prints_the_effective_settings():
    result = fer("check-config", "--config", str(REPO / "systemd" / "config.toml"), "--mqtt-port", "1999")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mqtt"]["port"] == 1999


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")
def test_readme_demo_shows_messages_arriving_at_a_subscriber(shipped_model):
    result = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, capture_output=True, text=True, timeout=600,
                            check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "fer-edge/demo/status online" in out and "fer-edge/demo/status offline" in out
    assert "fer-edge/demo/emotions {" in out and "fer-edge/demo/dominant " in out
    assert out.index("status online") < out.index("emotions {") < out.index("status offline")
