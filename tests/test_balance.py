"""Logit adjustment (Menon et al., ICLR 2021) and the figures under each prior."""

import keras
import numpy as np
import pytest

from training.balance import (
    LogitAdjustedCrossentropy,
    class_frequencies,
    output_prior_name,
    output_prior_power,
    prior_figures,
)
from training.metrics import classification_report

PRIOR = np.array([0.14, 0.015, 0.14, 0.25, 0.17, 0.11, 0.175])


def probabilities(rows, seed=0):
    logits = np.random.default_rng(seed).normal(size=(rows, 7))
    return (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)


def test_frequencies_count_every_class():
    labels = np.array([0, 0, 3, 3, 3, 6])
    f = class_frequencies(labels)
    assert np.isclose(f.sum(), 1.0) and f[3] > f[0] > f[1] > 0  # an absent class still gets a count


def test_tau_zero_is_plain_crossentropy():
    y = keras.utils.to_categorical(np.arange(8) % 7, 7).astype(np.float32)
    p = probabilities(8)
    ours = LogitAdjustedCrossentropy(PRIOR, tau=0.0, label_smoothing=0.1)(y, p)
    theirs = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(y, p)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_tau_one_is_crossentropy_of_the_adjusted_softmax():
    y = keras.utils.to_categorical(np.arange(8) % 7, 7).astype(np.float32)
    p = probabilities(8, seed=1)
    adjusted = p * PRIOR / (p * PRIOR).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(adjusted[np.arange(8), np.arange(8) % 7]))
    assert float(LogitAdjustedCrossentropy(PRIOR, tau=1.0)(y, p)) == pytest.approx(expected, rel=1e-5)


def test_with_tau_one_the_best_answer_for_labels_drawn_from_the_prior_is_uniform():
    """Labels distributed as the prior, no evidence: plain CE wants the prior; logit adjustment wants uniform
    (the prior-free output the device's "uniform" setting assumes)."""
    targets = np.tile(PRIOR.astype(np.float32), (4, 1))
    uniform, prior = np.full((4, 7), 1 / 7, np.float32), np.tile(PRIOR.astype(np.float32), (4, 1))
    adjusted, plain = LogitAdjustedCrossentropy(PRIOR, tau=1.0), LogitAdjustedCrossentropy(PRIOR, tau=0.0)
    assert float(adjusted(targets, uniform)) < float(adjusted(targets, prior))
    assert float(plain(targets, prior)) < float(plain(targets, uniform))


def test_the_loss_survives_a_save_and_load_round_trip():
    loss = LogitAdjustedCrossentropy(PRIOR, tau=0.7, label_smoothing=0.05)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    y, p = keras.utils.to_categorical([1, 4], 7), probabilities(2)
    assert float(again(y, p)) == pytest.approx(float(loss(y, p)))


def test_prior_power_and_names():
    assert output_prior_power(0.0) == 1.0 and output_prior_power(1.0) == 0.0
    assert output_prior_name(1.0) == "fer2013" and output_prior_name(0.0) == "uniform"
    assert output_prior_name(0.5) == "fer2013^0.5"


def test_prior_figures_move_predictions_toward_rare_classes():
    labels = np.arange(70) % 7
    p = probabilities(70, seed=3)
    figures = prior_figures(labels, {"single": p}, PRIOR, source_power=1.0)
    report = classification_report(labels, p)
    assert figures["fer2013"]["single"]["accuracy"] == report["accuracy"]
    assert figures["fer2013"]["single"]["balanced_accuracy"] == report["balanced_accuracy"]
    rare = figures["uniform"]["single"]["per_class_recall"]["disgust"]
    assert rare >= figures["fer2013"]["single"]["per_class_recall"]["disgust"]
