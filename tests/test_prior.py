"""`[classifier] prior`: Bayes' rule for a changed class prior, from the prior the model card records."""

import json
import shutil

import numpy as np
import pytest

from device import config as cfg
from device.classifier import EmotionClassifier, ModelError, restrict_to_labels
from device.contract import LABELS
from device.prior import card_frequencies, card_output_power, change_prior

FREQUENCIES = np.array([0.14, 0.015, 0.14, 0.25, 0.17, 0.11, 0.175])


def test_uniform_divides_by_the_frequencies_and_renormalises():
    p = np.array([[0.1, 0.05, 0.1, 0.4, 0.15, 0.1, 0.1]], np.float32)
    moved = change_prior(p, FREQUENCIES, 1.0, 0.0)
    expected = p / FREQUENCIES / (p / FREQUENCIES).sum()
    np.testing.assert_allclose(moved, expected, rtol=1e-6)
    assert moved[0].argmax() == LABELS.index("disgust")  # 0.05 of a 1.5% class outweighs 0.4 of a 25% one
    np.testing.assert_allclose(change_prior(moved, FREQUENCIES, 0.0, 1.0), p, rtol=1e-5)  # and back
    assert change_prior(p, FREQUENCIES, 1.0, 1.0) is p  # nothing to change: no conversion, no copy


def test_the_card_records_the_prior_and_frequencies_of_the_shipped_model(shipped_model):
    card = json.loads(shipped_model.with_suffix(".json").read_text())
    assert card["output_prior"] == "fer2013" and card_output_power(card) == 1.0
    frequencies = card_frequencies(card)
    assert np.isclose(frequencies.sum(), 1.0)
    assert frequencies[LABELS.index("disgust")] == pytest.approx(436 / 28709, rel=1e-3)
    figures = card["evaluation"]["splits"]["PrivateTest"]["int8"]["priors"]
    assert set(figures) == {"fer2013", "uniform"}
    single = figures["fer2013"]["single"]
    assert single["accuracy"] == pytest.approx(card["evaluation"]["splits"]["PrivateTest"]["int8"]["accuracy"])
    assert set(single) == {"accuracy", "balanced_accuracy", "macro_f1", "per_class_recall", "per_class_precision"}


@pytest.fixture(scope="module")
def faces(public_test):
    from training.data import limit

    return limit(public_test, 70).images


def test_classifier_converts_from_the_cards_prior(shipped_model, faces):
    raw = EmotionClassifier(shipped_model).predict(faces)
    frequencies = card_frequencies(json.loads(shipped_model.with_suffix(".json").read_text()))
    np.testing.assert_array_equal(EmotionClassifier(shipped_model, prior="fer2013").predict(faces), raw)
    uniform = EmotionClassifier(shipped_model, prior="uniform").predict(faces)
    np.testing.assert_allclose(uniform, change_prior(raw, frequencies, 1.0, 0.0), atol=1e-6)
    assert (uniform.argmax(1) == LABELS.index("disgust")).sum() > (raw.argmax(1) == LABELS.index("disgust")).sum()


def test_a_uniform_model_is_not_converted_twice(shipped_model, faces, tmp_path):
    model = tmp_path / "fer_int8.tflite"
    shutil.copy(shipped_model, model)
    card = json.loads(shipped_model.with_suffix(".json").read_text())
    (tmp_path / "fer_int8.json").write_text(json.dumps({**card, "output_prior": "uniform", "output_prior_power": 0.0}))
    raw = EmotionClassifier(model).predict(faces)
    np.testing.assert_array_equal(EmotionClassifier(model, prior="uniform").predict(faces), raw)
    to_fer = EmotionClassifier(model, prior="fer2013").predict(faces)
    np.testing.assert_allclose(to_fer, change_prior(raw, card_frequencies(card), 0.0, 1.0), atol=1e-6)


def test_the_prior_applies_before_the_label_subset(shipped_model, faces):
    chosen = ["happy", "sad", "neutral"]
    raw = EmotionClassifier(shipped_model, prior="uniform").predict(faces)
    subset = EmotionClassifier(shipped_model, prior="uniform", labels=chosen).predict(faces)
    np.testing.assert_allclose(subset, restrict_to_labels(raw, chosen), atol=1e-6)


def test_a_card_without_frequencies_cannot_change_the_prior(shipped_model, tmp_path):
    model = tmp_path / "fer_int8.tflite"
    shutil.copy(shipped_model, model)
    card = json.loads(shipped_model.with_suffix(".json").read_text())
    del card["train_class_frequencies"]
    (tmp_path / "fer_int8.json").write_text(json.dumps(card))
    EmotionClassifier(model, prior="fer2013")  # as the model outputs: no frequencies needed
    with pytest.raises(ModelError, match="prior 'uniform' asked: model card has no train_class_frequencies"):
        EmotionClassifier(model, prior="uniform")


def test_config_key_is_validated_and_reaches_the_daemons_classifier(shipped_model):
    from device.recognition import build_stages

    with pytest.raises(cfg.ConfigError, match="prior"):
        cfg.load_settings(None, {("classifier", "prior"): "kitchen"})
    settings = cfg.load_settings(None, {("classifier", "prior"): "uniform"})
    assert cfg.ClassifierSettings().prior == "fer2013"
    _, classifier = build_stages(settings)
    assert classifier.prior == "uniform"


def test_evaluate_reads_the_output_prior_from_the_card_or_the_run(shipped_model, tmp_path):
    from training.evaluate import output_prior

    shipped = output_prior(shipped_model)
    assert shipped.power == 1.0 and np.isclose(shipped.frequencies.sum(), 1.0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"logit_adjust_tau": 1.0}))
    frequencies = np.full(7, 1 / 7)
    assert output_prior(run / "model.keras", frequencies=frequencies).power == 0.0


def test_a_card_with_an_unknown_prior_name_is_a_model_error(shipped_model, tmp_path):
    model = tmp_path / "fer_int8.tflite"
    shutil.copy(shipped_model, model)
    card = json.loads(shipped_model.with_suffix(".json").read_text())
    card.pop("output_prior_power")  # the name alone, as a hand-edited card might have it
    (tmp_path / "fer_int8.json").write_text(json.dumps({**card, "output_prior": "kitchen"}))
    with pytest.raises(ModelError, match="unknown prior 'kitchen'"):
        EmotionClassifier(model, prior="uniform")
