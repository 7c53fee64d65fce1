import numpy as np
import pytest

from device import contract


def test_label_order_is_fer2013s():
    assert contract.LABELS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert contract.INPUT_SHAPE == (48, 48, 1)


def test_normalize_maps_uint8_to_unit_range_and_rejects_floats():
    pixels = np.array([[0, 128, 255]], dtype=np.uint8)
    np.testing.assert_allclose(contract.normalize(pixels), [[0.0, 128 / 255, 1.0]], rtol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        contract.normalize(pixels.astype(np.float32))


def test_crop_square_adds_margin_around_the_box_centre():
    x0, y0, side = contract.crop_square((100, 50, 40, 60), margin=0.1)
    assert side == 72  # max(40, 60) * 1.2
    assert (x0 + side / 2, y0 + side / 2) == (120, 80)  # the box centre


def test_crop_face_returns_model_input_and_pads_at_the_border():
    frame = np.zeros((100, 200), np.uint8)
    frame[:, :100] = 200  # left half bright
    crop = contract.crop_face(frame, (0, 0, 50, 50))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    # The square leaves the frame at the top-left: replicated edges keep it bright, not black.
    assert crop.min() == 200


def test_crop_face_of_a_centred_box_keeps_what_is_inside():
    frame = np.zeros((480, 640), np.uint8)
    frame[200:280, 280:360] = 255
    crop = contract.crop_face(frame, (280, 200, 80, 80), margin=0.0)
    assert crop.mean() == 255


def test_as_model_batch_checks_shape_and_dtype():
    assert contract.as_model_batch(np.zeros((2, 48, 48), np.uint8)).shape == (2, 48, 48, 1)
    with pytest.raises(ValueError, match="48"):
        contract.as_model_batch(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        contract.as_model_batch(np.zeros((2, 48, 48), np.float32))


def test_bad_box_is_rejected():
    with pytest.raises(ValueError, match="positive"):
        contract.crop_square((0, 0, 0, 10))
