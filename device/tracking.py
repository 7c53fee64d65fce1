"""Face tracking across frames with stable ids, and temporal smoothing of each face's emotion.

Faces are matched to tracks greedily by intersection over union (IoU) of their boxes. Each track's
scores are an exponential moving average of its per-frame probabilities, and the emotion it shows
changes only when another emotion's smoothed score leads by `hysteresis`, so the output does not
flicker from frame to frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from device.config import TrackingSettings
from device.contract import LABELS
from device.faces import Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two `(x, y, w, h)` boxes, in [0, 1]."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    face_id: int
    box: Box
    scores: np.ndarray  # (7,) float32 smoothed probabilities
    shown: int  # label index shown after hysteresis
    missed: int = 0
    history: list[int] = field(default_factory=list)

    @property
    def emotion(self) -> str:
        return LABELS[self.shown]


class FaceTracker:
    """Keeps tracks across frames. `update` returns, for each detected box, its track."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: list[Box], probabilities: np.ndarray) -> list[Track]:
        """Match this frame's boxes to tracks and smooth their scores.

        Args:
            boxes: faces in this frame, `(x, y, w, h)` px.
            probabilities: `(len(boxes), 7)` float32 classifier output.
        """
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
                       reverse=True)
        matched: dict[int, Track] = {}
        used_tracks: set[int] = set()
        for overlap, ti, bi in pairs:
            if overlap < self.settings.iou_threshold:
                break
            if ti in used_tracks or bi in matched:
                continue
            used_tracks.add(ti)
            matched[bi] = self.tracks[ti]
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.settings.max_missed]
        result = []
        alpha, margin = self.settings.smoothing, self.settings.hysteresis
        for bi, box in enumerate(boxes):
            probs = np.asarray(probabilities[bi], dtype=np.float32)
            track = matched.get(bi)
            if track is None:
                track = Track(self._next_id, box, probs.copy(), int(np.argmax(probs)))
                self._next_id += 1
                self.tracks.append(track)
            else:
                track.box, track.missed = box, 0
                track.scores = (1 - alpha) * track.scores + alpha * probs
                best = int(np.argmax(track.scores))
                if best != track.shown and track.scores[best] - track.scores[track.shown] > margin:
                    track.shown = best
            result.append(track)
        return result
