"""Classification metrics from a confusion matrix, in numpy alone (usable by training, convert, benchmarks).

Definitions are the usual ones (e.g. scikit-learn's `precision_recall_fscore_support`): per-class
precision TP/(TP+FP), recall TP/(TP+FN), F1 their harmonic mean (0 where undefined), macro-F1 the
unweighted mean of the per-class F1 over the classes present (with at least one true example; all seven on
FER2013's splits), so that a folder without some classes is not marked down for classes it lacks.
Balanced accuracy is the unweighted mean of the per-class recall over the same classes (scikit-learn's
`balanced_accuracy_score`): what accuracy would be on a test set with every class equally frequent.
"""

from __future__ import annotations

import numpy as np

from device.contract import LABELS, NUM_CLASSES


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """`(K, K) int64` matrix, rows = true class, columns = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def classification_report(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

    Args:
        labels: `(N,) int` true classes.
        probabilities: `(N, 7) float` class scores (argmax is the prediction).

    Returns:
        A JSON-ready dict: `accuracy`, `macro_f1`, `balanced_accuracy` (fractions in [0, 1]; the last two
        over `classes_present`), `count`,
        `classes_present` (labels with support > 0), `per_class` (by label name), `confusion_matrix`
        (list of lists, rows = true class).
    """
    predictions = np.argmax(probabilities, axis=1)
    matrix = confusion_matrix(labels, predictions)
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    total = int(matrix.sum())
    present = actual > 0
    return {
        "count": total,
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "classes_present": [name for name, here in zip(LABELS, present, strict=True) if here],
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(actual[i])}
            for i, name in enumerate(LABELS)
        },
        "confusion_matrix": matrix.tolist(),
    }
