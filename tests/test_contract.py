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


def test_box_window_follows_the_rule_measured_on_fer2013():
    rule = contract.registration()["haar_box"]
    x0, y0, side = contract.box_crop_window((100, 50, 60, 60))
    assert side == round(60 * rule["frame_side_in_box_sides"])
    dx, dy = rule["centre_offset_in_box_sides"]
    assert abs(x0 + side / 2 - (130 + dx * 60)) <= 1 and abs(y0 + side / 2 - (80 + dy * 60)) <= 1


def test_crop_face_returns_model_input_and_pads_at_the_border():
    frame = np.zeros((100, 200), np.uint8)
    frame[:, :100] = 200  # left half bright
    crop = contract.crop_face(frame, (0, 0, 50, 50))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    # The square leaves the frame at the top-left: replicated edges keep it bright, not black.
    assert crop.min() == 200


def test_registration_data_was_measured_and_says_how():
    measured = contract.registration()
    assert measured["command"].startswith("python training/registration.py")
    assert measured["yunet"]["found"] >= 0.9 * measured["images"]
    template = contract.landmark_template()
    assert template.shape == (5, 2)
    right_eye, left_eye, nose, right_mouth, left_mouth = template
    # As seen in the image: the right eye is on the left, eyes above the nose, the nose above the mouth.
    assert right_eye[0] < nose[0] < left_eye[0] and right_mouth[0] < left_mouth[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])


def test_alignment_maps_the_landmarks_onto_the_template():
    template = contract.landmark_template()
    angle = np.radians(20)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = template @ rotate.T * 5.0 + (300.0, 200.0)  # the same face, 5x bigger, turned, elsewhere
    matrix = contract.alignment_transform(landmarks)
    mapped = np.c_[landmarks, np.ones(5)] @ matrix.T
    np.testing.assert_allclose(mapped, template, atol=1e-3)
    rotation, scale, _, _ = contract.similarity_parameters(matrix)
    assert abs(rotation + 20) < 1e-3 and abs(scale - 0.2) < 1e-5


def test_a_fer2013_face_aligned_from_a_larger_frame_is_the_face_again(public_test):
    """Put a real FER2013 face, 5x upscaled and turned, into a larger frame: aligning it with the
    template's landmarks (the ideal detector) gives back the 48x48 face."""
    import cv2

    face = public_test.images[0, ..., 0]
    template = contract.landmark_template()
    place = cv2.getRotationMatrix2D((24, 24), 15, 5.0)
    place[:, 2] += (300 - 24, 200 - 24)
    frame = cv2.warpAffine(face, place, (640, 480), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    landmarks = np.c_[template, np.ones(5)] @ place.T
    aligned = contract.align_face(frame, landmarks)
    assert aligned.shape == (48, 48) and aligned.dtype == np.uint8
    inner = (slice(6, 42), slice(6, 42))  # the border came from replicated edges
    error = np.abs(aligned[inner].astype(int) - face[inner].astype(int)).mean()
    assert error < 6, error  # grey levels 0-255; another face of FER2013 differs by about 40
    other = public_test.images[1, ..., 0]
    assert np.abs(aligned[inner].astype(int) - other[inner].astype(int)).mean() > 4 * error


def test_degenerate_landmarks_are_an_error():
    with pytest.raises(ValueError, match="no similarity transform"):
        contract.align_face(np.zeros((100, 100), np.uint8), np.zeros((5, 2)))


def test_as_model_batch_checks_shape_and_dtype():
    assert contract.as_model_batch(np.zeros((2, 48, 48), np.uint8)).shape == (2, 48, 48, 1)
    with pytest.raises(ValueError, match="48"):
        contract.as_model_batch(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        contract.as_model_batch(np.zeros((2, 48, 48), np.float32))


def test_bad_box_is_rejected():
    with pytest.raises(ValueError, match="positive"):
        contract.box_crop_window((0, 0, 0, 10))


def test_tta_views_are_the_face_its_mirror_and_shifted_copies():
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1), dtype=np.uint8)
    assert np.array_equal(contract.tta_views(faces, "none"), faces)
    flip = contract.tta_views(faces, "flip")
    assert flip.shape == (6, 48, 48, 1) and np.array_equal(flip[3:], faces[:, :, ::-1])
    views = contract.tta_views(faces, "flip-shift").reshape(10, 3, 48, 48, 1)
    s = contract.TTA_SHIFT_PX
    left = views[2]  # view-major: the face moved s px left, its right edge replicated
    assert np.array_equal(left[:, :, :-s], faces[:, :, s:])
    assert np.array_equal(left[:, :, -s:], np.repeat(faces[:, :, -1:], s, axis=2))
    assert np.array_equal(views[3], left[:, :, ::-1])
    assert np.array_equal(views[4][:, :, s:], faces[:, :, :-s])  # moved right
    assert np.array_equal(views[6][:, :-s], faces[:, s:])  # moved up
    assert np.array_equal(views[8][:, s:], faces[:, :-s])  # moved down
    with pytest.raises(ValueError, match="unknown TTA mode 'ten'"):
        contract.tta_views(faces, "ten")


def test_average_views_is_the_mean_over_views():
    probabilities = np.arange(2 * 3 * 7, dtype=np.float32).reshape(6, 7)
    averaged = contract.average_views(probabilities, 3)
    np.testing.assert_allclose(averaged, (probabilities[:3] + probabilities[3:]) / 2)
