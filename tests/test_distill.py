"""Distillation (Hinton, Vinyals and Dean 2015): the loss, the teacher file, and a student run that resumes."""

import hashlib
import json

import keras
import numpy as np
import pytest

from device.classifier import load_card
from tests.conftest import run_script
from training.distill import DistillationLoss, label_accuracy, soften, teacher_rows, teacher_summary

PRIOR = np.array([0.14, 0.015, 0.14, 0.25, 0.17, 0.11, 0.175])


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def batch(seed=0, rows=6):
    rng = np.random.default_rng(seed)
    labels = keras.utils.to_categorical(rng.integers(0, 7, rows), 7).astype(np.float32)
    return labels, softmax(rng.normal(size=(rows, 7))), softmax(rng.normal(size=(rows, 7)))


def test_the_loss_is_hintons():
    labels, teacher, student = batch()
    alpha, t = 0.7, 3.0
    loss = DistillationLoss(alpha, t)(np.concatenate([labels, teacher], axis=1), student)
    soft_t, soft_s = softmax(np.log(teacher) / t), softmax(np.log(student) / t)
    kl = np.sum(soft_t * (np.log(soft_t) - np.log(soft_s)), axis=1)
    ce = -np.sum(labels * np.log(student), axis=1)
    assert float(loss) == pytest.approx(np.mean(alpha * t * t * kl + (1 - alpha) * ce), rel=1e-4)


def test_alpha_zero_is_crossentropy_and_a_student_equal_to_its_teacher_has_no_soft_loss():
    labels, teacher, student = batch(1)
    targets = np.concatenate([labels, teacher], axis=1)
    ce = keras.losses.CategoricalCrossentropy()(labels, student)
    assert float(DistillationLoss(0.0, 4.0)(targets, student)) == pytest.approx(float(ce), rel=1e-5)
    assert float(DistillationLoss(1.0, 4.0)(targets, teacher)) == pytest.approx(0.0, abs=1e-5)
    # Validation batches carry the labels alone: the labels' term only.
    assert float(DistillationLoss(0.5, 4.0)(labels, student)) == pytest.approx(float(ce), rel=1e-5)


def test_logit_adjustment_touches_the_labels_term_only():
    labels, teacher, student = batch(2)
    targets = np.concatenate([labels, teacher], axis=1)
    pure_soft = DistillationLoss(1.0, 2.0, prior=PRIOR, tau=1.0)(targets, student)
    assert float(pure_soft) == pytest.approx(float(DistillationLoss(1.0, 2.0)(targets, student)), rel=1e-6)
    adjusted = student * PRIOR / (student * PRIOR).sum(axis=1, keepdims=True)
    hard = DistillationLoss(0.0, 2.0, prior=PRIOR, tau=1.0)(targets, student)
    assert float(hard) == pytest.approx(float(-np.mean(np.sum(labels * np.log(adjusted), axis=1))), rel=1e-5)


def test_temperature_softens_and_accuracy_reads_the_labels():
    p = np.array([[0.9, 0.05, 0.05, 0, 0, 0, 0]], np.float32) + 1e-6
    assert float(np.max(keras.ops.convert_to_numpy(soften(p, 4.0)))) < 0.9
    y = np.concatenate([keras.utils.to_categorical([2], 7), np.eye(7, dtype=np.float32)[[5]] * 0.99], axis=1)
    pred = np.eye(7, dtype=np.float32)[[2]]
    assert float(keras.ops.convert_to_numpy(label_accuracy(y, pred))[0]) == 1.0
    with pytest.raises(ValueError, match="alpha"):
        DistillationLoss(1.5, 4.0)


def test_teacher_rows_follow_the_image_names(tmp_path):
    probs = softmax(np.random.default_rng(0).normal(size=(3, 7)))
    np.savez(tmp_path / "t.npz", probabilities=probs, names=np.array(["a.png", "b.png", "c.png"]))
    np.testing.assert_array_equal(teacher_rows(tmp_path / "t.npz", ["c.png", "a.png"]), probs[[2, 0]])
    with pytest.raises(ValueError, match="no teacher probabilities for 1 of 2 Training images"):
        teacher_rows(tmp_path / "t.npz", ["a.png", "z.png"])
    with pytest.raises(OSError, match="teacher file not found"):
        teacher_rows(tmp_path / "none.npz", ["a.png"])


def test_a_file_that_is_not_a_teacher_is_named(tmp_path):
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 cut short")  # a zip header and nothing after it
    (tmp_path / "text.npz").write_text("probabilities\n")
    for name in ("cut.npz", "text.npz"):
        with pytest.raises(ValueError, match=f"{name}: not a teacher file"):
            teacher_rows(tmp_path / name, ["a.png"])
        with pytest.raises(ValueError, match=f"{name}: not a teacher file"):
            teacher_summary(tmp_path / name)
    assert teacher_summary(tmp_path / "absent.npz") is None
    np.savez(tmp_path / "old.npz", probabilities=np.zeros((1, 7)), names=np.array(["a.png"]))
    assert teacher_summary(tmp_path / "old.npz") is None  # a teacher made before summaries were recorded


STUDENT_FLAGS = ["--config", "training/configs/long.toml", "--epochs", "2", "--limit", "700", "--limit-val", "140",
                 "--widths", "8,16,32", "--warmup-epochs", "1", "--seed", "0", "--camera", "0.5",
                 "--logit-adjust-tau", "1.0", "--distill-alpha", "0.5", "--distill-temperature", "3"]


@pytest.mark.slow
def test_a_teacher_ensemble_distils_into_a_student_that_resumes(fer2013_dir, shipped_model, tmp_path):
    """The teacher command on two members (the shipped int8 model twice: a .tflite member, averaged), then a
    2-epoch student with distillation, logit adjustment and camera augmentation, stopped and resumed."""
    teacher = tmp_path / "teacher.npz"
    result = run_script("training/distill.py", "teacher", "--model", str(shipped_model), "--model",
                        str(shipped_model), "--data", str(fer2013_dir), "--limit", "700", "--out", str(teacher))
    assert result.returncode == 0, result.stderr
    with np.load(teacher) as saved:
        assert saved["probabilities"].shape == (len(saved["names"]), 7) and len(saved["names"]) >= 600
        np.testing.assert_allclose(saved["probabilities"].sum(axis=1), 1.0, atol=1e-3)
        assert saved["public_accuracy"][0] == saved["public_accuracy"][1] == saved["ensemble_public_accuracy"]
        assert saved["ensemble_public_accuracy"] > 0.55  # the shipped model, flip TTA, on 140 PublicTest faces
    summary = teacher_summary(teacher)
    assert summary["tta"] == "flip" and summary["seconds"] > 0 and "--limit 700" in summary["command"]
    member = summary["accuracy"][0]
    assert member["stages"] == load_card(shipped_model)["training_run"]["stages"]
    assert member["sha256"] == hashlib.sha256(shipped_model.read_bytes()).hexdigest()
    run = tmp_path / "student"
    first = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(run), *STUDENT_FLAGS,
                       "--teacher", str(teacher), "--session-epochs", "1")
    assert first.returncode == 0 and "stopped after epoch 1 of 2" in first.stderr, first.stderr
    second = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(run), "--resume")
    assert second.returncode == 0, second.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["output_prior_power"] == 0.0
    assert set(metrics["splits"]["PrivateTest"]["priors"]) == {"fer2013", "uniform"}
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].split(",")[:2] == ["epoch", "accuracy"] and len(history) == 3


@pytest.mark.slow
def test_a_student_without_its_teachers_images_fails_clearly(fer2013_dir, tmp_path):
    teacher = tmp_path / "t.npz"
    np.savez(teacher, probabilities=np.full((1, 7), 1 / 7, np.float32), names=np.array(["nope.png"]))
    result = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(tmp_path / "r"), *STUDENT_FLAGS,
                        "--teacher", str(teacher))
    assert result.returncode == 2 and "no teacher probabilities for" in result.stderr
