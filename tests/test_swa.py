"""Stochastic weight averaging (training/swa.py) and BatchNormalization recalibration (training/batchnorm.py)
on real FER2013 Training faces, and an SWA run of training/train.py end to end."""

import csv
import json

import numpy as np
import pytest

from tests.conftest import run_script

CROP = 40


@pytest.fixture(scope="module")
def faces(fer2013_dir):
    from training import data

    return data.stratified_subset(data.load(fer2013_dir, "Training"), 40, seed=0).images  # (280, 48, 48, 1) uint8


def tiny_classifier(seed: int):
    import keras

    from training.model import build_model

    keras.utils.set_random_seed(seed)
    return build_model((8, 16), input_size=None)


def batch_norm_outputs(classifier, faces):
    """Each BatchNormalization's inference output on the centre crops of `faces`, by layer name."""
    import keras

    from device.contract import normalize
    from training.model import centre_cropped

    layers = [layer for layer in classifier.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = centre_cropped(keras.Model(classifier.input, [layer.output for layer in layers]), CROP)
    return dict(zip([layer.name for layer in layers], probe.predict(normalize(faces), verbose=0), strict=True))


def test_recalibrated_batch_norm_standardises_every_layer_on_the_faces(faces):
    """With gamma 1 and beta 0, a BatchNormalization whose statistics are those of its input outputs zero mean
    and variance var / (var + epsilon) per channel. That holds for every layer only if each was measured after
    the ones before it had been set, and, with probes built once, only if they see the weights of each call."""
    from training.batchnorm import BatchNormProbes

    classifier = tiny_classifier(0)
    before = batch_norm_outputs(classifier, faces)
    assert max(abs(out.mean(axis=(0, 1, 2))).max() for out in before.values()) > 0.1  # fresh statistics: 0 and 1
    probes = BatchNormProbes(classifier, CROP)
    for seed in (1, 2):  # the same probes, then other weights
        classifier.set_weights(tiny_classifier(seed).get_weights())
        probes.recalibrate(faces)
        for name, out in batch_norm_outputs(classifier, faces).items():
            layer = classifier.get_layer(name)
            var = np.asarray(layer.moving_variance)
            np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-3, err_msg=name)
            np.testing.assert_allclose(out.var(axis=(0, 1, 2)), var / (var + layer.epsilon), rtol=0.01,
                                       err_msg=name)


def epoch(callback, index: int, weights) -> list:
    """Play one epoch's validation as `model.fit` calls it; returns the weights validated."""
    classifier = callback.model.get_layer("fer_cnn")
    classifier.set_weights(weights)
    callback.on_epoch_begin(index)
    callback.on_test_begin()
    validated = classifier.get_weights()
    callback.on_test_end()
    callback.on_epoch_end(index)
    return validated


def test_weight_average_is_the_equal_weight_mean_of_epochs_and_survives_a_resume(faces, tmp_path):
    from training.model import with_augmentation
    from training.swa import WeightAverage

    train_model = with_augmentation(tiny_classifier(0), None)
    a, b, c = (tiny_classifier(seed).get_weights() for seed in (1, 2, 3))
    state = tmp_path / "swa.npz"
    average = WeightAverage(state, start=2, calibration=faces, crop=CROP)
    average.set_model(train_model)

    assert all(np.array_equal(v, w) for v, w in zip(epoch(average, 0, a), a, strict=True))  # before start: raw
    assert not state.exists()
    validated = epoch(average, 1, b)
    kernel = 0  # block0_conv0's kernel: averaged as it is, not recalibrated
    np.testing.assert_array_equal(validated[kernel], b[kernel])
    # Back to the raw weights for training after validation.
    raw = train_model.get_layer("fer_cnn").get_weights()
    assert all(np.array_equal(v, w) for v, w in zip(raw, b, strict=True))

    resumed = WeightAverage(state, start=2, calibration=faces, crop=CROP)  # as `--resume` builds it again
    resumed.set_model(train_model)
    assert resumed.count == 1
    validated = epoch(resumed, 2, c)
    np.testing.assert_allclose(validated[kernel], (b[kernel] + c[kernel]) / 2, atol=1e-7)
    assert resumed.count == 2

    # EpochCheckpoint swaps the average in again to save it: the same weights, not a third member.
    resumed.on_test_begin()
    again = train_model.get_layer("fer_cnn").get_weights()
    resumed.on_test_end()
    assert resumed.count == 2 and all(np.array_equal(v, w) for v, w in zip(again, validated, strict=True))


def test_an_epoch_the_saved_average_holds_is_not_counted_again_after_a_resume(faces, tmp_path):
    """A run stopped after swa.npz was written but before the epoch's checkpoint resumes at that epoch: its
    re-run is validated with the saved average, and the next epoch joins as the second member."""
    from training.model import with_augmentation
    from training.swa import WeightAverage

    train_model = with_augmentation(tiny_classifier(0), None)
    b, rerun, c = (tiny_classifier(seed).get_weights() for seed in (2, 4, 3))
    state = tmp_path / "swa.npz"
    first = WeightAverage(state, start=1, calibration=faces, crop=CROP)
    first.set_model(train_model)
    epoch(first, 0, b)

    resumed = WeightAverage(state, start=1, calibration=faces, crop=CROP)
    resumed.set_model(train_model)
    kernel = 0
    np.testing.assert_array_equal(epoch(resumed, 0, rerun)[kernel], b[kernel])  # epoch 0 again: not a member
    assert resumed.count == 1
    np.testing.assert_allclose(epoch(resumed, 1, c)[kernel], (b[kernel] + c[kernel]) / 2, atol=1e-7)
    with np.load(state) as saved:
        assert (int(saved["count"]), int(saved["epoch"])) == (2, 1)


def test_a_constant_rate_holds_the_peak_after_the_warm_up():
    from training.train import TrainConfig, make_optimizer

    optimizer = make_optimizer(TrainConfig(optimizer="sgd", learning_rate=0.01, warmup_epochs=1, epochs=5,
                                           lr_floor=1.0), steps_per_epoch=10)
    schedule = optimizer._learning_rate  # the LearningRateSchedule given to the optimizer
    assert float(schedule(0)) == pytest.approx(0.001)
    assert [float(schedule(step)) for step in (10, 30, 50)] == pytest.approx([0.01] * 3)


SWA_FLAGS = ["--config", "training/configs/swa.toml", "--init-from", "", "--epochs", "2", "--limit", "1400",
             "--limit-val", "350", "--widths", "8,16,32", "--swa-start", "1"]


@pytest.mark.slow
def test_an_swa_run_keeps_the_validated_average(fer2013_dir, tmp_path):
    """Two epochs, both averaged: the saved model is the average PublicTest measured (the final report measures
    the same accuracy again from model.keras), and the average holds both epochs."""
    result = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(tmp_path), *SWA_FLAGS)
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "swa.npz") as saved:
        assert int(saved["count"]) == 2
    with (tmp_path / "history.csv").open(newline="") as handle:
        best = max(float(row["val_accuracy"]) for row in csv.DictReader(handle))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["splits"]["PublicTest"]["single"]["accuracy"] == pytest.approx(best, abs=1e-6)


def test_swa_with_an_ema_fails_naming_both_keys(fer2013_dir, tmp_path):
    result = run_script("training/train.py", "--data", str(fer2013_dir), "--out", str(tmp_path), *SWA_FLAGS,
                        "--ema", "0.99", "--limit", "140", "--limit-val", "35")
    assert result.returncode == 2
    assert "swa_start and ema" in result.stderr and "Traceback" not in result.stderr


def test_recalibrated_ema_is_validated_with_its_own_statistics_and_trains_on_the_live_ones(faces):
    """The EMA (training/ema.py) is validated with the optimizer's averaged weights and BatchNormalization
    statistics measured for them on the calibration faces; after validation the live weights and statistics
    come back, so training and the checkpoint continue from them; swapped in again in the same epoch (as
    EpochCheckpoint does to save it) it is the same network, not measured anew."""
    import keras

    from device.contract import NUM_CLASSES, normalize
    from training.ema import RecalibratedEMA
    from training.model import with_augmentation

    classifier = tiny_classifier(0)
    train_model = with_augmentation(classifier, None)
    train_model.compile(optimizer=keras.optimizers.SGD(0.05, use_ema=True, ema_momentum=0.5),
                        loss="categorical_crossentropy")
    margin = (48 - CROP) // 2
    x = normalize(faces)[:, margin : margin + CROP, margin : margin + CROP]
    y = keras.utils.to_categorical(np.arange(len(faces)) % NUM_CLASSES, NUM_CLASSES)
    ema = RecalibratedEMA(faces, CROP)
    begin, end = [], []  # the classifier as validated, then as training goes on (recorded after `ema`)
    recorder = keras.callbacks.LambdaCallback(on_test_begin=lambda logs: begin.append(classifier.get_weights()),
                                              on_test_end=lambda logs: end.append(classifier.get_weights()))
    train_model.fit(x, y, batch_size=32, epochs=1, validation_data=(x[:64], y[:64]), verbose=0,
                    callbacks=[ema, recorder])
    (seen,), (live,) = begin, end

    # Validated: the average's trainable weights (Keras's fit leaves them in the model when it ends)...
    for variable, value in zip(classifier.weights, seen, strict=True):
        if variable.trainable:
            np.testing.assert_array_equal(value, np.asarray(variable), err_msg=variable.path)
    # ...with each layer's output mean on the calibration faces its beta: the average's own statistics.
    after_fit = classifier.get_weights()
    classifier.set_weights(seen)
    for name, out in batch_norm_outputs(classifier, faces).items():
        beta = np.asarray(classifier.get_layer(name).beta)
        np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), beta, atol=1e-3, err_msg=name)
    classifier.set_weights(after_fit)
    # After validation, the live network: other trainable weights and other statistics.
    bn = [i for i, variable in enumerate(classifier.weights) if "moving_mean" in variable.path]
    assert bn and all(not np.allclose(live[i], seen[i]) for i in bn)
    assert not np.allclose(live[0], seen[0])

    ema.on_test_begin()  # the epoch's checkpoint: the validated network again
    again = classifier.get_weights()
    ema.on_test_end()
    assert all(np.array_equal(a, b) for a, b in zip(again, seen, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(classifier.get_weights(), after_fit, strict=True))


def test_channel_statistics_are_accumulated_in_float64():
    """Over a first-block channel's 6.5 million values (4,096 faces of 40 x 40 px), float32 accumulation drifts;
    the statistics match numpy's float64 mean and variance to float32 precision."""
    from training.batchnorm import channel_statistics

    rng = np.random.default_rng(0)
    values = rng.normal(loc=[2.0, -0.5], scale=[0.5, 3.0], size=(4096, 40, 40, 2)).astype(np.float32)
    mean, var = channel_statistics(values)
    assert mean.dtype == var.dtype == np.float32 and mean.shape == var.shape == (2,)
    reference = values.astype(np.float64)
    np.testing.assert_allclose(mean, reference.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(var, reference.var(axis=(0, 1, 2)), rtol=1e-6)
    constant = np.full((8, 4, 4, 1), 0.1, dtype=np.float32)
    assert channel_statistics(constant)[1][0] == 0.0  # never negative, so sqrt(var + epsilon) stays real
