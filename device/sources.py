"""Frame sources: the Pi camera (Picamera2), OpenCV VideoCapture (USB camera, file, RTSP/HTTP) and images.

A live source (camera, stream) keeps only the newest frame, read by a capture thread, so latency never
builds up; frames replaced before the loop took them are counted in `dropped`. A lost camera is
reopened with backoff (1 s doubling to 10 s); `read` raises `SourceLost` after `frame_timeout_s`
without a frame. A file source gives every frame (paced at its frame rate with `realtime`) and
returns None at its end unless `loop` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from device.config import SourceSettings

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class SourceError(RuntimeError):
    """The source cannot be opened (missing file, no camera); the message names it."""


class SourceLost(SourceError):
    """A live source gave no frame for longer than `frame_timeout_s`."""


@dataclass(frozen=True)
class Frame:
    """One frame: `image` `(H, W, 3)` uint8 BGR, `index` from 0, `timestamp` (time.time(), s)."""

    image: np.ndarray
    index: int
    timestamp: float


class FrameSource(Protocol):
    live: bool
    dropped: int
    fps: float

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


def open_source(settings: SourceSettings) -> FrameSource:
    """Open the source named by `settings.uri`.

    Raises:
        SourceError: the file or folder does not exist, has no images, or the camera cannot be opened.
    """
    uri = settings.uri
    if uri == "picamera2":
        return LiveSource(lambda: _Picamera2Capture(settings), settings, name="Pi camera")
    if uri.isdigit():
        return LiveSource(lambda: _OpenCvCapture(int(uri), settings), settings, name=f"camera {uri}")
    if "://" in uri:
        return LiveSource(lambda: _OpenCvCapture(uri, settings), settings, name=uri)
    path = Path(uri)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path, loop=settings.loop, fps=settings.fps if settings.realtime else 0.0)
    return VideoFileSource(path, realtime=settings.realtime, loop=settings.loop)


class VideoFileSource:
    """Every frame of a video file, in order; None at its end (or from the start again with `loop`)."""

    live = False

    def __init__(self, path: Path, realtime: bool = False, loop: bool = False) -> None:
        if not path.is_file():
            raise SourceError(f"{path}: video file not found")
        self.path, self.realtime, self.loop = path, realtime, loop
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise SourceError(f"{path}: OpenCV cannot open this video")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.dropped = 0
        self._index = 0
        self._started = time.monotonic()

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        if not ok and self.loop:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.capture.read()
        if not ok:
            return None
        if self.realtime:  # pace at the file's own rate
            delay = self._started + self._index / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        frame = Frame(image, self._index, time.time())
        self._index += 1
        return frame

    def close(self) -> None:
        self.capture.release()


class ImageSource:
    """An image file or a folder of images (sorted by name), one frame each; with `fps` > 0 paced at that
    rate (`realtime = true` paces at `source.fps`), else as fast as they decode."""

    live = False

    def __init__(self, path: Path, loop: bool = False, fps: float = 0.0) -> None:
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise SourceError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        elif path.is_file():
            self.files = [path]
        else:
            raise SourceError(f"{path}: image file not found")
        self.loop, self.dropped, self._index, self.fps = loop, 0, 0, fps
        self._started = time.monotonic()

    def read(self) -> Frame | None:
        while self._index < len(self.files) or self.loop:
            path = self.files[self._index % len(self.files)]
            index = self._index
            self._index += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("%s: not a readable image, skipped", path)
                continue
            if self.fps:
                delay = self._started + index / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            return Frame(image, index, time.time())
        return None

    def close(self) -> None:
        pass


class _OpenCvCapture:
    def __init__(self, target: int | str, settings: SourceSettings) -> None:
        self.capture = cv2.VideoCapture(target)
        if not self.capture.isOpened():
            raise SourceError(f"camera {target!r}: OpenCV cannot open it")
        if isinstance(target, int):
            self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
            self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
            self.capture.set(cv2.CAP_PROP_FPS, settings.fps)

    def grab(self) -> np.ndarray | None:
        ok, image = self.capture.read()
        return image if ok else None

    def release(self) -> None:
        self.capture.release()


class _Picamera2Capture:
    """The Pi camera through Picamera2 (libcamera); imported only when used."""

    def __init__(self, settings: SourceSettings) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError("picamera2 is not installed (sudo apt install python3-picamera2, and create "
                              "the venv with --system-site-packages)") from None
        try:
            self.camera = Picamera2()
            # "RGB888" is BGR byte order in memory: what OpenCV expects.
            config = self.camera.create_video_configuration(
                main={"size": (settings.width, settings.height), "format": "RGB888"},
                controls={"FrameRate": settings.fps})
            self.camera.configure(config)
            self.camera.start()
        except (RuntimeError, IndexError) as err:
            raise SourceError(f"Pi camera: cannot be opened: {err}") from None

    def grab(self) -> np.ndarray | None:
        return self.camera.capture_array("main")

    def release(self) -> None:
        self.camera.close()


class LiveSource:
    """A camera or stream read by a capture thread that keeps only the newest frame."""

    live = True

    def __init__(self, opener, settings: SourceSettings, name: str) -> None:
        self.name, self.fps, self.timeout_s = name, settings.fps, settings.frame_timeout_s
        self.dropped = 0
        self._opener = opener
        self._capture = opener()  # fail fast at start: a missing camera is a configuration problem
        self._cond = threading.Condition()
        self._latest: np.ndarray | None = None
        self._index = 0
        self._last_frame_at = time.monotonic()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = 1.0
        while not self._closing.is_set():
            image = self._capture.grab() if self._capture else None
            if image is not None:
                backoff = 1.0
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = image
                    self._last_frame_at = time.monotonic()
                    self._cond.notify()
                continue
            log.warning("%s: no frame; reopening in %.0f s", self.name, backoff)
            if self._capture:
                self._capture.release()
                self._capture = None
            if self._closing.wait(backoff):
                break
            backoff = min(backoff * 2, 10.0)
            try:
                self._capture = self._opener()
                log.info("%s: reopened", self.name)
            except SourceError as err:
                log.warning("%s", err)

    def read(self) -> Frame | None:
        with self._cond:
            while self._latest is None:
                waited = time.monotonic() - self._last_frame_at
                if waited > self.timeout_s:
                    raise SourceLost(f"{self.name}: no frame for {waited:.0f} s")
                self._cond.wait(timeout=min(1.0, self.timeout_s))
            image, self._latest = self._latest, None
        frame = Frame(image, self._index, time.time())
        self._index += 1
        return frame

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=2.0)
        if self._capture:
            self._capture.release()
