"""A real RTSP server for the tests: GStreamer's gst-rtsp-server serving a video file's H.264 unchanged.

Run by the system python3 (python3-gi and gir1.2-gst-rtsp-server-1.0 come from apt, not PyPI):

    /usr/bin/python3 tests/rtsp_server.py CLIP.mp4 PORT      # rtsp://127.0.0.1:PORT/clip

It listens on 127.0.0.1 only, prints `ready` once it listens, and serves until SIGTERM. Every client gets
the file from its start (no re-encoding: `qtdemux ! h264parse ! rtph264pay`); the file should be longer
than the test needs (see tests/test_streams.py, which makes a looped copy with ffmpeg -c copy).
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    clip, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{clip}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 '
                       "config-interval=1 )")
    factory.set_shared(False)
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
