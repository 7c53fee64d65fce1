"""convert/quantize.py on a model trained from real FER2013, and its failure modes."""

import json

import numpy as np
import pytest

from device.classifier import EmotionClassifier
from tests.conftest import run_script

pytestmark = pytest.mark.slow


def test_int8_model_has_int8_input_and_output(quick_int8):
    classifier = EmotionClassifier(quick_int8)
    assert classifier.input_dtype == np.int8 and classifier.output_dtype == np.int8
    scale, zero_point = classifier.input_quantization
    # Inputs in [0, 1] calibrate to scale 1/255, zero point -128: uint8 pixels map exactly.
    assert np.isclose(scale, 1 / 255, rtol=1e-3) and zero_point == -128


def test_int8_agrees_with_the_float_model_on_real_images(quick_int8):
    card = json.loads(quick_int8.with_suffix(".json").read_text())
    for split in ("PublicTest", "PrivateTest"):
        result = card["evaluation"]["splits"][split]
        assert result["count"] > 300
        # Measured here: the tiny 4-epoch model agrees on about 97%; 90% leaves room for other seeds.
        assert result["agreement"] > 0.90, result
        assert abs(result["float"]["accuracy"] - result["int8"]["accuracy"]) < 0.05


def test_model_card_states_the_runs_wall_clock_and_best_epoch_once(quick_run, quick_int8):
    card = json.loads(quick_int8.with_suffix(".json").read_text())
    metrics = json.loads((quick_run / "metrics.json").read_text())
    run = card["training_run"]
    assert "train_seconds" not in run and "best_epoch" not in run  # one session's seconds misread as the run's
    (stage,) = run["stages"]
    assert stage["train_seconds"] == metrics["train_seconds"] == run["recipe_train_seconds"]
    assert stage["best_epoch"] == metrics["best_epoch"]


def test_model_card_matches_a_fresh_evaluation(quick_int8, fer2013_dir, tmp_path):
    card = json.loads(quick_int8.with_suffix(".json").read_text())
    assert card["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert card["file_size_bytes"] == quick_int8.stat().st_size
    assert card["edgetpu"]["compatible"] is True
    assert card["calibration"]["source"].startswith("FER2013 Training")
    result = run_script("training/evaluate.py", "--model", str(quick_int8), "--data", str(fer2013_dir),
                        "--limit", "350", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    fresh = json.loads((tmp_path / "evaluation.json").read_text())["splits"]
    for split in ("PublicTest", "PrivateTest"):
        assert card["evaluation"]["splits"][split]["int8"]["accuracy"] == fresh[split]["single"]["accuracy"]
        assert card["evaluation"]["splits"][split]["int8"]["macro_f1"] == fresh[split]["single"]["macro_f1"]
        # Both [classifier] priors: the card's figures are what evaluate.py measures through the classifier.
        priors = card["evaluation"]["splits"][split]["int8"]["priors"]
        for prior in ("fer2013", "uniform"):
            for mode in ("single", "flip_tta"):
                assert priors[prior][mode]["accuracy"] == fresh[split]["priors"][prior][mode]["accuracy"]
        assert priors["fer2013"]["single"]["accuracy"] == fresh[split]["single"]["accuracy"]
    assert card["output_prior"] == "fer2013" and card["output_prior_power"] == 1.0
    assert abs(sum(card["train_class_frequencies"].values()) - 1.0) < 1e-9


def test_missing_model_fails_without_output(fer2013_dir, tmp_path):
    result = run_script("convert/quantize.py", "--model", str(tmp_path / "nope.keras"), "--data", str(fer2013_dir),
                        "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "nope.keras: model file not found" in result.stderr
    assert not list(tmp_path.rglob("*.tflite*"))


def test_corrupt_model_fails_without_output(fer2013_dir, tmp_path):
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 truncated zip")
    result = run_script("convert/quantize.py", "--model", str(tmp_path / "bad.keras"), "--data", str(fer2013_dir),
                        "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "bad.keras: not a loadable .keras model" in result.stderr
    assert not list(tmp_path.rglob("*.tflite*"))


def test_data_without_the_layout_fails(quick_run, tmp_path):
    result = run_script("convert/quantize.py", "--model", str(quick_run / "model.keras"), "--data", str(tmp_path),
                        "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "Kaggle layout" in result.stderr
    assert not list(tmp_path.rglob("*.tflite*"))


def test_unwritable_output_folder_fails(quick_run, fer2013_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_script("convert/quantize.py", "--model", str(quick_run / "model.keras"), "--data", str(fer2013_dir),
                        "--out", str(blocker / "models"))
    assert result.returncode == 2 and "a-file" in result.stderr
    assert not list(tmp_path.rglob("*.tflite*"))


def test_accuracy_drop_over_the_threshold_fails_and_writes_nothing(quick_run, fer2013_dir, tmp_path):
    # A negative threshold cannot be met: int8 would have to beat float by 1 point.
    result = run_script("convert/quantize.py", "--model", str(quick_run / "model.keras"), "--data", str(fer2013_dir),
                        "--out", str(tmp_path), "--limit", "140", "--calibration-size", "70", "--max-drop", "-5")
    assert result.returncode == 1 and "nothing written" in result.stderr
    assert not list(tmp_path.glob("*.tflite*")) and not list(tmp_path.glob("*.json"))


def test_publish_converts_the_run_and_records_it(quick_run, fer2013_dir, tmp_path):
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    out, docs = tmp_path / "models", tmp_path / "run"
    result = run_script("training/publish.py", "--run", str(quick_run), "--data", str(fer2013_dir), "--out", str(out),
                        "--docs", str(docs), "--limit", "350", "--max-drop", "10")
    # --max-drop as for quick_int8: on 350 faces one point is 4 images, noise for a 4-epoch model (seen: 1.14)
    assert result.returncode == 0, result.stderr
    card = json.loads((out / "fer_int8.json").read_text())
    assert card["daemon_tta"] == "flip" and set(card["latency_ms_per_face"]["with_tta"]) == {"flip", "flip-shift"}
    assert 0 < card["evaluation"]["splits"]["PrivateTest"]["int8"]["flip_shift_tta_accuracy"] <= 1
    for name in ("model.keras", "config.json", "history.csv", "checkpoint.json", "metrics.json",
                 "training_curves.png", "evaluation.json", "confusion_matrix_PrivateTest.png"):
        assert (docs / name).is_file(), name
    assert card["training_run"]["float_model"] == str(docs / "model.keras")  # outside the repository: absolute
    assert (docs / "model.keras").read_bytes() == (quick_run / "model.keras").read_bytes()
    evaluation = json.loads((docs / "evaluation.json").read_text())
    assert evaluation["splits"]["PublicTest"]["single"]["accuracy"] == \
        card["evaluation"]["splits"]["PublicTest"]["int8"]["accuracy"]  # one model, one measurement code
    assert (REPO / "README.md").read_text() == readme  # only a model shipped to device/models changes the README


def test_publish_keeps_a_teacher_member_without_converting_or_shipping_it(quick_run, tmp_path):
    from tests.conftest import REPO
    from training.lineage import member_lineage

    readme, card = (REPO / "README.md").read_text(), (REPO / "device/models/fer_int8.json").read_text()
    member = tmp_path / "teachers" / "member"
    result = run_script("training/publish.py", "--run", str(quick_run), "--keep-as", str(member))
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in member.iterdir()) == sorted(
        ["model.keras", "config.json", "history.csv", "checkpoint.json", "metrics.json", "training_curves.png"])
    assert (member / "model.keras").read_bytes() == (quick_run / "model.keras").read_bytes()
    (stage,) = member_lineage(member / "model.keras")  # what the student's card will state of this member
    metrics = json.loads((quick_run / "metrics.json").read_text())
    assert stage["command"].startswith("training/train.py") and stage["train_seconds"] == metrics["train_seconds"]
    assert (REPO / "README.md").read_text() == readme and (REPO / "device/models/fer_int8.json").read_text() == card
    assert not list(tmp_path.rglob("*.tflite"))

    result = run_script("training/publish.py", "--run", str(quick_run), "--keep-as", str(member))
    assert result.returncode == 0, result.stderr  # a member kept again replaces its own record


def test_publish_keep_as_refuses_the_shipped_record_and_a_folder_with_other_files(quick_run, tmp_path):
    from tests.conftest import REPO

    record = REPO / "docs/default-run"
    before = {path.name: path.read_bytes() for path in record.iterdir()}
    shipped = run_script("training/publish.py", "--run", str(quick_run), "--keep-as", str(record))
    assert shipped.returncode == 2 and "the shipped model's record" in shipped.stderr
    assert {path.name: path.read_bytes() for path in record.iterdir()} == before
    (tmp_path / "notes.txt").write_text("mine")
    other = run_script("training/publish.py", "--run", str(quick_run), "--keep-as", str(tmp_path))
    assert other.returncode == 2 and "notes.txt" in other.stderr and "Traceback" not in other.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"  # nothing lost
    itself = run_script("training/publish.py", "--run", str(quick_run), "--keep-as", str(quick_run))
    assert itself.returncode == 2 and (quick_run / "checkpoint.keras").is_file()
    a_file = run_script("training/publish.py", "--run", str(quick_run), "--keep-as", str(tmp_path / "notes.txt"))
    assert a_file.returncode == 2 and "not a folder" in a_file.stderr and "Traceback" not in a_file.stderr


def test_publish_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = run_script("training/publish.py", "--run", str(tmp_path))
    assert result.returncode == 2 and "not a training run (missing model.keras, history.csv, config.json)" \
        in result.stderr


def test_a_distilled_runs_card_carries_its_teacher_or_at_least_its_path(tmp_path, caplog):
    from convert.quantize import distilled_from

    assert distilled_from({"epochs": 9}) is None
    summary = {"command": "python training/distill.py teacher ...", "seconds": 12.0, "accuracy": []}
    np.savez(tmp_path / "teacher.npz", probabilities=np.zeros((1, 7)), names=np.array(["a.png"]),
             summary=np.array(json.dumps(summary)))
    assert distilled_from({"teacher": str(tmp_path / "teacher.npz")}) == {"file": str(tmp_path / "teacher.npz"),
                                                                           **summary}
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 cut short")
    for name in ("gone.npz", "cut.npz"):
        assert distilled_from({"teacher": str(tmp_path / name)}) == {"file": str(tmp_path / name)}
        assert f"{name}: the run's teacher file is absent or has no summary" in caplog.text
