"""The model contract: the one place that says what the classifier was trained on and expects.

`training/`, `convert/` and `device/` all import this module, so the label order, input size,
normalisation and face-crop rule used at training time are exactly the ones used on the device.

Label order is FER2013's (Goodfellow et al., "Challenges in Representation Learning", ICML 2013
workshop): 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(LABELS)

INPUT_SIZE = 48  # px; FER2013 images are 48x48 grayscale
INPUT_SHAPE: tuple[int, int, int] = (INPUT_SIZE, INPUT_SIZE, 1)

# Face registration: how a face found in a frame becomes a 48x48 input framed as FER2013 framed its faces.
# The numbers come from `device/models/registration.json`, measured on FER2013 Training by
# `python training/registration.py` (see `registration()`), never chosen by eye.
REGISTRATION_FILE = Path(__file__).resolve().parent / "models" / "registration.json"
YUNET_FILE = "face_detection_yunet_2023mar.onnx"  # OpenCV Zoo's YuNet, beside this module's models
LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")
MEASURE_SCORE_THRESHOLD = 0.5  # YuNet score above which a FER2013 face counts as found when measuring
ALIGN_RANSAC_PX = 4.0  # a landmark further than this (48x48 px) from the fitted transform is an outlier

PREPROCESSING = {
    "color": "grayscale (OpenCV BGR2GRAY weights)",
    "registration": "YuNet's five landmarks -> least-squares similarity transform (cv2.estimateAffinePartial2D) "
    "onto the FER2013 landmark template (device/models/registration.json) -> cv2.warpAffine to 48x48; "
    "a Haar box: the square frame measured for Haar boxes on FER2013, edges replicated",
    "normalisation": "float32 = uint8 / 255.0, range [0, 1]",
    "labels": list(LABELS),
}


def normalize(images: np.ndarray) -> np.ndarray:
    """Map uint8 pixels to the float model's input range.

    Args:
        images: `(..., 48, 48)` or `(..., 48, 48, 1)` uint8 grayscale faces.

    Returns:
        The same shape as float32 in [0, 1] (`pixel / 255`).

    Raises:
        TypeError: if `images` is not uint8 (a float array here is almost always a double
            normalisation bug).
    """
    if images.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {images.dtype}")
    return images.astype(np.float32) / np.float32(255.0)


def as_model_batch(faces: np.ndarray) -> np.ndarray:
    """Check face crops and give them the model's `(N, 48, 48, 1)` uint8 layout.

    Args:
        faces: `(N, 48, 48)` or `(N, 48, 48, 1)` uint8 face crops.

    Raises:
        ValueError: on any other shape or dtype.
    """
    faces = np.asarray(faces)
    if faces.dtype != np.uint8:
        raise ValueError(f"face crops must be uint8, got {faces.dtype}")
    if faces.ndim == 3:
        faces = faces[..., np.newaxis]
    if faces.ndim != 4 or faces.shape[1:] != INPUT_SHAPE:
        raise ValueError(f"face crops must be (N, 48, 48) or (N, 48, 48, 1), got {faces.shape}")
    return faces


# Test-time augmentation (TTA): the views of a registered face whose probabilities are averaged.
# "flip" is the face and its mirror image (2 views); "flip-shift" adds the face moved 3 px left, right,
# up and down, each with its mirror (10 views, like the ten-crop of Krizhevsky et al. 2012 but inside the
# 48x48 input). The long recipe's random 40 px crops move faces by up to 4 px, so 3 px stays inside what the
# model was trained on. What each mode adds, and costs, is measured per model in its card.
TTA_MODES: tuple[str, ...] = ("none", "flip", "flip-shift")
TTA_SHIFT_PX = 3


def check_tta_mode(mode: str) -> str:
    """`mode` when it is one of `TTA_MODES`.

    Raises:
        ValueError: an unknown mode, naming the allowed ones.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {mode!r}; allowed: {', '.join(TTA_MODES)}")
    return mode


def tta_views(faces: np.ndarray, mode: str) -> np.ndarray:
    """The views of each face that a TTA mode averages over.

    Args:
        faces: `(N, 48, 48, 1)` uint8 registered faces (`as_model_batch`).
        mode: one of `TTA_MODES`.

    Returns:
        `(V * N, 48, 48, 1)` uint8, view-major: rows `v * N : (v + 1) * N` are view `v` of every face
        (V = 1, 2 or 10). Shifted views replicate the edge pixels that move into the frame.

    Raises:
        ValueError: an unknown mode.
    """
    if check_tta_mode(mode) == "none":
        return faces  # the single-crop hot path: no copy
    views = [faces, faces[:, :, ::-1]]
    if mode == "flip-shift":
        s = TTA_SHIFT_PX
        padded = np.pad(faces, ((0, 0), (s, s), (s, s), (0, 0)), mode="edge")
        for dx, dy in ((s, 0), (-s, 0), (0, s), (0, -s)):
            shifted = padded[:, s + dy : s + dy + INPUT_SIZE, s + dx : s + dx + INPUT_SIZE]
            views += [shifted, shifted[:, :, ::-1]]
    return np.ascontiguousarray(np.concatenate(views))


def average_views(probabilities: np.ndarray, count: int) -> np.ndarray:
    """`(N, 7)` float32 mean over views of the `(V * N, 7)` probabilities of `tta_views` (`count` = N)."""
    if len(probabilities) == count:  # one view: nothing to average
        return probabilities
    return probabilities.reshape(-1, count, probabilities.shape[-1]).mean(axis=0).astype(np.float32)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """Convert an OpenCV frame to grayscale.

    Args:
        frame: `(H, W, 3)` uint8 BGR (OpenCV's order), `(H, W, 4)` BGRA, or `(H, W)` gray.

    Returns:
        `(H, W)` uint8 grayscale.
    """
    import cv2  # lazy: keeps the label/normalisation parts importable without OpenCV

    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[..., 0]
    raise ValueError(f"unsupported frame shape {frame.shape}")


@functools.cache
def registration() -> dict:
    """The FER2013 registration measured by `training/registration.py` (`device/models/registration.json`).

    Raises:
        OSError: the file is missing or unreadable (it ships with the package).
    """
    return json.loads(REGISTRATION_FILE.read_text())


def landmark_template() -> np.ndarray:
    """`(5, 2) float32`: where FER2013 puts YuNet's five landmarks in the 48x48 frame, px (medians)."""
    return np.asarray(registration()["landmarks"]["median_px"], dtype=np.float32)


def alignment_transform(landmarks: np.ndarray, template: np.ndarray | None = None) -> np.ndarray:
    """The similarity transform that maps a face's landmarks onto the FER2013 template.

    Args:
        landmarks: `(5, 2)` float frame px, in `LANDMARK_NAMES` order (YuNet's order).
        template: `(5, 2)` target px (default: `landmark_template()`).

    Returns:
        `(2, 3) float64` affine matrix (rotation, uniform scale, translation): frame px -> 48x48 px.
        Fitted by `cv2.estimateAffinePartial2D` (RANSAC, then least squares on the inliers).

    Raises:
        ValueError: the points are degenerate (no transform fits).
    """
    import cv2

    source = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)
    target = landmark_template() if template is None else np.asarray(template, dtype=np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC,
                                            ransacReprojThreshold=ALIGN_RANSAC_PX)
    if matrix is None:
        raise ValueError(f"no similarity transform fits the landmarks {source.tolist()}")
    return matrix


def similarity_parameters(matrix: np.ndarray) -> tuple[float, float, float, float]:
    """`(rotation_deg, scale, shift_x_px, shift_y_px)` of a `(2, 3)` similarity transform, the shift being
    where the 48x48 frame's centre moves to."""
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    rotation = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    centre = np.array([INPUT_SIZE / 2.0, INPUT_SIZE / 2.0, 1.0])
    shift = matrix @ centre - centre[:2]
    return rotation, scale, float(shift[0]), float(shift[1])


def view_matrix(rotation_deg: float, log_scale: float, centre: tuple[float, float], size: int) -> np.ndarray:
    """`(2, 3)` affine matrix: rotate (degrees) and scale (by `exp(log_scale)`) a 48x48 face about `centre`
    (face px), which lands in the middle of a `size` x `size` output. The training augmentation and the
    jitter-robustness benchmark move registered faces with it."""
    import cv2

    matrix = cv2.getRotationMatrix2D(centre, rotation_deg, float(np.exp(log_scale)))
    matrix[:, 2] += np.array([size / 2.0, size / 2.0]) - np.array(centre)
    return matrix


def align_face(gray: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Register a face as FER2013 did: its landmarks onto the template, warped to the model's input.

    Args:
        gray: `(H, W)` uint8 grayscale frame (see `to_gray`).
        landmarks: `(5, 2)` float frame px, YuNet's order (`LANDMARK_NAMES`).

    Returns:
        `(48, 48)` uint8 face, edges replicated where the frame ends.

    Raises:
        ValueError: a wrong frame or degenerate landmarks.
    """
    import cv2

    _check_gray(gray)
    matrix = alignment_transform(landmarks)
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if scale < 0.5:
        # A big face: shrink its neighbourhood with area averaging first, as cv2.resize(INTER_AREA) does for
        # FER2013-style downscaling; warpAffine alone would alias.
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0, 1], [INPUT_SIZE, 0, 1], [0, INPUT_SIZE, 1], [INPUT_SIZE, INPUT_SIZE, 1]]) @ inverse.T
        x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
        window = _window(gray, x0, y0, x1 - x0, y1 - y0)
        factor = 2.0 * scale  # the window shrinks to twice the model's scale, then the warp halves it
        small = cv2.resize(window, (max(1, round(window.shape[1] * factor)), max(1, round(window.shape[0] * factor))),
                           interpolation=cv2.INTER_AREA)
        shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
        resize = np.diag([small.shape[1] / window.shape[1], small.shape[0] / window.shape[0], 1.0])
        matrix = np.vstack([matrix, [0.0, 0.0, 1.0]]) @ np.linalg.inv(resize @ shift)
        gray, matrix = small, matrix[:2]
    return cv2.warpAffine(gray, matrix, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def box_crop_window(box: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """The square FER2013-framed window for a Haar face box: `(x0, y0, side)` in frame px (may leave the frame).

    The rule (frame side in box sides, centre offset in box sides) is the median measured on FER2013 Training
    (`registration()["haar_box"]`).

    Raises:
        ValueError: if the box has a non-positive width or height.
    """
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"face box must have positive size, got {box}")
    rule = registration()["haar_box"]
    size = max(w, h)
    side = size * rule["frame_side_in_box_sides"]
    dx, dy = rule["centre_offset_in_box_sides"]
    cx, cy = x + w / 2.0 + dx * size, y + h / 2.0 + dy * size
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), max(1, int(round(side)))


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Register a face from its box alone (the Haar path): the measured window, resized to the model's input.

    Args:
        gray: `(H, W)` uint8 grayscale frame (see `to_gray`).
        box: `(x, y, w, h)` face box in frame pixels.

    Returns:
        `(48, 48)` uint8 face crop, resized with `cv2.INTER_AREA`, edges replicated outside the frame.
    """
    import cv2

    _check_gray(gray)
    x0, y0, side = box_crop_window(box)
    window = _window(gray, x0, y0, side, side)
    interpolation = cv2.INTER_AREA if side >= INPUT_SIZE else cv2.INTER_LINEAR
    return cv2.resize(window, (INPUT_SIZE, INPUT_SIZE), interpolation=interpolation)


def _check_gray(gray: np.ndarray) -> None:
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a (H, W) uint8 gray frame, got {gray.shape} {gray.dtype}")


def _window(gray: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """`gray[y0:y0+height, x0:x0+width]`, edges replicated where the window leaves the frame, so faces at the
    border keep their aspect ratio instead of being stretched."""
    import cv2

    rows, cols = gray.shape
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x0 + width - cols), max(0, y0 + height - rows)
    inside = gray[max(0, y0) : min(rows, y0 + height), max(0, x0) : min(cols, x0 + width)]
    if inside.size == 0:
        inside = gray[min(max(0, y0), rows - 1) : min(max(0, y0), rows - 1) + 1,
                      min(max(0, x0), cols - 1) : min(max(0, x0), cols - 1) + 1]
        pad_l, pad_t, pad_r, pad_b = 0, 0, width - 1, height - 1
    if pad_l or pad_t or pad_r or pad_b:
        inside = cv2.copyMakeBorder(inside, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    return inside
