"""IP cameras that drop (issue 22): the daemon against a real RTSP server on 127.0.0.1 (GStreamer's
gst-rtsp-server, tests/rtsp_server.py) serving the real clip; the server is stopped and started again.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest

from benchmarks.broker import MOSQUITTO, Recorder, free_port
from tests.conftest import CLIP, REPO
from tests.test_daemon import schema
from tests.test_faults import run_flags

SYSTEM_PYTHON = "/usr/bin/python3"
FFMPEG = shutil.which("ffmpeg")


def _gst_rtsp_server_missing() -> str | None:
    if MOSQUITTO is None:
        return "mosquitto is not installed (apt-get install mosquitto)"
    if FFMPEG is None:
        return "ffmpeg is not installed (apt-get install ffmpeg)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, check=False) \
        if Path(SYSTEM_PYTHON).is_file() else None
    if probe is None or probe.returncode != 0:
        return ("GStreamer's RTSP server is not installed for the system python3 (apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
                "gstreamer1.0-plugins-bad)")
    return None


pytestmark = pytest.mark.skipif(bool(_gst_rtsp_server_missing()), reason=_gst_rtsp_server_missing() or "")


class RtspServer:
    """tests/rtsp_server.py serving `clip` at rtsp://127.0.0.1:`port`/clip; `start`/`stop` may be repeated."""

    def __init__(self, clip: Path) -> None:
        self.clip, self.port = clip, free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/clip"
        self.process: subprocess.Popen | None = None

    def start(self) -> RtspServer:
        self.process = subprocess.Popen([SYSTEM_PYTHON, str(REPO / "tests" / "rtsp_server.py"), str(self.clip),
                                         str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        assert line.strip() == "ready", line + self.process.stdout.read()
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """The clip four times over (about 62 s, H.264 copied, not re-encoded): longer than any test here."""
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found (the test clip lives in ../shared/media)")
    out = tmp_path_factory.mktemp("media") / "clip4.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-stream_loop", "3", "-i", str(CLIP), "-c", "copy", str(out)], check=True,
                   timeout=60)
    return out


@pytest.fixture
def rtsp(long_clip):
    server = RtspServer(long_clip).start()
    yield server
    server.stop()


def stream_flags(tmp_path: Path, url: str, port: int, *flags: str) -> list[str]:
    return run_flags(tmp_path, "--source", url, "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port),
                     "--mqtt-home-assistant", "false", "--mqtt-stats-interval-s", "1", "--mqtt-emotions-max-hz", "10",
                     *flags)


def test_rtsp_stream_that_stops_for_10_s_is_picked_up_again(tmp_path, broker, rtsp, daemons, shipped_model):
    with Recorder(broker.port) as recorder:
        daemon = daemons(*stream_flags(tmp_path, rtsp.url, broker.port, "--source-frame-timeout-s", "30"))
        recorder.wait_for("emotions", timeout=30)
        rtsp.stop()
        stopped = time.monotonic()
        time.sleep(10.0)
        rtsp.start()
        restarted = time.monotonic()
        deadline = restarted + 30  # the backoff (1, 2, 4, 8 s) reopens it at most 10 s after its return
        while not [m for m in recorder.on("/emotions") if m.at > restarted] and time.monotonic() < deadline:
            time.sleep(0.1)
        resumed = [m for m in recorder.on("/emotions") if m.at > restarted]
        while resumed and not [m for m in recorder.on("/stats") if m.at > resumed[0].at + 0.1] \
                and time.monotonic() < deadline:
            time.sleep(0.1)  # one stats interval after the return
        daemon.process.send_signal(signal.SIGTERM)
        code, output = daemon.finish(timeout=20)
    assert code == 0, output
    assert resumed, f"no emotions after the stream came back:\n{output}"
    assert output.count(": lost (") == 1 and output.count(": back after") == 1, output
    # `status` stayed online: no offline before the clean stop, and the process never left.
    statuses = [m.payload for m in recorder.on("/status")]
    assert statuses[-1] == "offline" and "offline" not in statuses[:-1], statuses
    stats = [(m.at, json.loads(m.payload)) for m in recorder.on("/stats")]
    for _, payload in stats:
        jsonschema.validate(payload, schema("stats"))
    during = [p for at, p in stats if stopped + 3 < at < restarted]  # FFmpeg notices the closed stream at once
    assert len(during) >= 5, stats
    assert all(p["frames"] == 0 and p["source"]["state"] == "lost" and p["source"]["reason"] for p in during), during
    assert during[-1]["source"]["lost_s"] >= 8
    assert stats[-1][1]["source"] == {"state": "ok", "reason": None, "lost_s": None}


def test_rtsp_stream_that_does_not_come_back_exits_3_after_frame_timeout(tmp_path, broker, rtsp, daemons,
                                                                         shipped_model):
    timeout_s = 4.0
    with Recorder(broker.port) as recorder:
        daemon = daemons(*stream_flags(tmp_path, rtsp.url, broker.port, "--source-frame-timeout-s", str(timeout_s)))
        recorder.wait_for("emotions", timeout=30)
        daemon.wait_for("dominant emotion")
        rtsp.stop()
        stopped = time.monotonic()
        code, output = daemon.finish(timeout=30)
        took = time.monotonic() - stopped
    assert code == 3, output
    assert f"no frame for {timeout_s:.0f} s" in output and output.count(": lost (") == 1, output
    # Not before frame_timeout_s (the last frame came just before the stop), not much after it.
    assert timeout_s - 0.5 <= took <= timeout_s + 5, took


class MjpegServer:
    """An HTTP MJPEG stream (multipart/x-mixed-replace, as IP cameras serve it) of the clip's frames at 15 fps,
    from a thread of this process; `start`/`stop` may be repeated on the same port, and `stop` ends the
    connections it serves."""

    def __init__(self, clip: Path) -> None:
        import cv2

        capture = cv2.VideoCapture(str(clip))
        self.frames = []
        while len(self.frames) < 150 and (read := capture.read())[0]:
            self.frames.append(cv2.imencode(".jpg", read[1])[1].tobytes())
        capture.release()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.server = None

    def start(self) -> MjpegServer:
        import http.server
        import threading

        frames, stopping = self.frames, threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                while not stopping.is_set():
                    jpeg = frames[index % len(frames)]
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                    except OSError:
                        return
                    index += 1
                    stopping.wait(1 / 15)

            def log_message(self, *args) -> None:
                pass

        self.stopping = stopping
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.stopping.set()
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None


def test_http_mjpeg_stream_that_stops_for_5_s_is_picked_up_again(tmp_path, broker, daemons, shipped_model):
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} not found (the test clip lives in ../shared/media)")
    server = MjpegServer(CLIP).start()
    try:
        with Recorder(broker.port) as recorder:
            daemon = daemons(*stream_flags(tmp_path, server.url, broker.port, "--source-frame-timeout-s", "30"))
            recorder.wait_for("emotions", timeout=30)
            server.stop()
            time.sleep(5.0)
            server.start()
            restarted = time.monotonic()
            deadline = restarted + 30
            while not [m for m in recorder.on("/emotions") if m.at > restarted] and time.monotonic() < deadline:
                time.sleep(0.1)
            resumed = [m for m in recorder.on("/emotions") if m.at > restarted]
            daemon.process.send_signal(signal.SIGTERM)
            code, output = daemon.finish(timeout=20)
    finally:
        server.stop()
    assert code == 0, output
    assert resumed, f"no emotions after the stream came back:\n{output}"
    assert output.count(": lost (") == 1 and output.count(": back after") == 1, output
