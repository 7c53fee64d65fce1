"""The camera degradations: shapes, determinism, strengths that grow, and each one what its name says."""

import cv2
import numpy as np
import pytest

from training import camera


@pytest.fixture(scope="module")
def faces(public_test):
    from training.data import limit

    return limit(public_test, 70).images[..., 0]


@pytest.mark.parametrize("name", camera.NAMES)
def test_each_degradation_keeps_shape_and_dtype_and_is_reproducible(faces, name):
    for level in range(len(camera.get(name).strengths)):
        once = camera.degrade(faces, name, level, seed=1)
        assert once.shape == faces.shape and once.dtype == np.uint8
        np.testing.assert_array_equal(once, camera.degrade(faces, name, level, seed=1))


@pytest.mark.parametrize("name", camera.NAMES)
def test_stronger_levels_change_the_faces_more(faces, name):
    changes = [camera.mean_abs_change(faces, camera.degrade(faces, name, level)) for level in range(3)]
    assert 0 < changes[0] < changes[1] < changes[2], changes


@pytest.mark.parametrize("name", ["low_light", "noise", "motion_blur"])
def test_random_degradations_depend_on_the_seed(faces, name):
    assert not np.array_equal(camera.degrade(faces, name, 1, seed=1), camera.degrade(faces, name, 1, seed=2))


def test_low_light_darkens_by_gamma_and_gain(faces):
    dark = camera.low_light(faces, np.random.default_rng(0), gamma=2.0, gain=0.5)
    expected = np.clip(np.rint(255 * 0.5 * (faces / 255.0) ** 2.0), 0, 255)
    np.testing.assert_array_equal(dark, expected)
    noisy = camera.low_light(faces, np.random.default_rng(0), gamma=2.0, gain=0.5, photons=50.0)
    assert abs(noisy.mean() - dark.mean()) < 2.0  # shot noise is zero-mean ...
    assert camera.mean_abs_change(noisy, dark) > 3.0  # ... and visible at 50 photons


def test_noise_is_zero_mean_with_the_given_sigma():
    grey = np.full((50, 48, 48), 128, np.uint8)
    noisy = camera.noise(grey, np.random.default_rng(0), sigma=8.0).astype(np.float64)
    assert abs(noisy.mean() - 128) < 0.2 and abs(noisy.std() - 8.0) < 0.2


def test_motion_blur_kernel_is_a_normalised_line():
    kernel = camera.line_kernel(5, 0.0)
    assert kernel.shape == (5, 5) and np.isclose(kernel.sum(), 1.0)
    np.testing.assert_allclose(kernel[2], 0.2, atol=1e-6)
    vertical = camera.line_kernel(5, 90.0)
    np.testing.assert_allclose(vertical[:, 2], 0.2, atol=1e-6)


def test_motion_blur_smears_a_bright_dot_along_a_line():
    dot = np.zeros((1, 48, 48), np.uint8)
    dot[0, 24, 24] = 255
    smeared = camera.motion_blur(dot, np.random.default_rng(0), length=7)[0]
    assert smeared.max() < 100 and (smeared > 0).sum() >= 5


def test_jpeg_is_opencv_round_trip(faces):
    ok, encoded = cv2.imencode(".jpg", faces[0], [cv2.IMWRITE_JPEG_QUALITY, 30])
    assert ok
    np.testing.assert_array_equal(camera.jpeg(faces[:1], None, quality=30)[0], cv2.imdecode(encoded, 0))


def test_small_face_goes_down_by_area_and_back_up_linearly(faces):
    small = cv2.resize(faces[0], (16, 16), interpolation=cv2.INTER_AREA)
    expected = cv2.resize(small, (48, 48), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(camera.small_face(faces[:1], None, size=16)[0], expected)


def test_unknown_names_levels_and_inputs_are_refused(faces):
    with pytest.raises(ValueError, match="unknown camera degradation 'fog'"):
        camera.degrade(faces, "fog", 0)
    with pytest.raises(ValueError, match="level 3 out of range"):
        camera.degrade(faces, "jpeg", 3)
    with pytest.raises(ValueError, match="uint8"):
        camera.degrade(faces.astype(np.float32), "jpeg", 0)


def test_degrade_face_follows_its_generator(faces):
    a = camera.degrade_face(faces[0], np.random.default_rng([4, 2]))
    b = camera.degrade_face(faces[0], np.random.default_rng([4, 2]))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (48, 48) and a.dtype == np.uint8
