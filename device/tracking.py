"""Face tracking across frames with stable ids, and temporal smoothing of each face's emotion in seconds.

Faces are matched to tracks greedily by intersection over union (IoU) of their boxes; a face whose box lies
mostly inside a track's box is that track too, so one face never becomes two tracks. Each track's scores are
an exponential moving average in time: a frame `dt` seconds after the last one weighs `1 - exp(-dt / tau)`
(`tau` = `smoothing_s`), so the result does not depend on the frame rate. The shown emotion changes only
when another emotion's smoothed score leads it by `hysteresis` for at least `min_dwell_s` seconds. A track
that no face has matched for `max_missed_s` seconds is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from device.config import TrackingSettings
from device.contract import LABELS
from device.faces import Box, iou, nested


def _same_face(track_box: Box, box: Box) -> float:
    """Match strength of a box to a track: IoU, or 1.0 where most of the smaller box lies inside the other."""
    return 1.0 if nested(track_box, box) else iou(track_box, box)


@dataclass
class Track:
    face_id: int
    box: Box
    scores: np.ndarray  # (7,) float32 smoothed probabilities
    shown: int  # label index shown after hysteresis and dwell
    updated_at: float  # s, the time of the last frame that saw this face
    candidate: int | None = None  # the emotion that leads the shown one, waiting out min_dwell_s
    candidate_since: float = 0.0

    @property
    def emotion(self) -> str:
        return LABELS[self.shown]

    @property
    def confidence(self) -> float:
        """The smoothed probability of the shown emotion, in [0, 1]."""
        return float(self.scores[self.shown])


class FaceTracker:
    """Keeps tracks across frames. `update` returns, for each detected box, its track."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: list[Box], probabilities: np.ndarray, now: float) -> list[Track]:
        """Match this frame's boxes to tracks and smooth their scores.

        Args:
            boxes: faces in this frame, `(x, y, w, h)` px.
            probabilities: `(len(boxes), 7)` float32 classifier output.
            now: this frame's time, s (any monotonic clock: the frame's media time for files).
        """
        pairs = sorted(((_same_face(t.box, b), ti, bi) for ti, t in enumerate(self.tracks)
                        for bi, b in enumerate(boxes)), reverse=True)
        matched: dict[int, Track] = {}
        used_tracks: set[int] = set()
        for overlap, ti, bi in pairs:
            if overlap < self.settings.iou_threshold:
                break
            if ti in used_tracks or bi in matched:
                continue
            used_tracks.add(ti)
            matched[bi] = self.tracks[ti]
        self.tracks = [t for ti, t in enumerate(self.tracks)
                       if ti in used_tracks or now - t.updated_at <= self.settings.max_missed_s]
        result = []
        for bi, box in enumerate(boxes):
            probs = np.asarray(probabilities[bi], dtype=np.float32)
            track = matched.get(bi)
            if track is None:
                track = Track(self._next_id, box, probs.copy(), int(np.argmax(probs)), now)
                self._next_id += 1
                self.tracks.append(track)
            else:
                track.box = box
                self._smooth(track, probs, now)
            result.append(track)
        return result

    def _smooth(self, track: Track, probs: np.ndarray, now: float) -> None:
        tau = self.settings.smoothing_s
        dt = max(0.0, now - track.updated_at)
        weight = 1.0 if tau == 0 else 1.0 - math.exp(-dt / tau)
        track.scores = (1 - weight) * track.scores + weight * probs
        track.updated_at = now
        best = int(np.argmax(track.scores))
        if best == track.shown or track.scores[best] - track.scores[track.shown] <= self.settings.hysteresis:
            track.candidate = None
            return
        if track.candidate != best:
            track.candidate, track.candidate_since = best, now
        if now - track.candidate_since >= self.settings.min_dwell_s:
            track.shown, track.candidate = best, None
