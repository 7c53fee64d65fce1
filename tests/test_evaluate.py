"""`training/evaluate.py --folder` on a CK+-style folder made of real FER2013 images: other class names,
a class to drop, classes missing, an absolute path, the default output folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

# CK+-style folder name -> the FER2013 folder its images are taken from
CKPLUS = {"anger": "angry", "sadness": "sad", "happy": "happy", "contempt": "disgust"}
PER_CLASS = 12


@pytest.fixture
def ckplus(fer2013_dir, tmp_path):
    folder = tmp_path / "ck plus"  # a space, as user folders have
    for name, source in CKPLUS.items():
        (folder / name).mkdir(parents=True)
        for image in sorted((fer2013_dir / "test" / source).glob("PrivateTest_*.jpg"))[:PER_CLASS]:
            shutil.copy(image, folder / name / image.name)
    return folder


def evaluate(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(REPO / "training" / "evaluate.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_ckplus_folder_with_a_label_map_writes_its_json_and_plot_to_runs_eval(ckplus, shipped_model, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = evaluate("--model", str(shipped_model), "--split", "--folder", str(ckplus), "--label-map",
                      "anger=angry,sadness=sad,contempt=", cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    out = work / "runs" / "eval"  # the default --out, relative to where it runs; never device/models/
    report = json.loads((out / "evaluation.json").read_text())
    single = report["splits"][str(ckplus)]["single"]
    assert single["count"] == 3 * PER_CLASS  # contempt dropped
    assert single["classes_present"] == ["angry", "happy", "sad"]
    f1 = [single["per_class"][name]["f1"] for name in single["classes_present"]]
    assert single["macro_f1"] == pytest.approx(sum(f1) / 3)  # over the classes present only
    assert single["per_class"]["fear"]["support"] == 0
    assert 0.3 < single["accuracy"] <= 1.0  # the shipped model on real images: better than chance
    pngs = [p.name for p in out.glob("confusion_matrix_*.png")]
    assert len(pngs) == 1 and "/" not in pngs[0] and " " not in pngs[0] and pngs[0].endswith("ck_plus.png")
    assert not list((REPO / "device" / "models").glob("confusion_matrix_*"))


def test_label_map_from_a_toml_file(ckplus, shipped_model, tmp_path):
    mapping = tmp_path / "ckplus.toml"
    mapping.write_text('anger = "angry"\nsadness = "sad"\ncontempt = ""\n')
    result = evaluate("--model", str(shipped_model), "--split", "--folder", str(ckplus), "--label-map",
                      str(mapping), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert report["splits"][str(ckplus)]["single"]["classes_present"] == ["angry", "happy", "sad"]


def test_unmapped_folder_names_and_bad_targets_are_named(ckplus, shipped_model, tmp_path):
    result = evaluate("--model", str(shipped_model), "--split", "--folder", str(ckplus), "--out",
                      str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert "'anger' is not one of angry, disgust" in result.stderr and "--label-map anger=<label>" in result.stderr
    bad = evaluate("--model", str(shipped_model), "--split", "--folder", str(ckplus), "--label-map", "anger=rage",
                   "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert bad.returncode == 2 and "anger=rage: 'rage' is not one of" in bad.stderr
    assert "Traceback" not in result.stderr + bad.stderr
