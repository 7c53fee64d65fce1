"""What the live view page costs the frame loop: `fer-edge run` on the clip (looped, as fast as it goes, one
classifier thread) with the page off, on with no viewer, and on with one viewer reading the MJPEG stream.

The daemon's own `stats` messages (every 1 s, to a mosquitto on 127.0.0.1) give its fps: frames over the
summed intervals, the first interval (start-up) left out; its CPU time (/proc/<pid>/stat) over those frames
gives CPU ms per frame, which a busy machine disturbs less than fps. The modes are interleaved (off, idle, viewer, off,
...) because a shared machine is noisy; medians of the repeats are reported.

    python benchmarks/web_cost.py --seconds 8 --repeats 2    # prints the JSON; benchmarks/run.py reports it
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/web_cost.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder, free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "media" / "woman2.mp4"
MODES = ("off", "on_no_viewer", "on_one_viewer")


class MjpegReader:
    """A viewer of `/stream.mjpg` on a raw socket (as a browser's <img> reads it): `part()` returns the next
    `(X-Frame-Index, JPEG bytes)`.

    Args:
        port: the page's port on 127.0.0.1.
        receive_buffer: SO_RCVBUF, bytes (a small one makes a slow viewer's backlog show at the server).
    """

    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer:  # before connect: the TCP window is agreed then
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().decode().split()[1])
        self.headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            self.headers[key.strip().lower()] = value.strip()

    def part(self) -> tuple[int, bytes]:
        while (line := self.file.readline()) != b"--frame\r\n":
            if not line:
                raise ConnectionError("the stream ended")
        headers = {}
        while (line := self.file.readline()) != b"\r\n":
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        return int(headers["x-frame-index"]), self.file.read(int(headers["content-length"]))

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def frame_rate(stats: list[dict]) -> float:
    """Frames per second over `stats` payloads: their frames over their summed intervals."""
    seconds = sum(s["frames"] / s["fps"] for s in stats if s["fps"])
    return sum(s["frames"] for s in stats) / seconds if seconds else 0.0


def _one_run(video: Path, model: Path, mode: str, seconds: float, broker_port: int, work: Path) -> dict:
    config = work / "empty.toml"
    config.touch()
    web_port = free_port()
    flags = ["--web-enabled", "true", "--web-listen", f"127.0.0.1:{web_port}"] if mode != "off" else []
    with Recorder(broker_port) as recorder:
        process = subprocess.Popen(
            [sys.executable, "-m", "device", "run", "--config", str(config), "--source", str(video), "--source-loop",
             "true", "--model", str(model), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker_port),
             "--mqtt-stats-interval-s", "1", "--device-id", f"web-{mode}", "--classifier-threads", "1", *flags],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        viewer, received, stop = None, [0], threading.Event()
        try:
            recorder.wait_for("/stats", timeout=60)  # started; the first interval (start-up) is left out
            if mode == "on_one_viewer":
                viewer = MjpegReader(web_port)

                def read() -> None:
                    try:
                        while not stop.is_set():
                            viewer.part()
                            received[0] += 1
                    except OSError:  # the daemon stops at the end of the run
                        pass

                threading.Thread(target=read, daemon=True).start()
            since, cpu_before = time.monotonic(), _cpu_seconds(process.pid)
            time.sleep(seconds)
            cpu = _cpu_seconds(process.pid) - cpu_before
            stats = [json.loads(m.payload) for m in recorder.on("/stats") if m.at >= since]
        finally:
            stop.set()
            process.terminate()
            process.wait(timeout=30)
            if viewer is not None:
                viewer.close()
    frames = sum(s["frames"] for s in stats)
    return {"fps": frame_rate(stats), "intervals": len(stats), "viewer_frames_per_s": received[0] / seconds,
            "cpu_ms_per_frame": 1000.0 * cpu / frames if frames else None}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far, s (/proc/<pid>/stat, proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(video: Path, model: Path, seconds: float = 8.0, repeats: int = 2) -> dict:
    """The daemon's fps in each of `MODES` (medians of `repeats` interleaved runs of `seconds` s each), the
    frames a second the viewer received, and each mode's fps as a fraction of `off`."""
    if MOSQUITTO is None:
        return {"skipped": "mosquitto is not installed"}
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        broker = Mosquitto(work).start()
        try:
            for _ in range(repeats):
                for mode in MODES:
                    runs[mode].append(_one_run(video, model, mode, seconds, broker.port, work))
        finally:
            broker.stop()
    result = {mode: {"fps": statistics.median(r["fps"] for r in runs[mode]), "runs": [r["fps"] for r in runs[mode]],
                     "cpu_ms_per_frame": statistics.median(r["cpu_ms_per_frame"] for r in runs[mode])}
              for mode in MODES}
    result["on_one_viewer"]["viewer_frames_per_s"] = statistics.median(
        r["viewer_frames_per_s"] for r in runs["on_one_viewer"])
    for mode in MODES[1:]:
        result[mode]["vs_off"] = result[mode]["fps"] / result["off"]["fps"] if result["off"]["fps"] else None
    result.update(seconds=seconds, repeats=repeats, video=str(video), max_fps="default (5)",
                  note="`fer-edge run` on the looped clip as fast as it goes, classifier threads 1; fps from its "
                       "1 s stats messages")
    return result


def main(argv: list[str] | None = None) -> int:
    from device.config import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.video, args.model, args.seconds, args.repeats), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
