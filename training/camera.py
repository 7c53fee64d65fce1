"""Named, seeded degradations of a Raspberry Pi camera, applied to registered grayscale faces.

One place for both uses: `training/augment.py` (`Augmentation.camera`) trains on them and
`benchmarks/robustness.py` measures accuracy under them, so the model is trained on what it is tested on.
Each degradation has a name and a few strengths (mild, medium, strong); all work on `(N, S, S) uint8` faces
(S = 48 on the device; any square side works) and return new arrays of the same shape and dtype.

- `low_light`: a dim scene and an under-exposing camera: `255 * gain * (x / 255) ** gamma`, optionally with
  the photon shot noise that fewer photons bring (Poisson, `photons` expected at full white after dimming).
- `noise`: sensor read noise, Gaussian with `sigma` grey levels, plus optional Poisson shot noise.
- `motion_blur`: a normalised line kernel of `length` px at a random angle per face (camera shake or a
  moving head during the exposure).
- `jpeg`: `cv2.imencode` JPEG at `quality` (an MJPEG stream or a compressed snapshot).
- `small_face`: a face far from the lens, `size` px across: area-averaged down to `size` px (what the
  sensor integrates) and back up to the original side with `cv2.INTER_LINEAR`, the interpolation the
  device's registration uses for faces smaller than 48 px (`device.contract.align_face`/`crop_face`).

Determinism: `degrade(faces, name, level, seed)` draws every random number from
`numpy.random.default_rng([seed, degradation index, level])`, so a benchmark figure is reproducible;
`degrade_face` takes a caller's generator, as the training batches do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


def _as_faces(faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 3 or faces.dtype != np.uint8:
        raise ValueError(f"expected (N, S, S) uint8 faces, got {faces.shape} {faces.dtype}")
    return faces


def _poisson(levels: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: `levels` (float grey levels 0-255) as Poisson photon counts, `photons` expected at 255."""
    counts = rng.poisson(np.clip(levels, 0, 255) * (photons / 255.0))
    return counts * (255.0 / photons)


def low_light(faces: np.ndarray, rng: np.random.Generator, *, gamma: float, gain: float,
              photons: float | None = None) -> np.ndarray:
    """A dim, under-exposed face: `255 * gain * (x / 255) ** gamma`, then shot noise if `photons` is set.

    Args:
        faces: `(N, S, S) uint8`.
        rng: the random generator (used only with `photons`).
        gamma: > 1 darkens the mid-tones (the camera's tone curve at low exposure).
        gain: overall brightness factor, 0-1.
        photons: expected photon count at full white after dimming (fewer: noisier); None: no shot noise.

    Returns:
        `(N, S, S) uint8`.
    """
    levels = 255.0 * gain * (_as_faces(faces) / 255.0) ** gamma
    if photons is not None:
        levels = _poisson(levels, photons, rng)
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8)


def noise(faces: np.ndarray, rng: np.random.Generator, *, sigma: float, photons: float | None = None) -> np.ndarray:
    """Sensor noise: Poisson shot noise (`photons` expected at full white; None: none), then Gaussian read
    noise of `sigma` grey levels. `(N, S, S) uint8` in and out."""
    levels = _as_faces(faces).astype(np.float64)
    if photons is not None:
        levels = _poisson(levels, photons, rng)
    levels = levels + rng.normal(0.0, sigma, levels.shape)
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8)


def line_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A `(length, length) float32` motion-blur kernel: a 1 px line through the centre at `angle_deg`
    (0: horizontal), summing to 1."""
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    centre = ((length - 1) / 2.0, (length - 1) / 2.0)
    rotation = cv2.getRotationMatrix2D(centre, angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length), flags=cv2.INTER_LINEAR)
    return kernel / kernel.sum()


def motion_blur(faces: np.ndarray, rng: np.random.Generator, *, length: int) -> np.ndarray:
    """Linear motion blur of `length` px, each face at its own uniformly random angle (degrees, 0-180).
    `(N, S, S) uint8` in and out; edges replicated."""
    faces = _as_faces(faces)
    out = np.empty_like(faces)
    for i, face in enumerate(faces):
        kernel = line_kernel(length, rng.uniform(0.0, 180.0))
        out[i] = cv2.filter2D(face, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    return out


def jpeg(faces: np.ndarray, rng: np.random.Generator, *, quality: int) -> np.ndarray:
    """JPEG compression at `quality` (1-100) through `cv2.imencode` / `cv2.imdecode` (deterministic; `rng`
    unused). `(N, S, S) uint8` in and out."""
    faces = _as_faces(faces)
    out = np.empty_like(faces)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for i, face in enumerate(faces):
        ok, encoded = cv2.imencode(".jpg", face, params)
        if not ok:
            raise RuntimeError("cv2.imencode failed to write a JPEG")
        out[i] = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    return out


def small_face(faces: np.ndarray, rng: np.random.Generator, *, size: int) -> np.ndarray:
    """A face `size` px across: `cv2.INTER_AREA` down to `size` x `size`, `cv2.INTER_LINEAR` back up (the
    device's interpolation for faces under 48 px). Deterministic (`rng` unused). `(N, S, S) uint8` in and out."""
    faces = _as_faces(faces)
    side = faces.shape[1]
    out = np.empty_like(faces)
    for i, face in enumerate(faces):
        small = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR)
    return out


@dataclass(frozen=True)
class Degradation:
    """One named camera degradation and its strengths.

    Attributes:
        name: the key used in reports and configs, e.g. "motion_blur".
        apply: `(faces, rng, **strength) -> faces`, `(N, S, S) uint8` in and out.
        strengths: keyword arguments of `apply`, mild to strong.
        unit: what the strengths measure, for tables.
    """

    name: str
    apply: Callable[..., np.ndarray]
    strengths: tuple[dict, ...]
    unit: str

    def label(self, level: int) -> str:
        """A short text for strength `level`, e.g. "length=5"."""
        return ", ".join(f"{k}={v}" for k, v in self.strengths[level].items())


# Strengths chosen to span what a Pi camera indoors gives: from a dim evening room to a nearly dark one,
# from a clean sensor to a high-ISO one, a few px of shake at 48 px, JPEG from a typical stream quality down
# to a heavily compressed one (applied to the 48 px face itself: harsher than on a full frame), and faces of
# 24 down to 16 px (about 2-3 m from a wide-angle lens at 640x480).
DEGRADATIONS: dict[str, Degradation] = {d.name: d for d in (
    Degradation("low_light", low_light, ({"gamma": 1.2, "gain": 0.8, "photons": 1000.0},
                                         {"gamma": 1.5, "gain": 0.6, "photons": 400.0},
                                         {"gamma": 2.0, "gain": 0.4, "photons": 150.0}), "tone curve, gain, photons"),
    Degradation("noise", noise, ({"sigma": 4.0}, {"sigma": 8.0}, {"sigma": 16.0}), "Gaussian sigma, grey levels"),
    Degradation("motion_blur", motion_blur, ({"length": 3}, {"length": 5}, {"length": 7}), "line length, px"),
    Degradation("jpeg", jpeg, ({"quality": 50}, {"quality": 30}, {"quality": 15}), "JPEG quality"),
    Degradation("small_face", small_face, ({"size": 24}, {"size": 20}, {"size": 16}), "face side, px"),
)}
NAMES = tuple(DEGRADATIONS)


def get(name: str) -> Degradation:
    """The degradation called `name`.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown camera degradation {name!r}; known: {', '.join(NAMES)}")
    return DEGRADATIONS[name]


def degrade(faces: np.ndarray, name: str, level: int, seed: int = 0) -> np.ndarray:
    """Degradation `name` at strength `level` (0 = mild) on every face, reproducibly.

    Args:
        faces: `(N, S, S) uint8` faces.
        name: one of `NAMES`.
        level: index into the degradation's `strengths`.
        seed: the same seed, faces and level give the same result.

    Returns:
        `(N, S, S) uint8`.

    Raises:
        ValueError: an unknown name, a level out of range, or faces of another shape/dtype.
    """
    degradation = get(name)
    if not 0 <= level < len(degradation.strengths):
        raise ValueError(f"{name}: level {level} out of range 0-{len(degradation.strengths) - 1}")
    rng = np.random.default_rng([seed, NAMES.index(name), level])
    return degradation.apply(faces, rng, **degradation.strengths[level])


def degrade_face(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly chosen degradation at a uniformly chosen strength on one `(S, S) uint8` face (training).
    Draws its choices from `rng`, so a batch stays a function of the generator's seed."""
    degradation = DEGRADATIONS[NAMES[int(rng.integers(len(NAMES)))]]
    strength = degradation.strengths[int(rng.integers(len(degradation.strengths)))]
    return degradation.apply(face[np.newaxis], rng, **strength)[0]


def mean_abs_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in grey levels between two uint8 arrays (how strong a degradation is)."""
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))

