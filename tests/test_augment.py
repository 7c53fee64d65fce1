"""The training batches: shapes, ranges, CutMix label mass, and batches that depend only on (seed, epoch, index)."""

import numpy as np
import pytest

from device.contract import view_matrix
from training.augment import Augmentation, AugmentedFaces, cutmix, random_view


@pytest.fixture(scope="module")
def faces(public_test):
    from training.data import limit

    sample = limit(public_test, 280)  # 40 of each class: the split itself is sorted by class
    return sample.images, sample.labels


def test_batches_are_crops_in_the_unit_range_with_soft_labels(faces):
    images, labels = faces
    batches = AugmentedFaces(images, labels, 64, Augmentation(crop=40, cutmix=1.0))
    x, y = batches[0]
    assert x.shape == (64, 40, 40, 1) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert y.shape == (64, 7) and np.allclose(y.sum(axis=1), 1.0)
    assert (y.max(axis=1) < 1).any()  # CutMix mixed some labels
    assert len(batches) == 5


def test_a_batch_depends_only_on_seed_epoch_and_index(faces):
    """What makes --resume exact: a fresh dataset (a resumed process) gives the same batches."""
    images, labels = faces
    first = AugmentedFaces(images, labels, 64, Augmentation(), seed=3)
    again = AugmentedFaces(images, labels, 64, Augmentation(), seed=3)
    first.epoch = again.epoch = 7
    np.testing.assert_array_equal(first[2][0], again[2][0])
    again.epoch = 8
    assert not np.array_equal(first[2][0], again[2][0])


def test_class_weights_travel_as_sample_weights(faces):
    images, labels = faces
    weights = {i: float(i + 1) for i in range(7)}
    x, y, w = AugmentedFaces(images, labels, 32, Augmentation(cutmix=0.0), class_weight=weights)[0]
    np.testing.assert_allclose(w, y.argmax(axis=1) + 1.0)


def test_identity_view_is_the_centre_crop(faces):
    face = faces[0][0, ..., 0]
    matrix = view_matrix(0.0, 0.0, (24.0, 24.0), 40)
    np.testing.assert_allclose(matrix, [[1, 0, -4], [0, 1, -4]])
    still = Augmentation(crop=48, rotation_deg=0, scale=0, flip=0, erasing=0, cutmix=0)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(random_view(face, still, rng), face)


def test_cutmix_keeps_label_mass_and_mixes_by_area():
    rng = np.random.default_rng(1)
    faces = np.stack([np.full((40, 40), 10 * i, np.uint8) for i in range(8)])
    targets = np.eye(7, dtype=np.float32)[np.arange(8) % 7]
    mixed, mixed_targets, _ = cutmix(faces, targets, None, rng)
    kept_area = np.array([(m == f[0, 0]).mean() for m, f in zip(mixed, faces, strict=True)])
    own = mixed_targets[np.arange(8), np.arange(8) % 7]
    np.testing.assert_allclose(mixed_targets.sum(axis=1), 1.0, rtol=1e-6)
    # Where a face was pasted onto itself (or a face of the same label) the label stays; otherwise it
    # keeps the share of its own area.
    assert np.all(own >= kept_area - 1e-6)


def test_camera_degradations_change_faces_reproducibly(faces):
    images, labels = faces
    plain = AugmentedFaces(images, labels, 64, Augmentation(camera=0.0), seed=5)
    degraded = AugmentedFaces(images, labels, 64, Augmentation(camera=1.0), seed=5)
    again = AugmentedFaces(images, labels, 64, Augmentation(camera=1.0), seed=5)
    x, x_again = degraded[1][0], again[1][0]
    np.testing.assert_array_equal(x, x_again)  # still a pure function of (seed, epoch, index)
    assert x.shape == plain[1][0].shape and not np.array_equal(x, plain[1][0])


def test_camera_degradation_is_drawn_before_the_warp(faces):
    """With no geometric augmentation, a camera=1 face is exactly `degrade_face` of the source face."""
    from training.camera import degrade_face

    images, labels = faces
    still = Augmentation(crop=48, rotation_deg=0, scale=0, flip=0, erasing=0, cutmix=0, camera=1.0)
    dataset = AugmentedFaces(images, labels, 1, still, seed=2)
    rng = np.random.default_rng([2, 0, 1])
    index = dataset.order()[0]
    rng.random()  # the camera's coin
    expected = degrade_face(images[index, ..., 0], rng)
    np.testing.assert_allclose(dataset[0][0][0, ..., 0], expected / 255.0, atol=1e-6)


def test_teacher_probabilities_travel_beside_the_labels_and_mix_by_area(faces):
    images, labels = faces
    onehot = np.eye(7, dtype=np.float32)[labels]
    # A teacher that agrees with the labels must stay equal to them through CutMix.
    x, y = AugmentedFaces(images, labels, 64, Augmentation(cutmix=1.0), teacher=onehot)[0]
    assert y.shape == (64, 14)
    np.testing.assert_allclose(y[:, :7], y[:, 7:], atol=1e-6)
    assert (y[:, :7].max(axis=1) < 1).any()  # and CutMix did mix
    with pytest.raises(ValueError, match="teacher probabilities"):
        AugmentedFaces(images, labels, 64, Augmentation(), teacher=onehot[:5])
