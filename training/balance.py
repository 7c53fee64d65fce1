"""Class balance: the FER2013 class prior, the logit-adjusted loss, and figures under either prior.

FER2013 Training holds 436 disgust faces of 28,709 (1.5%) and 7,215 happy ones (25%). A model trained by
plain cross-entropy learns these frequencies as a prior and rarely answers "disgust". Logit adjustment
(Menon, Jayasumana, Rawat, Jain, Veit and Kumar, "Long-tail learning via logit adjustment", ICLR 2021,
https://arxiv.org/abs/2007.07314) trains on `softmax(logits + tau * log prior)`; at `tau = 1` the raw
`softmax(logits)` the deployed model outputs is then the balanced (prior-free, "uniform") classifier.
Our models end in a softmax, so the loss works from the probabilities: `log p = logits - logsumexp(logits)`,
and `softmax(log p + tau * log prior) = softmax(logits + tau * log prior)`, the same thing.

A model trained with `tau` carries the prior `pi ** (1 - tau)`: `output_prior_power(tau)`, which the
model card records and `device.prior` converts from (`[classifier] prior`).
"""

from __future__ import annotations

import keras
import numpy as np

from device.contract import LABELS, NUM_CLASSES
from device.prior import PRIORS, change_prior
from training.metrics import classification_report

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1] before the log, as Keras' crossentropy clips


def class_frequencies(labels: np.ndarray) -> np.ndarray:
    """`(7,) float64` class frequencies of `(N,) int` labels (each class at least one count, so > 0)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_CLASSES).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    return counts / counts.sum()


def frequency_table(frequencies: np.ndarray) -> dict[str, float]:
    """`{label: fraction}` for a model card's `train_class_frequencies`."""
    return {label: float(f) for label, f in zip(LABELS, frequencies, strict=True)}


def output_prior_power(tau: float) -> float:
    """The power of the training frequencies a model trained with logit-adjustment `tau` carries: `1 - tau`
    (0 disables the adjustment: FER2013's prior, power 1; tau 1: uniform, power 0)."""
    return 1.0 - float(tau)


def output_prior_name(power: float) -> str:
    """"fer2013" (power 1), "uniform" (power 0), else "fer2013^<power>" for a model card's `output_prior`."""
    for name, value in PRIORS.items():
        if power == value:
            return name
    return f"fer2013^{power:g}"


def adjusted_log_probabilities(probabilities, log_prior, tau: float):
    """`log softmax(log p + tau * log prior)`: `(B, 7)` tensors of the model's probabilities in, log
    probabilities of the adjusted classifier out (any Keras backend)."""
    ops = keras.ops
    logits = ops.log(ops.clip(probabilities, EPSILON, 1.0)) + tau * log_prior
    return logits - ops.logsumexp(logits, axis=-1, keepdims=True)


def soft_crossentropy(targets, log_probabilities, label_smoothing: float = 0.0):
    """`(B,)` cross-entropy of `(B, 7)` soft targets (label-smoothed: `t * (1 - s) + s / 7`) against log
    probabilities."""
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / NUM_CLASSES
    return -keras.ops.sum(targets * log_probabilities, axis=-1)


@keras.saving.register_keras_serializable(package="fer_edge")
class LogitAdjustedCrossentropy(keras.losses.Loss):
    """Cross-entropy on `softmax(log p + tau * log prior)` (Menon et al., ICLR 2021, eq. 10).

    Args:
        prior: `(7,)` training class frequencies.
        tau: adjustment strength (1: the paper's default; 0: plain cross-entropy).
        label_smoothing: as `keras.losses.CategoricalCrossentropy`.

    Inputs: `y_true` `(B, 7)` soft labels; `y_pred` `(B, 7)` probabilities (the model's softmax).
    """

    def __init__(self, prior, tau: float = 1.0, label_smoothing: float = 0.0, name: str = "logit_adjusted_ce",
                 **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.prior = [float(p) for p in np.asarray(prior, dtype=np.float64)]
        self.tau, self.label_smoothing = float(tau), float(label_smoothing)
        self._log_prior = np.log(np.asarray(self.prior, dtype=np.float32))

    def call(self, y_true, y_pred):
        log_p = adjusted_log_probabilities(y_pred, keras.ops.convert_to_tensor(self._log_prior), self.tau)
        return soft_crossentropy(y_true, log_p, self.label_smoothing)

    def get_config(self) -> dict:
        return {**super().get_config(), "prior": self.prior, "tau": self.tau, "label_smoothing": self.label_smoothing}


def prior_figures(labels: np.ndarray, probabilities: dict[str, np.ndarray], frequencies: np.ndarray,
                  source_power: float) -> dict:
    """Accuracy, balanced accuracy, macro-F1 and per-class recall under each prior of `device.prior.PRIORS`.

    Args:
        labels: `(N,) int` true classes.
        probabilities: `{mode: (N, 7) float}` the model's probabilities, e.g. `{"single": ..., "flip_tta": ...}`.
        frequencies: `(7,)` FER2013 Training class frequencies.
        source_power: the prior the probabilities carry (`device.prior`: 1 FER2013's, 0 uniform).

    Returns:
        `{prior: {mode: {"accuracy", "balanced_accuracy", "macro_f1", "per_class_recall",
        "per_class_precision"}}}`.
    """
    result: dict = {}
    for name, power in PRIORS.items():
        result[name] = {}
        for mode, probs in probabilities.items():
            report = classification_report(labels, change_prior(probs, frequencies, source_power, power))
            result[name][mode] = {key: report[key] for key in ("accuracy", "balanced_accuracy", "macro_f1")}
            result[name][mode]["per_class_recall"] = {k: v["recall"] for k, v in report["per_class"].items()}
            result[name][mode]["per_class_precision"] = {k: v["precision"] for k, v in report["per_class"].items()}
    return result


def prior_summary(figures: dict, mode: str = "single") -> str:
    """One line per prior: accuracy, balanced accuracy, macro-F1 and the lowest per-class recall."""
    lines = []
    for name, modes in figures.items():
        r = modes[mode]
        worst = min(r["per_class_recall"], key=r["per_class_recall"].get)
        lines.append(f"  prior {name:<8} ({mode}) accuracy {r['accuracy']:.2%}  balanced {r['balanced_accuracy']:.2%}"
                     f"  macro-F1 {r['macro_f1']:.4f}  lowest recall {worst} {r['per_class_recall'][worst]:.3f}")
    return "\n".join(lines)
