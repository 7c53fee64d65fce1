import numpy as np
import pytest

from device.config import ConfigError, TrackingSettings, load_settings
from device.tracking import FaceTracker


def one_hot(index: int, strength: float = 0.9) -> np.ndarray:
    probs = np.full(7, (1 - strength) / 6, np.float32)
    probs[index] = strength
    return probs


def test_faces_keep_their_ids_while_they_move():
    tracker = FaceTracker(TrackingSettings())
    first = tracker.update([(0, 0, 50, 50), (200, 0, 50, 50)], np.stack([one_hot(3), one_hot(4)]), 0.0)
    second = tracker.update([(205, 3, 50, 50), (4, 2, 50, 50)], np.stack([one_hot(4), one_hot(3)]), 0.1)
    assert [t.face_id for t in first] == [1, 2]
    assert [t.face_id for t in second] == [2, 1]


def test_one_face_is_one_track_even_when_its_box_shrinks_inside_the_old_one():
    tracker = FaceTracker(TrackingSettings())
    tracker.update([(100, 100, 100, 100)], one_hot(3)[None], 0.0)
    # IoU 0.25 is below iou_threshold, but the new box lies inside the old one: the same face.
    assert tracker.update([(125, 125, 50, 50)], one_hot(3)[None], 0.1)[0].face_id == 1
    assert len(tracker.tracks) == 1


def shown_over_time(fps: float, settings: TrackingSettings) -> list[tuple[float, str]]:
    """Happy for 2 s, a 0.2 s surprised blip, happy for 1 s, then surprised for 3 s, at `fps`."""
    tracker = FaceTracker(settings)
    script = [(2.0, 3), (0.2, 5), (1.0, 3), (3.0, 5)]
    shown, now = [], 0.0
    for seconds, label in script:
        for _ in range(round(seconds * fps)):
            shown.append((now, tracker.update([(0, 0, 50, 50)], one_hot(label)[None], now)[0].emotion))
            now += 1.0 / fps
    return shown


def switch_time(shown: list[tuple[float, str]]) -> float:
    return next(t for t, emotion in shown if emotion == "surprise")


@pytest.mark.parametrize("settings", [TrackingSettings(), TrackingSettings(smoothing_s=1.0, min_dwell_s=0.3)])
def test_smoothing_behaves_the_same_at_4_and_30_fps(settings):
    pi, pc = shown_over_time(4, settings), shown_over_time(30, settings)
    for shown in (pi, pc):
        assert all(emotion == "happy" for t, emotion in shown if t < 3.2)  # the short blip never shows
        assert shown[-1][1] == "surprise"  # a lasting change does
    # The change comes through at the same time, give or take one frame at the slower rate.
    assert abs(switch_time(pi) - switch_time(pc)) <= 0.25 + 1e-9


def test_min_dwell_holds_the_shown_emotion_that_long():
    settings = TrackingSettings(smoothing_s=0.0, min_dwell_s=1.0, hysteresis=0.1)
    shown = shown_over_time(10, settings)
    assert switch_time(shown) == pytest.approx(3.2 + 1.0, abs=0.11)


def test_track_reports_the_confidence_of_the_emotion_it_shows():
    tracker = FaceTracker(TrackingSettings())
    track = tracker.update([(0, 0, 50, 50)], one_hot(3, 0.8)[None], 0.0)[0]
    assert track.emotion == "happy" and track.confidence == pytest.approx(0.8)


@pytest.mark.parametrize("fps", [4.0, 30.0])
def test_lost_tracks_expire_after_max_missed_s_at_any_frame_rate(fps):
    tracker = FaceTracker(TrackingSettings(max_missed_s=0.5))
    tracker.update([(0, 0, 50, 50)], one_hot(3)[None], 0.0)
    no_face = np.zeros((0, 7), np.float32)
    frames = np.arange(1, int(fps * 0.5) + 1) / fps  # frames up to 0.5 s after the face was last seen
    for now in frames:
        tracker.update([], no_face, float(now))
    assert len(tracker.tracks) == 1  # still within max_missed_s
    tracker.update([], no_face, float(frames[-1] + 1 / fps))
    assert tracker.tracks == []
    assert tracker.update([(0, 0, 50, 50)], one_hot(3)[None], 1.0)[0].face_id == 2


@pytest.mark.parametrize(("key", "replacement"), [("smoothing", "smoothing_s"), ("max_missed", "max_missed_s")])
def test_the_old_per_frame_keys_say_what_replaced_them(tmp_path, key, replacement):
    config = tmp_path / "old.toml"
    config.write_text(f"[tracking]\n{key} = 10\n")
    with pytest.raises(ConfigError, match=f"old.toml.*replaced by '{replacement}'"):
        load_settings(config)
