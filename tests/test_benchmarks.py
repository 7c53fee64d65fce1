"""The benchmark's quick configuration runs end to end, so that it cannot rot (numbers are not asserted)."""

import json

import pytest

from benchmarks.broker import MOSQUITTO
from tests.conftest import CLIP, run_script

pytestmark = pytest.mark.slow


def test_quick_benchmark_writes_a_complete_report(tmp_path, fer2013_dir, shipped_model):
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found")
    result = run_script("benchmarks/run.py", "--quick", "--out", str(tmp_path), "--data", str(fer2013_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["accuracy"]["count"] >= 300
    for name in ("fer_edge", "fer"):
        assert 0 < report["accuracy"][name]["single"]["accuracy"] <= 1
        assert report["pipeline"][name]["fps"] > 0
        assert report["latency"]["1_thread"][f"{name}_batch1"]["median_ms"] > 0
    assert report["pipeline"]["frames"] == 60
    if MOSQUITTO:
        assert report["daemon"]["peak_rss_mb"] > 10 and report["daemon"]["first_message_s"] > 0
        assert all(report["web"][mode]["fps"] > 0 for mode in ("off", "on_no_viewer", "on_one_viewer"))
        assert report["web"]["on_one_viewer"]["viewer_frames_per_s"] > 0
    assert {t["target"] for t in report["targets"]} >= {"fps_ratio", "latency", "rss", "accuracy_gain"}
    assert "| fer-edge int8 |" in (tmp_path / "report.md").read_text()


def test_fleet_benchmark_delivers_on_loopback(tmp_path):
    if not MOSQUITTO:
        pytest.skip("mosquitto is not installed")
    result = run_script("benchmarks/fleet.py", "--devices", "1,3", "--seconds", "2", "--out", str(tmp_path),
                        timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads((tmp_path / "fleet.json").read_text())["rows"]
    assert [row["devices"] for row in rows] == [1, 3]
    for row in rows:  # 5 Hz per device for 2 s, through device/mqtt.py, all delivered on loopback
        assert row["emotions_published"] == 10 * row["devices"] and row["loss"] == 0, row
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p99"], row


def test_instances_benchmark_measures_fps_and_memory(tmp_path, shipped_model):
    if not MOSQUITTO or not CLIP.is_file():
        pytest.skip("mosquitto and the clip are needed")
    result = run_script("benchmarks/instances.py", "--counts", "1", "--seconds", "18", "--out", str(tmp_path),
                        timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads((tmp_path / "instances.json").read_text())["runs"][0]
    assert run["instances"] == 1 and run["per_instance"][0]["exit_code"] == 0, run
    assert run["fps_mean"] > 1 and 30 < run["rss_mb_mean"] < 1000, run
