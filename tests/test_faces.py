"""Face detection on real frames: YuNet (default) and Haar, non-maximum suppression, the shipped detector file."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from device.config import DetectorSettings
from device.faces import (
    DEFAULT_YUNET,
    YUNET_SHA256,
    DetectorError,
    Face,
    HaarFaceDetector,
    RoiFaceDetector,
    YuNetFaceDetector,
    build_detector,
    iou,
    suppress_overlaps,
)
from tests.conftest import SHARED

CLIP = SHARED / "media" / "woman2.mp4"


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found (the test clip lives in ../shared/media)")
    capture = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < 60:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == 50 / 150
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_overlapping_detections_of_one_face_become_one():
    faces = [Face((100, 100, 80, 80), 0.9), Face((110, 105, 80, 80), 0.8), Face((400, 100, 80, 80), 0.7)]
    kept = suppress_overlaps(faces)
    assert [f.box for f in kept] == [(100, 100, 80, 80), (400, 100, 80, 80)]


def test_a_box_inside_another_is_not_a_second_face():
    # IoU 0.25 (below the NMS threshold), but the small box lies wholly inside the big one.
    faces = [Face((100, 100, 100, 100)), Face((125, 125, 50, 50))]
    assert [f.box for f in suppress_overlaps(faces)] == [(100, 100, 100, 100)]


def test_shipped_yunet_is_opencv_zoos_file():
    assert hashlib.sha256(DEFAULT_YUNET.read_bytes()).hexdigest() == YUNET_SHA256


def test_corrupt_or_missing_yunet_is_a_clear_error(tmp_path):
    corrupt = tmp_path / DEFAULT_YUNET.name
    corrupt.write_bytes(DEFAULT_YUNET.read_bytes()[:1000])
    with pytest.raises(DetectorError, match="sha256"):
        YuNetFaceDetector(corrupt)
    other = tmp_path / "other.onnx"
    other.write_bytes(b"garbage")
    with pytest.raises(DetectorError, match="other.onnx: not a YuNet model"):
        YuNetFaceDetector(other)
    with pytest.raises(DetectorError, match="not found"):
        YuNetFaceDetector(tmp_path / "missing.onnx")


def test_yunet_is_the_default_and_finds_the_face_with_landmarks(clip_frames):
    detector = build_detector(DetectorSettings())
    assert isinstance(detector, RoiFaceDetector) and isinstance(detector.base, YuNetFaceDetector)
    counts = []
    for frame in clip_frames:
        faces = detector.detect(frame, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        counts.append(len(faces))
        for face in faces:
            assert face.landmarks is not None and face.landmarks.shape == (5, 2)
            x, y, w, h = face.box
            # Every landmark lies inside its face's box (a little slack for the box's rounding).
            assert np.all(face.landmarks >= (x - 2, y - 2)) and np.all(face.landmarks <= (x + w + 2, y + h + 2))
    assert counts.count(1) >= 0.9 * len(clip_frames) and max(counts) == 1, counts


def test_haar_fallback_gives_boxes_only_and_never_two_for_one_face(clip_frames):
    detector = HaarFaceDetector()
    counts = [len(detector.detect(f, cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))) for f in clip_frames]
    assert max(counts) <= 1 and counts.count(1) >= 0.5 * len(clip_frames), counts
    face = detector.detect(clip_frames[0], cv2.cvtColor(clip_frames[0], cv2.COLOR_BGR2GRAY))
    assert all(f.landmarks is None for f in face)
