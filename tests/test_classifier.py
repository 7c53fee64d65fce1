"""EmotionClassifier with the shipped int8 model on real FER2013 images, and without TensorFlow."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from device.classifier import EmotionClassifier, ModelError
from device.contract import LABELS
from tests.conftest import REPO


def test_predict_returns_probabilities_in_label_order(shipped_model, public_test):
    classifier = EmotionClassifier(shipped_model, num_threads=1)
    probs = classifier.predict(public_test.images[:8, ..., 0])  # (N, 48, 48) form
    assert probs.shape == (8, 7) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)  # int8 softmax, 1/256 steps
    assert classifier.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_batched_and_one_by_one_predictions_agree(shipped_model, public_test):
    classifier = EmotionClassifier(shipped_model, num_threads=1)
    faces = public_test.images[:16]
    batched = classifier.predict(faces)
    single = np.concatenate([classifier.predict(faces[i : i + 1]) for i in range(len(faces))])
    np.testing.assert_allclose(batched, single, atol=1e-6)
    assert classifier.predict(faces[:0]).shape == (0, 7)


def test_shipped_card_matches_a_fresh_public_test_evaluation(shipped_model, public_test):
    from training.metrics import classification_report

    card = json.loads(shipped_model.with_suffix(".json").read_text())
    probs = EmotionClassifier(shipped_model).predict(public_test.images)
    report = classification_report(public_test.labels, probs)
    assert card["evaluation"]["limit_per_split"] is None
    assert report["accuracy"] == card["evaluation"]["splits"]["PublicTest"]["int8"]["accuracy"]
    assert report["accuracy"] > 0.55  # the shipped model is a real one, far above chance
    for split in ("PublicTest", "PrivateTest"):
        result = card["evaluation"]["splits"][split]
        assert result["agreement"] > 0.97  # the card's own measurement, written at conversion
        assert abs(result["float"]["accuracy"] - result["int8"]["accuracy"]) <= 0.005  # within 0.5 points


def test_input_of_the_wrong_shape_is_rejected(shipped_model):
    with pytest.raises(ValueError, match=r"\(N, 48, 48\)"):
        EmotionClassifier(shipped_model).predict(np.zeros((1, 64, 64), np.uint8))


def test_missing_and_corrupt_models_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="missing.tflite: model file not found"):
        EmotionClassifier(tmp_path / "missing.tflite")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="corrupt.tflite: not a usable TFLite model"):
        EmotionClassifier(corrupt)


# LiteRT's Delegate.__del__ trips over its own failed load (AttributeError '_library'); not ours to fix.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_edgetpu_model_without_the_delegate_says_what_to_install(shipped_model, tmp_path):
    edgetpu = tmp_path / "fer_int8_edgetpu.tflite"
    edgetpu.write_bytes(shipped_model.read_bytes())
    with pytest.raises(ModelError, match="libedgetpu.so.1"):
        EmotionClassifier(edgetpu)


def test_card_with_other_labels_is_refused(shipped_model, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(shipped_model.read_bytes())
    (tmp_path / "m.json").write_text(json.dumps({"labels": ["happy", "angry"]}))
    with pytest.raises(ModelError, match="differ from the model contract"):
        EmotionClassifier(model)


def test_card_of_another_model_is_refused(shipped_model, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(shipped_model.read_bytes())
    card = json.loads(shipped_model.with_suffix(".json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**card, "sha256": "0" * 64}))
    with pytest.raises(ModelError, match="m.json: describes another model"):
        EmotionClassifier(model)


def test_device_package_runs_with_tensorflow_and_keras_absent(shipped_model, public_test):
    """Every module of device/ imports and classifies real faces while TensorFlow cannot be imported."""
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        import numpy as np

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                    raise ImportError("blocked: " + name)

        sys.meta_path.insert(0, Block())
        import device
        for module in pkgutil.walk_packages(device.__path__, "device."):
            if module.name != "device.__main__":
                importlib.import_module(module.name)
        from device.classifier import EmotionClassifier
        faces = np.load(sys.argv[1])
        probs = EmotionClassifier({str(shipped_model)!r}).predict(faces)
        assert probs.shape == (len(faces), 7)
        assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
        print("ok", probs.argmax(axis=1).tolist())
    """)
    faces_file = REPO / ".pytest_cache" / "faces.npy"
    faces_file.parent.mkdir(exist_ok=True)
    np.save(faces_file, public_test.images[:4])
    result = subprocess.run([sys.executable, "-c", script, str(faces_file)], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_a_label_subset_renormalises_the_seven_probabilities(shipped_model, public_test):
    from device.classifier import restrict_to_labels

    subset = ("happy", "sad", "neutral")
    faces = public_test.images[:64]
    full = EmotionClassifier(shipped_model).predict(faces)
    chosen = EmotionClassifier(shipped_model, labels=subset).predict(faces)
    index = [LABELS.index(label) for label in subset]
    others = [i for i in range(len(LABELS)) if i not in index]
    assert np.allclose(chosen[:, others], 0) and np.allclose(chosen.sum(axis=1), 1, atol=1e-5)
    expected = full[:, index] / full[:, index].sum(axis=1, keepdims=True)
    assert np.allclose(chosen[:, index], expected, atol=1e-6)
    assert set(np.argmax(chosen, axis=1)) <= set(index)
    # A row with nothing on the chosen labels becomes uniform over them.
    row = np.zeros((1, 7), np.float32)
    row[0, 0] = 1.0
    assert np.allclose(restrict_to_labels(row, subset)[0, index], 1 / 3)


def test_tta_is_the_mean_over_the_contract_views_as_evaluate_measures_it(shipped_model, public_test):
    from training.evaluate import predict

    faces = public_test.images[:12]
    single = EmotionClassifier(shipped_model, num_threads=1)
    flip = EmotionClassifier(shipped_model, num_threads=1, tta="flip").predict(faces)
    mirrored = single.predict(np.ascontiguousarray(faces[:, :, ::-1]))
    np.testing.assert_allclose(flip, (single.predict(faces) + mirrored) / 2, atol=1e-6)
    shifted = EmotionClassifier(shipped_model, num_threads=1, tta="flip-shift").predict(faces)
    np.testing.assert_allclose(shifted, predict(single.predict, faces, tta="flip-shift"), atol=1e-6)
    assert not np.allclose(shifted, flip)  # the shifted views do change the answer
    with pytest.raises(ValueError, match="unknown TTA mode 'ten-crop'"):
        EmotionClassifier(shipped_model, tta="ten-crop")
