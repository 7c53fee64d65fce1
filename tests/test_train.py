"""End to end on real FER2013: train a few epochs, evaluate, resume, and check every file a run writes."""

import json

import numpy as np
import pytest

from tests.conftest import QUICK_TRAIN_FLAGS, REPO, run_script
from training.train import TrainConfig, class_weights

pytestmark = pytest.mark.slow


def test_run_writes_every_artefact(quick_run):
    for name in ("model.keras", "checkpoint.keras", "checkpoint.json", "history.csv", "metrics.json",
                 "training_curves.png", "confusion_matrix.png", "config.json"):
        assert (quick_run / name).is_file(), name
    history = (quick_run / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 4  # header + one row per epoch
    config = json.loads((quick_run / "config.json").read_text())
    assert config["epochs"] == 4 and config["widths"] == [16, 32, 64]


def test_trained_model_beats_the_majority_class_on_public_and_private_test(quick_run):
    metrics = json.loads((quick_run / "metrics.json").read_text())
    for split in ("PublicTest", "PrivateTest"):
        report = metrics["splits"][split]["single"]
        supports = [c["support"] for c in report["per_class"].values()]
        majority = max(supports) / sum(supports)  # what always answering one class scores
        assert report["accuracy"] > 1.3 * majority, (split, report["accuracy"], majority)
        assert report["macro_f1"] > 0.15


def test_evaluate_reproduces_the_metrics_of_the_run(quick_run, fer2013_dir, tmp_path):
    result = run_script("training/evaluate.py", "--model", str(quick_run / "model.keras"), "--data",
                        str(fer2013_dir), "--limit", "700", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    fresh = json.loads((tmp_path / "evaluation.json").read_text())["splits"]
    recorded = json.loads((quick_run / "metrics.json").read_text())["splits"]
    for split in ("PublicTest", "PrivateTest"):
        for mode in ("single", "flip_tta"):
            assert fresh[split][mode]["confusion_matrix"] == recorded[split][mode]["confusion_matrix"]
        assert (tmp_path / f"confusion_matrix_{split}.png").stat().st_size > 1000


def test_resume_continues_from_the_checkpoint(quick_run, fer2013_dir, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(quick_run, run_dir)
    state = json.loads((run_dir / "checkpoint.json").read_text())
    assert state["epoch"] == 4
    # A finished run resumes to its end at once and re-writes its reports from the kept best model.
    (run_dir / "metrics.json").unlink()
    result = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(run_dir), "--resume")
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr and (run_dir / "metrics.json").is_file()
    assert len((run_dir / "history.csv").read_text().splitlines()) == 5


def test_resume_without_checkpoint_fails_clearly(tmp_path):
    result = run_script("training/train.py", "--out", str(tmp_path), "--resume")
    assert result.returncode == 2 and "no checkpoint to resume from" in result.stderr


def test_resume_from_a_truncated_checkpoint_state_fails_naming_the_file(quick_run, fer2013_dir, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(quick_run, run_dir)
    (run_dir / "checkpoint.json").write_text('{"epoch": 4, "best_val')  # a power cut mid-write
    result = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(run_dir), "--resume")
    assert result.returncode == 2, result.stderr
    assert "checkpoint.json: not a checkpoint state" in result.stderr and "Traceback" not in result.stderr


def test_config_file_rejects_unknown_keys(tmp_path):
    (tmp_path / "c.toml").write_text("epochs = 3\nlearning_rat = 0.1\n")
    with pytest.raises(ValueError, match=r"c.toml: unknown key 'learning_rat'"):
        TrainConfig.from_toml(tmp_path / "c.toml")


def test_a_recipe_takes_its_base_recipes_keys_and_overrides_them(tmp_path):
    (tmp_path / "long.toml").write_text("epochs = 200\nseed = 3\nlearning_rate = 0.03\n")
    (tmp_path / "student.toml").write_text('base = "long.toml"\nseed = 7\n')
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "s.toml").write_text('base = "../student.toml"\nepochs = 8\n')
    config = TrainConfig.from_toml(tmp_path / "short" / "s.toml")
    assert (config.epochs, config.seed, config.learning_rate) == (8, 7, 0.03)


def test_a_cycle_of_base_recipes_or_a_missing_base_is_named(tmp_path):
    (tmp_path / "a.toml").write_text('base = "b.toml"\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(ValueError, match=r"a.toml: base recipes form a cycle: .*a.toml -> .*b.toml -> .*a.toml"):
        TrainConfig.from_toml(tmp_path / "a.toml")
    (tmp_path / "c.toml").write_text('base = "gone.toml"\n')
    with pytest.raises(ValueError, match=r"c.toml: key 'base': cannot read .*gone.toml"):
        TrainConfig.from_toml(tmp_path / "c.toml")


def test_a_bad_recipe_stops_train_py_with_exit_2_naming_the_file_and_no_traceback(tmp_path):
    (tmp_path / "broken.toml").write_text("epochs = [\n")
    result = run_script("training/train.py", "--config", str(tmp_path / "broken.toml"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "broken.toml: " in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # stopped before anything was written


@pytest.mark.parametrize("recipe", sorted((REPO / "training/configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_committed_recipe_loads_and_says_how_to_run_it(recipe):
    config = TrainConfig.from_toml(recipe)
    header = "".join(line for line in recipe.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert f"training/train.py --config training/configs/{recipe.name}" in header
    for made_first in (config.init_from, config.teacher):  # files the header's earlier commands make
        assert made_first is None or (made_first.startswith("runs/") and made_first in header), made_first


def test_class_weights_favour_rare_classes():
    labels = np.array([3] * 90 + [1] * 10)
    weights = class_weights(labels, 0.5)
    assert weights[1] > weights[3]
    assert np.isclose(np.mean([weights[v] for v in labels]), 1.0)
    assert class_weights(labels, 0) is None


def test_warm_restart_starts_from_the_given_model_and_records_the_lineage(quick_run, fer2013_dir, tmp_path):
    from training.lineage import run_lineage, total_train_seconds

    run_dir = tmp_path / "restart"
    result = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(run_dir), *QUICK_TRAIN_FLAGS,
                        "--epochs", "1", "--init-from", str(quick_run / "model.keras"))
    assert result.returncode == 0, result.stderr
    assert f"weights initialised from {quick_run / 'model.keras'}" in result.stderr
    stages = run_lineage(run_dir / "model.keras")
    assert [s["run"] for s in stages] == [str(quick_run), str(run_dir)]
    assert stages[0]["epochs"] == 4 and stages[1]["epochs"] == 1
    assert "--init-from" in stages[1]["command"]
    assert total_train_seconds(stages) == pytest.approx(sum(s["train_seconds"] for s in stages))


def test_warm_restart_from_another_architecture_fails_naming_the_file(quick_run, fer2013_dir, tmp_path):
    model = quick_run / "model.keras"
    result = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(tmp_path), *QUICK_TRAIN_FLAGS,
                        "--widths", "8,16", "--init-from", str(model))
    assert result.returncode == 2
    assert f"{model}: init_from model has a different architecture" in result.stderr
    missing = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(tmp_path), *QUICK_TRAIN_FLAGS,
                         "--init-from", str(tmp_path / "nope.keras"))
    assert missing.returncode == 2 and "nope.keras: init_from model not found" in missing.stderr


def test_lineage_refuses_a_loop(tmp_path):
    from training.lineage import run_lineage

    for name, parent in (("a", "b"), ("b", "a")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"init_from": str(tmp_path / parent / "model.keras")}))
    with pytest.raises(ValueError, match="loops back"):
        run_lineage(tmp_path / "a" / "model.keras")


def test_lineage_of_a_run_from_a_recovered_model_reaches_the_run_that_trained_it(tmp_path, shipped_model):
    from convert.dequantize import write_record
    from device.classifier import load_card
    from training.lineage import run_lineage

    (tmp_path / "recovered").mkdir()
    write_record(tmp_path / "recovered" / "model.keras", shipped_model, "python convert/dequantize.py ...")
    (tmp_path / "next").mkdir()
    (tmp_path / "next" / "config.json").write_text(json.dumps({
        "command": "train.py --out next", "init_from": str(tmp_path / "recovered" / "model.keras"), "epochs": 8}))
    stages = run_lineage(tmp_path / "next" / "model.keras")
    shipped_stages = load_card(shipped_model)["training_run"]["stages"]
    assert stages[: len(shipped_stages)] == shipped_stages
    recovery, last = stages[len(shipped_stages) :]
    assert recovery["command"] == "python convert/dequantize.py ..." and recovery["train_seconds"] == 0.0
    assert last["command"] == "train.py --out next"


def test_lineage_of_an_unfinished_run_says_how_far_it_got(tmp_path):
    from training.lineage import run_lineage

    (tmp_path / "config.json").write_text(json.dumps({"command": "train.py --out runs/long", "epochs": 200}))
    (tmp_path / "history.csv").write_text("epoch,accuracy,loss,val_accuracy,val_loss\n"
                                          "0,0.3,1.8,0.40,1.6\n1,0.4,1.6,0.55,1.4\n2,0.5,1.5,0.52,1.4\n")
    (tmp_path / "checkpoint.json").write_text(json.dumps({"epoch": 3, "best_val_accuracy": 0.55,
                                                          "epoch_seconds": [100.0, 110.0, 120.0]}))
    [stage] = run_lineage(tmp_path / "model.keras")
    assert stage["epochs_done"] == 3 and stage["epochs"] == 200 and stage["best_epoch"] == 2
    assert stage["train_seconds"] == 330.0


def test_a_teacher_members_lineage_comes_from_its_run_or_its_model_card(tmp_path, shipped_model):
    from device.classifier import load_card
    from training.lineage import member_lineage, recipe_seconds

    shipped_stages = load_card(shipped_model)["training_run"]["stages"]
    assert member_lineage(shipped_model) == shipped_stages and shipped_stages
    assert member_lineage(tmp_path / "uncarded.tflite") == []
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json: not a model card"):
        member_lineage(tmp_path / "broken.tflite")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"command": "train.py --seed 4", "epochs": 9}))
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"train_seconds": 900.0, "best_epoch": 8, "epochs": 9}))
    [stage] = member_lineage(tmp_path / "run" / "model.keras")
    assert stage["command"] == "train.py --seed 4" and stage["train_seconds"] == 900.0

    student = [{"train_seconds": 600.0}]
    teacher = {"accuracy": [{"stages": [stage]}, {"stages": shipped_stages}], "seconds": 30.0}
    shipped_seconds = sum(s["train_seconds"] for s in shipped_stages)
    assert recipe_seconds(student, teacher) == pytest.approx(600 + 900 + shipped_seconds + 30)
    assert recipe_seconds(student, None) == 600.0
    assert recipe_seconds(student, {"file": "runs/teacher.npz"}) is None  # a teacher without its record


def test_copy_weights_copies_every_tensor(quick_run):
    from training.evaluate import load_keras_model
    from training.model import build_model
    from training.train import copy_weights

    model = build_model((16, 32, 64))
    copy_weights(quick_run / "model.keras", model)
    saved = load_keras_model(quick_run / "model.keras")
    for ours, theirs in zip(model.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


RECIPE_FLAGS = ["--config", "training/configs/long.toml", "--epochs", "2", "--limit", "1400", "--limit-val", "350",
                "--widths", "8,16,32", "--ema", "0.9", "--warmup-epochs", "1"]


def history_rows(run_dir):
    import csv

    with (run_dir / "history.csv").open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def test_an_interrupted_and_resumed_run_matches_an_uninterrupted_one(fer2013_dir, tmp_path):
    """The long recipe (random crops, CutMix, SGD, EMA) stopped after epoch 1 and resumed follows the run
    that was never stopped: same schedule, same batches, same optimizer state."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    result = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(whole), *RECIPE_FLAGS)
    assert result.returncode == 0, result.stderr
    first = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(parts), *RECIPE_FLAGS,
                       "--session-epochs", "1")
    assert first.returncode == 0 and "stopped after epoch 1 of 2" in first.stderr, first.stderr
    assert not (parts / "metrics.json").exists()  # PrivateTest is measured once, at the end of the whole run
    second = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(parts), "--resume")
    assert second.returncode == 0, second.stderr
    uninterrupted, resumed = history_rows(whole), history_rows(parts)
    assert [r["epoch"] for r in resumed] == [0, 1]
    for a, b in zip(uninterrupted, resumed, strict=True):
        # Equal up to the float non-determinism of multi-threaded CPU kernels.
        assert abs(a["loss"] - b["loss"]) < 0.02 * a["loss"], (a, b)
        assert abs(a["val_accuracy"] - b["val_accuracy"]) <= 0.03, (a, b)
    # The run's wall clock is the sum of its timed epochs over both sessions.
    seconds = json.loads((parts / "checkpoint.json").read_text())["epoch_seconds"]
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
    assert json.loads((parts / "metrics.json").read_text())["train_seconds"] == pytest.approx(sum(seconds), abs=0.2)


def test_a_crop_trained_model_is_saved_behind_a_centre_crop(fer2013_dir, tmp_path):
    from training.evaluate import load_keras_model

    result = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(tmp_path), *RECIPE_FLAGS,
                        "--epochs", "1")
    assert result.returncode == 0, result.stderr
    model = load_keras_model(tmp_path / "model.keras")
    assert model.input_shape == (None, 48, 48, 1)
    assert model.get_layer("centre_crop").output.shape[1:3] == (40, 40)
