"""convert/dequantize.py: the shipped int8 model recovered as a float Keras model, on real FER2013 faces."""

import numpy as np
import pytest

from tests.conftest import run_script

pytestmark = pytest.mark.slow


def test_recovered_float_model_predicts_as_the_int8_one(shipped_model, fer2013_dir, public_test):
    from convert.dequantize import folded_layers, recovered_model
    from device.classifier import EmotionClassifier
    from device.contract import normalize
    from training import data

    calibration = data.stratified_subset(data.load(fer2013_dir, "Training"), 20, seed=0)
    model = recovered_model(folded_layers(shipped_model), calibration.images, crop=40)
    faces = data.stratified_subset(public_test, 50, seed=1)
    recovered = model.predict(normalize(faces.images), verbose=0)
    int8 = EmotionClassifier(shipped_model).predict(faces.images)
    # Measured: 99.1% top-1 agreement on these 350 faces, mean largest probability gap 0.009 (the float and
    # int8 of the shipped run agreed on 98.7% of PrivateTest); a wrong layout, a bias not unfolded or a
    # statistic on the wrong axis falls far below.
    assert np.mean(recovered.argmax(axis=1) == int8.argmax(axis=1)) > 0.95
    assert np.abs(recovered - int8).max(axis=1).mean() < 0.03


def test_a_file_that_is_not_a_tflite_model_is_exit_2_naming_it(tmp_path, fer2013_dir):
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not a flatbuffer")
    out = tmp_path / "model.keras"
    result = run_script("convert/dequantize.py", "--model", str(bogus), "--out", str(out), "--data", str(fer2013_dir))
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(bogus) in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_an_output_that_is_not_keras_is_exit_2():
    result = run_script("convert/dequantize.py", "--out", "model.h5")
    assert result.returncode == 2 and "--out model.h5" in result.stderr
