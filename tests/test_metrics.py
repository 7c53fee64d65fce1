import numpy as np

from training.metrics import classification_report, confusion_matrix


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), num_classes=2)
    assert matrix.tolist() == [[1, 1], [0, 1]]


def test_report_matches_hand_computed_values():
    labels = np.array([0, 0, 1, 3, 3, 3])
    probs = np.eye(7)[[0, 1, 1, 3, 3, 0]]
    report = classification_report(labels, probs)
    assert report["accuracy"] == 4 / 6
    angry = report["per_class"]["angry"]
    assert (angry["precision"], angry["recall"]) == (0.5, 0.5)
    happy = report["per_class"]["happy"]
    assert happy["precision"] == 1.0 and happy["recall"] == 2 / 3
    # Macro-F1 is over the classes present in the labels (angry, disgust, happy), not all seven.
    f1 = [0.5, 2 * 0.5 / 1.5, 0.8]
    assert report["classes_present"] == ["angry", "disgust", "happy"]
    assert np.isclose(report["macro_f1"], np.mean(f1))
    assert report["per_class"]["fear"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_balanced_accuracy_is_the_mean_recall_over_present_classes():
    labels = np.array([0, 0, 0, 0, 1])
    probs = np.eye(7)[[0, 0, 0, 0, 0]]  # always "angry": 80% accuracy, half the classes found
    report = classification_report(labels, probs)
    assert report["accuracy"] == 0.8 and report["balanced_accuracy"] == 0.5
