import numpy as np

from device.config import TrackingSettings
from device.tracking import FaceTracker, iou


def one_hot(index: int, strength: float = 0.9) -> np.ndarray:
    probs = np.full(7, (1 - strength) / 6, np.float32)
    probs[index] = strength
    return probs


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == 50 / 150
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_faces_keep_their_ids_while_they_move():
    tracker = FaceTracker(TrackingSettings())
    first = tracker.update([(0, 0, 50, 50), (200, 0, 50, 50)], np.stack([one_hot(3), one_hot(4)]))
    second = tracker.update([(205, 3, 50, 50), (4, 2, 50, 50)], np.stack([one_hot(4), one_hot(3)]))
    assert [t.face_id for t in first] == [1, 2]
    assert [t.face_id for t in second] == [2, 1]


def test_a_single_odd_frame_does_not_flip_the_shown_emotion():
    tracker = FaceTracker(TrackingSettings(smoothing=0.3, hysteresis=0.1))
    box = [(0, 0, 50, 50)]
    for _ in range(5):
        tracker.update(box, one_hot(3)[None])
    assert tracker.update(box, one_hot(5)[None])[0].emotion == "happy"  # one surprised frame: still happy
    shown = [tracker.update(box, one_hot(5)[None])[0].emotion for _ in range(5)]
    assert shown[-1] == "surprise"  # a lasting change does come through


def test_lost_tracks_expire():
    tracker = FaceTracker(TrackingSettings(max_missed=2))
    tracker.update([(0, 0, 50, 50)], one_hot(3)[None])
    for _ in range(3):
        tracker.update([], np.zeros((0, 7), np.float32))
    assert tracker.tracks == []
    assert tracker.update([(0, 0, 50, 50)], one_hot(3)[None])[0].face_id == 2
