"""Shared fixtures: real FER2013 from ../shared (or $FER2013_DIR), the shipped model, small real runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHIPPED_MODEL = REPO / "device" / "models" / "fer_int8.tflite"
CLIP = SHARED / "media" / "woman2.mp4"  # the real 596x336 clip with one face (not redistributable)

# Settings of the tiny end-to-end run: small widths and no augmentation but flips (whole 48 px faces) so
# that 4 epochs on 2,800 real images learn something measurable in well under a minute on 2 cores.
QUICK_TRAIN_FLAGS = ["--epochs", "4", "--limit", "2800", "--limit-val", "700", "--widths", "16,32,64",
                     "--bn-momentum", "0.9", "--learning-rate", "0.003", "--warmup-epochs", "0", "--erasing", "0",
                     "--crop", "48", "--rotation-deg", "0", "--scale", "0", "--cutmix", "0", "--dropout", "0.1"]


@pytest.fixture
def clip() -> Path:
    """The real clip; the test skips where ../shared/media does not have it."""
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found (the test clip lives in ../shared/media)")
    return CLIP


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto on 127.0.0.1 for one test (`benchmarks.broker.Mosquitto`); skips where not installed."""
    from benchmarks.broker import MOSQUITTO, Mosquitto

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    mosquitto = Mosquitto(tmp_path).start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def daemons():
    """Starts `fer-edge run` processes (`tests.test_faults.Daemon(*flags)`); kills those still running after the
    test, so a failed assertion leaves none behind."""
    from tests.test_faults import Daemon

    started: list[Daemon] = []

    def start(*args: str) -> Daemon:
        started.append(Daemon(*args))
        return started[-1]

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture(scope="session", autouse=True)
def state_directory(tmp_path_factory):
    """Every daemon the tests start keeps its detection switch state here (as under systemd's StateDirectory=),
    never in the user's own ~/.local/state/fer-edge, whose switch may be off."""
    previous = os.environ.get("STATE_DIRECTORY")
    os.environ["STATE_DIRECTORY"] = str(tmp_path_factory.mktemp("state"))
    yield Path(os.environ["STATE_DIRECTORY"])
    if previous is None:
        os.environ.pop("STATE_DIRECTORY", None)
    else:
        os.environ["STATE_DIRECTORY"] = previous


def fer2013_path() -> Path:
    return Path(os.environ.get("FER2013_DIR", SHARED / "datasets" / "fer2013"))


@pytest.fixture(scope="session")
def fer2013_dir() -> Path:
    path = fer2013_path()
    if not (path / "train").is_dir() or not (path / "test").is_dir():
        pytest.skip(f"FER2013 not found at {path} (set FER2013_DIR to the Kaggle folder layout to run this test)")
    return path


@pytest.fixture(scope="session")
def public_test(fer2013_dir):
    from training import data

    return data.load(fer2013_dir, "PublicTest")


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    if not SHIPPED_MODEL.is_file():
        pytest.fail(f"{SHIPPED_MODEL} is missing: the project ships its default model")
    return SHIPPED_MODEL


def run_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a project script the way a user does (`python training/train.py ...`) from the repo root."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


@pytest.fixture(scope="session")
def quick_run(fer2013_dir, tmp_path_factory) -> Path:
    """A real training run: 4 epochs on 2,800 FER2013 Training images, written to a RUN_DIR."""
    run_dir = tmp_path_factory.mktemp("run")
    result = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(run_dir), *QUICK_TRAIN_FLAGS)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


@pytest.fixture(scope="session")
def quick_int8(quick_run, fer2013_dir, tmp_path_factory) -> Path:
    """The quick run's model converted to full-integer int8, evaluated on about 350 images per split."""
    out = tmp_path_factory.mktemp("models")
    result = run_script("convert/quantize.py", "--model", str(quick_run / "model.keras"), "--data", str(fer2013_dir),
                        "--out", str(out), "--limit", "350", "--calibration-size", "140", "--max-drop", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "fer_int8.tflite"
