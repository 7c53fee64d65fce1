"""Per-face-track events, in the shape of Frigate's `events` topic: `new`, `update`, `end`.

A track's `new` comes with its first frame; an `update` each time its shown (smoothed, after hysteresis and
dwell) emotion changes; an `end` when the tracker drops it (`tracking.max_missed_s` without a face), when
detection is turned off, or when the daemon stops. Each carries the seconds the track has shown each emotion
so far, counted on the pipeline's clock (a file's media time, else the monotonic clock) between the frames
that saw the face; `start_time` / `end_time` are wall-clock ISO 8601 UTC (the first and the last frame that saw
it). Frigate's MQTT events: https://docs.frigate.video/integrations/mqtt#frigateevents
"""

from __future__ import annotations

from dataclasses import dataclass, field

from device.topics import event_payload, utc_now
from device.tracking import Track


@dataclass
class _Life:
    """What the events know of one track."""

    start_time: str
    last_seen: str  # wall clock of the last frame that saw the face
    seen_at: float  # the pipeline's clock at that frame, s
    emotion: str
    confidence: float
    seconds: dict[str, float] = field(default_factory=dict)


class TrackEvents:
    """Turns the tracker's tracks, frame after frame, into `events` payloads (JSON strings).

    Args:
        labels: the published emotions (`[classifier] labels`); each event lists the seconds of every one.
    """

    def __init__(self, labels: tuple[str, ...] | list[str]) -> None:
        self.labels = tuple(labels)
        self._lives: dict[int, _Life] = {}

    def update(self, tracks: list[Track], now: float) -> list[str]:
        """The events of one frame. `tracks`: every live track after `FaceTracker.update` (also those this frame
        missed); `now`: the frame's time on the tracker's clock, s."""
        events = []
        wall = utc_now()
        live = {track.face_id: track for track in tracks}
        for face_id in [face_id for face_id in self._lives if face_id not in live]:
            events.append(self._end(face_id))
        for track in tracks:
            life = self._lives.get(track.face_id)
            if life is None:
                life = _Life(wall, wall, track.updated_at, track.emotion, track.confidence,
                             dict.fromkeys(self.labels, 0.0))
                self._lives[track.face_id] = life
                events.append(self._payload("new", track.face_id, life))
                continue
            if track.updated_at <= life.seen_at:
                continue  # not seen in this frame: nothing new to count
            life.seconds[life.emotion] = life.seconds.get(life.emotion, 0.0) + track.updated_at - life.seen_at
            life.seen_at, life.last_seen, life.confidence = track.updated_at, wall, track.confidence
            if track.emotion != life.emotion:
                life.emotion = track.emotion
                events.append(self._payload("update", track.face_id, life))
        return events

    def end_all(self) -> list[str]:
        """`end` for every open track (detection turned off, the daemon stopping)."""
        return [self._end(face_id) for face_id in list(self._lives)]

    @property
    def open_tracks(self) -> int:
        return len(self._lives)

    def _end(self, face_id: int) -> str:
        life = self._lives.pop(face_id)
        return self._payload("end", face_id, life, end_time=life.last_seen)

    @staticmethod
    def _payload(kind: str, face_id: int, life: _Life, end_time: str | None = None) -> str:
        return event_payload(kind, face_id, life.start_time, end_time, life.emotion, life.confidence, life.seconds)
