"""Frame sources: the Pi camera (Picamera2), OpenCV VideoCapture (USB camera, file, RTSP/HTTP) and images.

A live source (camera, stream) keeps only the newest frame, read by a capture thread, so latency never
builds up; frames replaced before the loop took them are counted in `dropped`. A lost camera or stream
(an IP camera rebooted, Wi-Fi gone) is reopened with backoff (1 s doubling to 10 s), the loss and the
return logged once each; `health()` says so meanwhile (for `stats`), and `read` raises `SourceLost`
after `frame_timeout_s` without a frame. A network stream that stalls without closing its connection
is given up by OpenCV's FFmpeg after `STREAM_TIMEOUT_MS` per attempt (OpenCV's own default is 30 s).

A file source gives every frame (paced at its frame rate with `realtime`) and returns None at its end
unless `loop` is set; a file or folder that never gives a frame raises `SourceError` at its end, or with
`loop` backs off (0.1 s doubling to 5 s, waking at once on `stop`) and raises `SourceLost` after
`frame_timeout_s`, so it never spins. Every source returns None as soon as the `stop` event it was opened
with is set.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from device import MAX_IMAGE_PIXELS
from device.config import SourceSettings

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Open and read timeout of a network stream, ms (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC / READ_TIMEOUT_MSEC): FFmpeg
# retries a stalled read a few times, so a vanished camera is noticed in about 3 x this.
STREAM_TIMEOUT_MS = 5000


class SourceError(RuntimeError):
    """The source cannot be opened (missing file, no camera); the message names it."""


class SourceLost(SourceError):
    """A live source gave no frame for longer than `frame_timeout_s`."""


def image_size(path: Path) -> tuple[int, int] | None:
    """`(width, height)` in px from a PNG, JPEG or BMP header, without decoding; None for other formats."""
    try:
        with path.open("rb") as handle:
            head = handle.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            if head[:2] == b"BM" and len(head) >= 26:
                return (abs(int.from_bytes(head[18:22], "little", signed=True)),
                        abs(int.from_bytes(head[22:26], "little", signed=True)))
            if head[:2] == b"\xff\xd8":
                handle.seek(2)
                return _jpeg_size(handle)
    except OSError:
        return None
    return None


def _jpeg_size(handle) -> tuple[int, int] | None:
    # Walk the JPEG segments up to the first start-of-frame marker, which holds the size.
    for _ in range(1000):
        byte = handle.read(1)
        while byte == b"\xff":  # fill bytes before a marker
            byte = handle.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            continue
        length = int.from_bytes(handle.read(2), "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            segment = handle.read(5)
            return int.from_bytes(segment[3:5], "big"), int.from_bytes(segment[1:3], "big")
        if length < 2:
            return None
        handle.seek(length - 2, os.SEEK_CUR)
        if handle.read(1) != b"\xff":
            return None
    return None


def read_image(path: Path) -> np.ndarray:
    """Decode an image file as `(H, W, 3)` uint8 BGR.

    Raises:
        SourceError: naming the file: not readable as an image, or larger than `device.MAX_IMAGE_PIXELS`
            (PNG, JPEG and BMP are refused from their header, before any pixel is decoded; other formats by
            OpenCV's `OPENCV_IO_MAX_IMAGE_PIXELS`, which `device/__init__.py` sets to the same value).
    """
    size = image_size(path)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise SourceError(f"{path}: {size[0]}x{size[1]} px is above the limit of {MAX_IMAGE_PIXELS:,} px "
                          f"(device.MAX_IMAGE_PIXELS); not decoded")
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as err:  # OpenCV raises, instead of returning None, for an image above its own limit
        if "CV_IO_MAX_IMAGE_PIXELS" in str(err):
            raise SourceError(f"{path}: above the limit of {os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS')} px "
                              "(OPENCV_IO_MAX_IMAGE_PIXELS); not decoded") from None
        raise SourceError(f"{path}: not a readable image ({err.err})") from None
    if image is None:
        raise SourceError(f"{path}: not a readable image")
    return image


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


def open_source(settings: SourceSettings, stop: threading.Event | None = None) -> FrameSource:
    """Open the source named by `settings.uri`.

    Args:
        settings: the `[source]` section.
        stop: once set, `read` returns None instead of waiting for a frame (the signal handlers set it).

    Raises:
        SourceError: the file or folder does not exist, has no images, or the camera cannot be opened.
    """
    uri = settings.uri
    if uri == "picamera2":
        return LiveSource(lambda: _Picamera2Capture(settings), settings, name="Pi camera", stop=stop)
    if uri.isdigit():
        return LiveSource(lambda: _OpenCvCapture(int(uri), settings), settings, name=f"camera {uri}", stop=stop)
    if "://" in uri:
        return LiveSource(lambda: _OpenCvCapture(uri, settings), settings, name=redact_url(uri), stop=stop)
    path = Path(uri)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path, loop=settings.loop, timeout_s=settings.frame_timeout_s, stop=stop,
                           fps=settings.fps if settings.realtime else 0.0)
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
            if self._index == 0:  # opened, but not one frame decodes: a source fault, not a clean end
                raise SourceError(f"{self.path}: OpenCV opens this video but decodes no frame")
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
    rate (`realtime = true` paces at `source.fps`), else as fast as they decode.

    An unreadable file is skipped and logged once. Where no file gives a frame, `read` raises
    `SourceError` at the end (no `loop`), or with `loop` waits with backoff and raises `SourceLost`
    after `timeout_s` without a frame.
    """

    live = False

    def __init__(self, path: Path, loop: bool = False, timeout_s: float = 30.0,
                 stop: threading.Event | None = None, fps: float = 0.0) -> None:
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise SourceError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        elif path.is_file():
            self.files = [path]
        else:
            raise SourceError(f"{path}: image file not found")
        self.path, self.loop, self.dropped, self._index, self.fps = path, loop, 0, 0, fps
        self.timeout_s = timeout_s
        self._stop = stop or threading.Event()
        self._frames = 0
        self._failed_in_a_row = 0
        self._started = self._last_frame_at = time.monotonic()
        self._backoff = 0.1
        self._logged: set[Path] = set()

    def read(self) -> Frame | None:
        while (self._index < len(self.files) or self.loop) and not self._stop.is_set():
            if self._failed_in_a_row >= len(self.files):  # a whole pass without a frame
                self._wait_after_a_fruitless_pass()
                continue
            path = self.files[self._index % len(self.files)]
            index = self._index
            self._index += 1
            try:
                image = read_image(path)
            except SourceError as err:
                self._failed_in_a_row += 1
                if path not in self._logged:  # once per file, not once per attempt
                    self._logged.add(path)
                    log.warning("%s, skipped", err)
                continue
            self._failed_in_a_row = 0
            self._frames += 1
            self._last_frame_at = time.monotonic()
            self._backoff = 0.1
            if self.fps:
                delay = self._started + index / self.fps - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
            return Frame(image, index, time.time())
        if not self._frames and not self._stop.is_set():
            raise SourceError(f"{self.path}: no readable image")
        return None

    def _wait_after_a_fruitless_pass(self) -> None:
        waited = time.monotonic() - self._last_frame_at
        if waited >= self.timeout_s:
            raise SourceLost(f"{self.path}: no readable image for {waited:.0f} s")
        self._stop.wait(min(self._backoff, self.timeout_s - waited))
        self._backoff = min(self._backoff * 2, 5.0)
        self._failed_in_a_row = 0

    def close(self) -> None:
        pass


def redact_url(uri: str) -> str:
    """`uri` with the password of `scheme://user:password@host/...` replaced by `***`, for logs and errors; all
    but the scheme of a URL that does not parse (e.g. an unclosed IPv6 bracket)."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return f"{uri.split('://', 1)[0]}://***" if "://" in uri else "***"
    if password is None:
        return uri
    userinfo, _, host = parts.netloc.rpartition("@")  # the host part as written (IPv6 brackets, port)
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))


class _OpenCvCapture:
    def __init__(self, target: int | str, settings: SourceSettings) -> None:
        if isinstance(target, str) and "://" in target:
            self.capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
            shown = redact_url(target)
        else:
            self.capture = cv2.VideoCapture(target)
            shown = f"camera {target!r}"
        if not self.capture.isOpened():
            raise SourceError(f"{shown}: OpenCV cannot open it")
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
    """A camera or stream read by a capture thread that keeps only the newest frame.

    `on_wait`, where set, is called about every 0.2 s while `read` waits for a frame (the service publishes
    `stats` and feeds the systemd watchdog from it), outside the source's lock.
    """

    live = True

    def __init__(self, opener, settings: SourceSettings, name: str, stop: threading.Event | None = None) -> None:
        self.name, self.fps, self.timeout_s = name, settings.fps, settings.frame_timeout_s
        self._stop = stop or threading.Event()
        self.dropped = 0
        self.on_wait: Callable[[], None] | None = None
        self._opener = opener
        self._capture = opener()  # fail fast at start: a missing camera is a configuration problem
        self._cond = threading.Condition()
        self._latest: np.ndarray | None = None
        self._index = 0
        self._last_frame_at = time.monotonic()
        self._lost_at: float | None = None  # monotonic time of the loss, while the source is lost
        self._reason: str | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._capture_frames()
        finally:  # released by the thread that reads it, never while a read is under way
            if self._capture:
                self._capture.release()
                self._capture = None

    def _capture_frames(self) -> None:
        backoff = 1.0
        while not self._closing.is_set():
            image = self._capture.grab() if self._capture else None
            if image is not None:
                backoff = 1.0
                self._deliver(image)
                continue
            if self._capture:
                self._capture.release()
                self._capture = None
                self._lose("no frame from the stream")
            if self._closing.wait(backoff):
                break
            backoff = min(backoff * 2, 10.0)
            try:
                self._capture = self._opener()
            except SourceError as err:  # still away: said once at the loss, the attempts only at DEBUG
                self._reason = str(err)
                log.debug("%s: reopening failed: %s", self.name, err)

    def _deliver(self, image: np.ndarray) -> None:
        with self._cond:
            if self._latest is not None:
                self.dropped += 1
            self._latest = image
            self._last_frame_at = time.monotonic()
            lost_at, self._lost_at, self._reason = self._lost_at, None, None
            self._cond.notify()
        if lost_at is not None:
            log.info("%s: back after %.1f s without a frame", self.name, time.monotonic() - lost_at)

    def _lose(self, reason: str) -> None:
        with self._cond:
            if self._lost_at is not None:
                return
            self._lost_at, self._reason = self._last_frame_at, reason
        log.warning("%s: lost (%s); reopening with backoff (1 s doubling to 10 s), exit 3 after %.0f s without "
                    "a frame (source.frame_timeout_s)", self.name, reason, self.timeout_s)

    def health(self) -> dict:
        """`{"state": "ok" | "lost", "reason": text | None, "lost_s": s since the last frame | None}` (rounded
        to 0.1 s), as `stats` carries it."""
        with self._cond:
            if self._lost_at is None:
                return {"state": "ok", "reason": None, "lost_s": None}
            return {"state": "lost", "reason": self._reason,
                    "lost_s": round(time.monotonic() - self._last_frame_at, 1)}

    def read(self) -> Frame | None:
        while True:
            with self._cond:
                if self._latest is not None:
                    image, self._latest = self._latest, None
                    break
                if self._stop.is_set():
                    return None
                waited = time.monotonic() - self._last_frame_at
                if waited > self.timeout_s:
                    raise SourceLost(f"{self.name}: no frame for {waited:.0f} s")
                self._cond.wait(timeout=min(0.2, self.timeout_s))  # short: see `stop` soon after a signal
                waiting = self._latest is None
            if waiting and self.on_wait is not None:
                self.on_wait()
        frame = Frame(image, self._index, time.time())
        self._index += 1
        return frame

    def close(self) -> None:
        """Stop the capture thread, which releases the capture: at once, or when a blocked read or open returns
        (a stalled stream: within its FFmpeg timeouts)."""
        self._closing.set()
        self._thread.join(timeout=2.0)
