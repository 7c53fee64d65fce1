"""The camera-robustness benchmark: every condition measured through the daemon's classifier, and a table."""

import json

import pytest

from benchmarks import robustness
from tests.conftest import run_script
from training import camera


def test_conditions_are_clean_then_every_degradation_and_strength():
    conditions = robustness.conditions()
    assert conditions[0] == ("clean", None)
    assert len(conditions) == 1 + sum(len(d.strengths) for d in camera.DEGRADATIONS.values())
    assert {name for name, _ in conditions[1:]} == set(camera.NAMES)


@pytest.mark.slow
def test_the_benchmark_compares_a_candidate_with_the_current_model_and_fer(shipped_model, fer2013_dir, tmp_path):
    result = run_script("benchmarks/robustness.py", "--model", str(shipped_model), "--data", str(fer2013_dir),
                        "--limit", "140", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "robustness.json").read_text())
    assert report["count"] >= 140 and len(report["rows"]) == len(robustness.conditions())
    clean, strongest_noise = report["rows"][0], next(r for r in report["rows"] if r["strength"] == "sigma=16.0")
    for row in report["rows"]:
        acc = row["accuracy"]
        assert set(acc) == {"current", "candidate", "fer"} and set(acc["current"]) == {"single", "flip"}
        assert acc["candidate"] == acc["current"]  # the same model: a delta of exactly 0
    # The degradations are real: heavy sensor noise costs the shipped model accuracy.
    assert strongest_noise["accuracy"]["current"]["single"] < clean["accuracy"]["current"]["single"] - 0.1
    table = (tmp_path / "robustness.md").read_text()
    assert "| motion blur | length=5 |" in table and "+0.00 |" in table
    assert "worst candidate - current (single): +0.00 points" in result.stdout
