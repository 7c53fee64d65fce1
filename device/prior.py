"""The class prior of the classifier's probabilities (`[classifier] prior`): FER2013's, or uniform.

A model trained by plain cross-entropy on FER2013 Training outputs `p(y | x)` under FER2013's class
frequencies `pi` (436 disgust faces of 28,709): it has learned that disgust is rare. Under another prior
`pi'`, Bayes' rule gives `p'(y | x) = p(y | x) * pi'(y) / pi(y)`, renormalised over the classes
(Saerens, Latinne and Decaestecker, "Adjusting the Outputs of a Classifier to New a Priori Probabilities",
Neural Computation 14(1), 2002). With a uniform `pi'` this divides by the FER2013 frequencies.

A model trained with logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021;
`training/balance.py`) already outputs prior-free ("uniform") probabilities. Its model card says so
(`output_prior`), and the switch converts from the card's prior, never twice. Priors are written as a
power of the FER2013 frequencies, `pi ** power`: "fer2013" is power 1, "uniform" power 0; a model trained
with a logit-adjustment tau between 0 and 1 carries power `1 - tau` (card key `output_prior_power`).
"""

from __future__ import annotations

import numpy as np

from device.contract import LABELS, NUM_CLASSES

PRIORS = {"fer2013": 1.0, "uniform": 0.0}  # name -> power of the FER2013 Training class frequencies


def prior_power(name: str) -> float:
    """The power of the FER2013 frequencies a named prior stands for.

    Raises:
        ValueError: an unknown name.
    """
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; allowed: {', '.join(PRIORS)}")
    return PRIORS[name]


def card_frequencies(card: dict) -> np.ndarray:
    """`(7,) float64` FER2013 Training class frequencies from a model card's `train_class_frequencies`
    (`{label: fraction}`), normalised to sum 1.

    Raises:
        ValueError: the card has none, or they are not seven positive numbers keyed by the labels.
    """
    table = card.get("train_class_frequencies")
    if not isinstance(table, dict) or set(table) != set(LABELS):
        raise ValueError("model card has no train_class_frequencies for the seven labels; convert the model "
                         "again with convert/quantize.py (or run convert/card_priors.py on its card)")
    values = np.array([float(table[label]) for label in LABELS], dtype=np.float64)
    if not np.all(values > 0):
        raise ValueError("model card train_class_frequencies must all be > 0")
    return values / values.sum()


def card_output_power(card: dict | None) -> float:
    """The prior power the card says the model's outputs carry: `output_prior_power` if present, else
    that of `output_prior`; a card without either (a model from before the switch) carries FER2013's (1.0)."""
    if not card:
        return PRIORS["fer2013"]
    if "output_prior_power" in card:
        return float(card["output_prior_power"])
    return prior_power(card.get("output_prior", "fer2013"))


def change_prior(probabilities: np.ndarray, frequencies: np.ndarray, source_power: float,
                 target_power: float) -> np.ndarray:
    """Move probabilities from prior `frequencies ** source_power` to `frequencies ** target_power`.

    Args:
        probabilities: `(N, 7)` float probabilities in the contract's label order.
        frequencies: `(7,)` class frequencies (FER2013 Training), > 0.
        source_power: the prior the probabilities carry (1: FER2013's, 0: uniform).
        target_power: the prior wanted.

    Returns:
        `(N, 7)` float32, each row summing to 1 (a row that was all 0 stays uniform); the input itself
        (no copy) when the two powers are equal.
    """
    if source_power == target_power:
        return probabilities
    factor = np.asarray(frequencies, dtype=np.float64) ** (target_power - source_power)
    moved = np.asarray(probabilities, dtype=np.float64) * factor
    total = moved.sum(axis=1, keepdims=True)
    uniform = np.full_like(moved, 1.0 / NUM_CLASSES)
    return np.where(total > 0, moved / np.where(total > 0, total, 1.0), uniform).astype(np.float32)
