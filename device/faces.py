"""Face detectors behind one small interface: `detect(frame, gray) -> [Face, ...]`.

- `YuNetFaceDetector` (default): OpenCV Zoo's YuNet 2023mar (Wu, Peng and Yu, "YuNet: A Tiny
  Millisecond-level Face Detector", Machine Intelligence Research 2023) through `cv2.FaceDetectorYN`; it
  gives five landmarks per face, which `device.contract.align_face` registers onto the FER2013 template.
  The model ships in `device/models/` (MIT licence, provenance in `device/models/YUNET.md`).
- `HaarFaceDetector` (fallback): OpenCV's frontal-face Haar cascade (Viola and Jones, CVPR 2001), the
  file that ships inside opencv-python 4.x (`cv2.data.haarcascades`); boxes only, registered by the box
  rule measured on FER2013 (`device.contract.crop_face`).

Faces are in source-frame pixels, largest first, after non-maximum suppression (`suppress_overlaps`):
one face is one detection. `device.recognition.limit_faces` keeps the `max_faces` largest.

`RoiFaceDetector` wraps either: between full-frame detections (every `full_frame_every` frames, or at
once when a face is lost) it searches only a window around each face found before, rescaled so the
face is about 48 px: a small image instead of the whole frame (the "detect, then track by local
re-detection" scheme of many real-time face pipelines).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from device.contract import YUNET_FILE

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

DEFAULT_YUNET = Path(__file__).resolve().parent / "models" / YUNET_FILE
# OpenCV Zoo's face_detection_yunet_2023mar.onnx, byte for byte (device/models/YUNET.md).
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
NMS_IOU = 0.3  # two detections overlapping more than this (IoU) are one face
CONTAINED = 0.8  # a box with this share of its area inside a larger one is the same face, not a second one


class DetectorError(RuntimeError):
    """The detector model cannot be loaded; the message names the file."""


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: `(x, y, w, h)` int frame px.
        score: detector confidence in [0, 1] (1.0 for Haar, which has none).
        landmarks: `(5, 2) float32` frame px in `device.contract.LANDMARK_NAMES` order, or None (Haar).
    """

    box: Box
    score: float = 1.0
    landmarks: np.ndarray | None = None

    def scaled(self, factor: float, offset: tuple[float, float] = (0.0, 0.0)) -> Face:
        """This face in another frame: px / `factor` + `offset`."""
        x, y, w, h = self.box
        ox, oy = offset
        box = (round(x / factor + ox), round(y / factor + oy), round(w / factor), round(h / factor))
        points = None if self.landmarks is None else (self.landmarks / factor + (ox, oy)).astype(np.float32)
        return replace(self, box=box, landmarks=points)


class FaceDetector(Protocol):
    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[Face]:
        """Faces in `frame` `(H, W, 3)` uint8 BGR, whose `(H, W)` uint8 gray version is `gray`."""
        ...


def build_detector(settings) -> FaceDetector:
    """The detector chosen by `settings.kind` (`device.config.DetectorSettings`), inside a `RoiFaceDetector`
    unless `full_frame_every` is 1.

    Raises:
        DetectorError: the cascade or model file is missing, unreadable or not the expected model.
    """
    common = {"detect_width": settings.detect_width, "min_face_px": settings.min_face_px}
    if settings.kind == "yunet":
        base: FaceDetector = YuNetFaceDetector(settings.model or DEFAULT_YUNET,
                                               score_threshold=settings.score_threshold, **common)
    else:
        base = HaarFaceDetector(**common)
    return base if settings.full_frame_every <= 1 else RoiFaceDetector(base, settings.full_frame_every)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two `(x, y, w, h)` boxes, in [0, 1]."""
    inter = _intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _intersection(a: Box, b: Box) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return float(max(0, w) * max(0, h))


def nested(a: Box, b: Box, share: float = CONTAINED) -> bool:
    """Whether `share` of the smaller box's area lies inside the other box."""
    smaller = min(a[2] * a[3], b[2] * b[3])
    return smaller > 0 and _intersection(a, b) >= share * smaller


def suppress_overlaps(faces: list[Face], iou_threshold: float = NMS_IOU, contained: float = CONTAINED) -> list[Face]:
    """Non-maximum suppression: keep the best of every group of detections of one face.

    Faces are taken by score, then size; a face is dropped when its IoU with a kept face exceeds
    `iou_threshold`, or when `contained` of its area lies inside a kept face (or a kept face inside it).
    """
    ordered = sorted(faces, key=lambda f: (f.score, f.box[2] * f.box[3]), reverse=True)
    kept: list[Face] = []
    for face in ordered:
        if all(iou(face.box, k.box) <= iou_threshold and not nested(face.box, k.box, contained) for k in kept):
            kept.append(face)
    return kept


def _largest(faces: list[Face]) -> list[Face]:
    return sorted(suppress_overlaps(faces), key=lambda f: f.box[2] * f.box[3], reverse=True)


def _downscaled(image: np.ndarray, detect_width: int) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    scale = min(1.0, detect_width / width)
    if scale >= 1.0:
        return image, 1.0
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA), scale


class HaarFaceDetector:
    """OpenCV's Haar cascade on a gray frame downscaled to `detect_width` px (scale factor 1.1, 5 neighbours)."""

    def __init__(self, *, detect_width: int = 320, min_face_px: int = 40,
                 cascade_file: str | Path | None = None) -> None:
        path = Path(cascade_file or Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise DetectorError(f"{path}: Haar cascade missing or unreadable (opencv-python 5 wheels no longer "
                                "ship it; install opencv-python-headless<5)")
        self.detect_width, self.min_face_px = detect_width, min_face_px

    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[Face]:
        small, scale = _downscaled(gray, self.detect_width)
        min_side = max(8, round(self.min_face_px * scale))
        return _largest([f.scaled(scale) for f in self.detect_sized(small, min_side, None)])

    def detect_sized(self, gray: np.ndarray, min_px: int, max_px: int | None) -> list[Face]:
        """Faces between `min_px` and `max_px` (None: any) px in `gray` as it is, unscaled."""
        found = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_px, min_px),
                                              maxSize=(max_px, max_px) if max_px else None)
        return suppress_overlaps([Face(tuple(int(v) for v in box)) for box in found]) if len(found) else []


class YuNetFaceDetector:
    """OpenCV's YuNet face detector (`cv2.FaceDetectorYN`) on a frame downscaled to `detect_width` px.

    Raises (on construction):
        DetectorError: the model is missing, is not the YuNet 2023mar file (sha256 checked when it is the
            shipped file name), or OpenCV cannot load it.
    """

    def __init__(self, model: str | Path = DEFAULT_YUNET, *, score_threshold: float = 0.7, detect_width: int = 320,
                 min_face_px: int = 40) -> None:
        model = Path(model)
        if not model.is_file():
            raise DetectorError(f"{model}: YuNet model not found")
        if model.name == YUNET_FILE:
            digest = hashlib.sha256(model.read_bytes()).hexdigest()
            if digest != YUNET_SHA256:
                raise DetectorError(f"{model}: sha256 {digest[:12]}... is not YuNet 2023mar's "
                                    f"({YUNET_SHA256[:12]}...): the file is corrupt or another model")
        try:
            self.net = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score_threshold, NMS_IOU)
        except cv2.error as err:
            raise DetectorError(f"{model}: not a YuNet model OpenCV can load: {err.err}") from None
        self.detect_width, self.min_face_px = detect_width, min_face_px

    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[Face]:
        small, scale = _downscaled(frame, self.detect_width)
        faces = [f.scaled(scale) for f in self.detect_faces(small)]
        return _largest([f for f in faces if min(f.box[2], f.box[3]) >= self.min_face_px])

    def detect_faces(self, frame: np.ndarray) -> list[Face]:
        """Every face YuNet finds in `frame` `(H, W, 3)` uint8 BGR as it is, best score first."""
        self.net.setInputSize((frame.shape[1], frame.shape[0]))
        _, rows = self.net.detect(frame)
        if rows is None:
            return []
        faces = [Face(tuple(int(round(v)) for v in row[:4]), float(row[14]),
                      np.asarray(row[4:14], dtype=np.float32).reshape(5, 2)) for row in rows]
        return sorted(faces, key=lambda f: f.score, reverse=True)


class RoiFaceDetector:
    """Full-frame detection every `full_frame_every` frames; in between, re-detection near known faces.

    A face not found again near its last box triggers a full-frame detection of the same frame, so no
    face is lost to the shortcut; new faces appear within `full_frame_every` frames.
    """

    FACE_PX = 48  # the face's size in the rescaled search window, px
    WINDOW = 1.8  # search window side, in face sizes

    def __init__(self, base: FaceDetector, full_frame_every: int) -> None:
        self.base, self.full_frame_every = base, full_frame_every
        self._faces: list[Face] = []
        self._since_full = 0

    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[Face]:
        if not self._faces or self._since_full >= self.full_frame_every - 1:
            self._faces, self._since_full = self.base.detect(frame, gray), 0
            return self._faces
        found = [face for face in (self._search(frame, gray, f.box) for f in self._faces) if face is not None]
        found = suppress_overlaps(found)
        if len(found) < len(self._faces):  # a face moved away or left: look at the whole frame now
            found, self._since_full = self.base.detect(frame, gray), -1
        self._since_full += 1
        self._faces = found
        return found

    def _search(self, frame: np.ndarray, gray: np.ndarray, box: Box) -> Face | None:
        x, y, w, h = box
        side = max(w, h) * self.WINDOW
        height, width = gray.shape
        x0, y0 = max(0, int(x + w / 2 - side / 2)), max(0, int(y + h / 2 - side / 2))
        x1, y1 = min(width, int(x0 + side)), min(height, int(y0 + side))
        scale = min(1.0, self.FACE_PX / max(w, h))
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        if isinstance(self.base, HaarFaceDetector):  # only the sizes a face can grow or shrink to in a frame
            window = cv2.resize(gray[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
            face = max(w, h) * scale
            faces = self.base.detect_sized(window, round(face * 0.7), round(face * 1.4))
        else:
            faces = self.base.detect_faces(cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA))
        if not faces:
            return None
        best = max(faces, key=lambda f: (f.score, f.box[2] * f.box[3]))
        return best.scaled(scale, (x0, y0))
