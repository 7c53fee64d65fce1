"""The live view page (`[web]`, device/web.py) as a person meets it: the daemon as a real process on the real
clip with a real mosquitto, the page opened in headless Chromium (driven over the DevTools protocol), and plain
HTTP clients on 127.0.0.1 for the password rule, routes, viewer limit and a viewer that stops reading.

`WRITE_DOCS_SCREENSHOT=1` makes the Chromium test also write its screenshot to docs/live-view.png.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.broker import Recorder, free_port
from benchmarks.web_cost import MjpegReader
from device import config as cfg
from tests.conftest import CLIP, REPO
from tests.test_faults import Daemon

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_clip = pytest.mark.skipif(not CLIP.is_file(), reason=f"{CLIP} not found (the test clip lives in ../shared)")


def run_args(tmp_path: Path, port: int, *flags: str) -> list[str]:
    config = tmp_path / "empty.toml"
    config.touch()
    return ["run", "--config", str(config), "--device-id", "test", "--source", str(CLIP), "--source-loop", "true",
            "--source-realtime", "true", "--web-enabled", "true", "--web-listen", f"127.0.0.1:{port}", *flags]


def get(port: int, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def wait_until_up(daemon: Daemon, port: int, headers: dict | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.process.poll() is None, daemon.output
        try:
            if get(port, "/healthz", headers)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the page did not come up on {port}:\n{daemon.output}")


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def listening_ports(pid: int) -> set[int]:
    """TCP ports on which process `pid` listens: its socket inodes matched against /proc/net/tcp{,6} (LISTEN)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def frame_rate(recorder: Recorder, since: float) -> tuple[float, int]:
    """`(frames per second, intervals)` of the `stats` messages since `since`: their frames over their summed
    intervals (a paced clip catches up after a slow moment, so this is the pace kept, not one interval's)."""
    stats = [json.loads(m.payload) for m in recorder.on("/stats") if m.at >= since]
    seconds = sum(s["frames"] / s["fps"] for s in stats if s["fps"])
    return (sum(s["frames"] for s in stats) / seconds if seconds else 0.0), len(stats)


# --- Chromium over the DevTools protocol (https://chromedevtools.github.io/devtools-protocol/) ---
class DevTools:
    """One page target of a headless Chromium, driven through its DevTools websocket (aiohttp's client)."""

    def __init__(self, ws) -> None:
        self.ws, self._id = ws, 0

    async def call(self, method: str, **params) -> dict:
        self._id += 1
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=30)
            if message.get("id") == self._id:
                assert "error" not in message, message
                return message["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"not true within {timeout} s: {expression}")

    async def screenshot(self) -> np.ndarray:
        data = (await self.call("Page.captureScreenshot", format="png"))["data"]
        return cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)


def start_chromium(tmp_path: Path, url: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    flags = ["--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--hide-scrollbars", "--window-size=1040,600", f"--remote-debugging-port={port}",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    process = subprocess.Popen([CHROMIUM, *flags, url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, port


async def page_target(port: int, timeout: float = 30) -> str:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    pages = [t for t in await response.json() if t["type"] == "page"]
                    if pages:
                        return pages[0]["webSocketDebuggerUrl"]
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("Chromium's DevTools did not answer")


def green(image: np.ndarray) -> np.ndarray:
    """Pixels of the page's drawing colour (BGR 0, 255, 0), allowing for JPEG."""
    b, g, r = (image[..., i].astype(int) for i in range(3))
    return (g > 170) & (r < 110) & (b < 110)


async def look_at_the_page(devtools_port: int, page_url: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(await page_target(devtools_port),
                                                                      max_msg_size=0) as ws:
        tab = DevTools(ws)
        await tab.call("Page.enable")
        await tab.call("Page.navigate", url=page_url)
        await tab.wait_for(f"location.href === {json.dumps(page_url)} && document.readyState === 'complete' && "
                           "(document.getElementById('live') || {}).naturalWidth > 0")
        await tab.wait_for("document.querySelectorAll('#faces li').length > 0")  # the state panel has her face
        rect = await tab.evaluate("(() => { const r = document.getElementById('live').getBoundingClientRect(); "
                                  "return [r.x, r.y, r.width, r.height].map(Math.round); })()")
        first = await tab.screenshot()
        await asyncio.sleep(1.5)
        panel_js = ("({frame: document.getElementById('frame').textContent, "
                    "dominant: document.getElementById('dominant').textContent, "
                    "faces: [...document.querySelectorAll('#faces li')].map(li => ({face_id: +li.dataset.faceId, "
                    "emotion: li.dataset.emotion, text: li.textContent}))})")
        panel = await tab.evaluate(panel_js)
        second = await tab.screenshot()
        await tab.wait_for("document.getElementById('stats').textContent.includes('fps')", timeout=10)
        stats_text = await tab.evaluate("document.getElementById('stats').textContent")
        natural = await tab.evaluate("[document.getElementById('live').naturalWidth, "
                                     "document.getElementById('live').naturalHeight]")
        return {"rect": rect, "first": first, "second": second, "panel": panel, "stats": stats_text,
                "natural": natural, "url": page_url}


@needs_clip
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_page_in_headless_chromium_shows_live_annotated_frames_and_the_mqtt_state(tmp_path, broker, daemons,
                                                                                       shipped_model):
    port = free_port()
    with Recorder(broker.port) as recorder:
        daemon = daemons(*run_args(tmp_path, port, "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                                   "--mqtt-emotions-max-hz", "1000", "--mqtt-stats-interval-s", "1"))
        wait_until_up(daemon, port)
        browser, devtools_port = start_chromium(tmp_path, "about:blank")
        try:
            seen = asyncio.run(look_at_the_page(devtools_port, f"http://127.0.0.1:{port}/"))
        finally:
            browser.kill()
            browser.wait(timeout=10)
        emotions = [json.loads(m.payload) for m in recorder.on("/emotions")]
    x, y, w, h = seen["rect"]
    assert (w, h) == tuple(seen["natural"]) == (596, 336), seen  # the clip's frames, not downscaled (< 640 px)
    first, second = (shot[y:y + h, x:x + w] for shot in (seen["first"], seen["second"]))
    # The image changes over time: she moves and talks between the two screenshots 1.5 s apart.
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 2.0
    # Her face's box and label are drawn: green that the clip's own frames do not have.
    capture = cv2.VideoCapture(str(CLIP))
    raw = capture.read()[1]
    capture.release()
    assert green(raw).sum() < 20
    drawn = green(second)
    assert drawn.sum() > 400, drawn.sum()
    rows = np.flatnonzero(drawn.sum(axis=1) > 60)  # the box's top and bottom edges
    assert len(rows) >= 2 and rows[-1] - rows[0] > 60, rows
    top = rows[0]
    assert drawn[max(0, top - 20):top - 2].sum() > 30  # the label above the box: "#1 <emotion> NN%"
    # The state panel shows what the MQTT messages carry for the same frame.
    panel = seen["panel"]
    frame = int(panel["frame"])
    same = [e for e in emotions if e["frame"] == frame]
    assert same, (frame, [e["frame"] for e in emotions][-5:])
    mqtt_faces = {f["face_id"]: f["smoothed_emotion"] for f in same[-1]["faces"]}
    assert {f["face_id"]: f["emotion"] for f in panel["faces"]} == mqtt_faces, (panel, same[-1])
    assert panel["faces"][0]["text"].startswith(f"#1 {mqtt_faces[1]} ")
    assert panel["dominant"] in {m.payload for m in recorder.on("/dominant")}
    assert "fps" in seen["stats"] and "ms per frame" in seen["stats"]
    shot = seen["second"]
    cv2.imwrite(str(tmp_path / "live-view.png"), shot)
    if os.environ.get("WRITE_DOCS_SCREENSHOT") == "1":
        cv2.imwrite(str(REPO / "docs" / "live-view.png"), shot)


@needs_clip
def test_off_nothing_listens_on_only_the_configured_port_and_sigterm_stops_it(tmp_path, daemons, shipped_model):
    config = tmp_path / "empty.toml"
    config.touch()
    off = daemons("run", "--config", str(config), "--source", str(CLIP), "--source-loop", "true",
                  "--source-realtime", "true", "--mqtt-enabled", "false")
    off.wait_for("dominant emotion")
    assert listening_ports(off.process.pid) == set()
    assert "live view" not in off.output
    port = free_port()
    on = daemons(*run_args(tmp_path, port, "--mqtt-enabled", "false"))
    wait_until_up(on, port)
    assert listening_ports(on.process.pid) == {port}
    status, _, body = get(port, "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["last_frame_age_s"] < 1.0
    assert health["broker_connected"] is None  # MQTT is off
    assert b"jpeg" not in body.lower() and len(body) < 300  # no image in the health answer
    viewer = MjpegReader(port)  # a viewer watching does not hold up a clean stop
    assert viewer.status == 200 and viewer.part()[1][:2] == b"\xff\xd8"
    for process in (off, on):
        sent = time.monotonic()
        process.process.terminate()
        code, output = process.finish(timeout=10)
        assert code == 0 and "Traceback" not in output, output
        assert time.monotonic() - sent < 2.0
    viewer.close()


@pytest.mark.parametrize("listen", ["0.0.0.0:{port}", "[::]:{port}", "192.0.2.10:{port}", "kitchen.local:{port}"])
def test_a_non_loopback_address_without_a_password_is_refused_with_exit_2(listen, tmp_path, daemons):
    config = tmp_path / "empty.toml"
    config.touch()
    port = free_port()
    daemon = daemons("run", "--config", str(config), "--source", str(tmp_path / "never-opened.mp4"),
                     "--mqtt-enabled", "false", "--web-enabled", "true", "--web-listen", listen.format(port=port))
    code, output = daemon.finish(timeout=60)
    assert code == 2, output
    assert "web.listen" in output and "not a loopback address, and no password is set" in output, output
    assert "Traceback" not in output and "video file not found" not in output  # refused before the camera


def test_listen_is_validated_and_loopback_is_recognised():
    for bad in ("8080", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":8080", "127.0.0.1:http"):
        with pytest.raises(cfg.ConfigError, match="web.listen"):
            cfg.load_settings(None, {("web", "listen"): bad})
    assert cfg.split_listen("[::1]:8080") == ("::1", 8080)
    assert all(cfg.is_loopback(h) for h in ("localhost", "127.0.0.1", "127.1.2.3", "::1"))
    assert not any(cfg.is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "kitchen.local", "localhost.evil"))
    assert cfg.Settings().web.enabled is False  # off by default


@needs_clip
def test_with_a_password_every_route_asks_for_it_and_bad_requests_get_4xx(tmp_path, daemons, shipped_model):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "web-password").write_text("s3cret-page\n")
    port = free_port()
    os.environ["CREDENTIALS_DIRECTORY"] = str(credentials)  # as systemd's LoadCredential= hands it over
    try:
        daemon = daemons(*run_args(tmp_path, port, "--mqtt-enabled", "false", "--web-listen", f"0.0.0.0:{port}"))
    finally:
        del os.environ["CREDENTIALS_DIRECTORY"]
    good = basic("fer-edge", "s3cret-page")
    wait_until_up(daemon, port, good)
    for path in ("/", "/api/state", "/snapshot.jpg", "/stream.mjpg", "/healthz", "/nope"):
        status, headers, _ = get(port, path)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic"), (path, status)
    for wrong in (basic("fer-edge", "s3cret-pagE"), basic("admin", "s3cret-page"), basic("fer-edge", ""),
                  {"Authorization": "Basic !!!not-base64"}, {"Authorization": "Bearer s3cret-page"}):
        assert get(port, "/api/state", wrong)[0] == 401, wrong
    status, headers, body = get(port, "/", good)
    assert status == 200 and b'<img id="live" src="stream.mjpg"' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["Cache-Control"] == "no-store"
    status, headers, body = get(port, "/snapshot.jpg", good)
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and image.shape == (336, 596, 3)
    state = json.loads(get(port, "/api/state", good)[2])
    assert state["faces"] and state["faces"][0]["face_id"] == 1 and state["detection"] == "on"
    # Only the page's own routes; other methods 405; nothing from the file system.
    for path in ("/nope", "/../../etc/passwd", "/page/index.html", "/device/web.py", "/static/", "/api/state/x"):
        assert get(port, path, good)[0] == 404, path
    assert get(port, "/api/state", good, method="POST")[0] == 405
    assert get(port, "/api/state", good, method="DELETE")[0] == 405
    for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(raw)
            answer = sock.recv(4096)
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), (raw[:20], answer[:200])
        assert b"Traceback" not in answer and b"File \"" not in answer
    daemon.process.terminate()
    code, output = daemon.finish(timeout=10)
    assert code == 0, output
    assert "Traceback" not in output and "s3cret-page" not in output, output
    assert output.count("wrong user name or password") == 1, output  # logged once, not once per try
    assert "password required" in output


def test_an_unreadable_password_file_exits_2_without_showing_it(tmp_path, daemons):
    config = tmp_path / "c.toml"
    config.write_text('[web]\nenabled = true\nlisten = "0.0.0.0:8080"\npassword_file = "S3cretPage"\n')
    code, output = daemons("run", "--config", str(config), "--mqtt-enabled", "false", "--source",
                           str(tmp_path / "x.mp4")).finish()
    assert code == 2 and "web.password_file: cannot read" in output and "S3cretPage" not in output, output
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    assert cfg.read_web_password(cfg.WebSettings(password_file=secret), None) == "s3cret"
    secret.write_text("\n")
    assert cfg.read_web_password(cfg.WebSettings(password_file=secret), None) is None  # empty counts as none


@needs_clip
def test_without_a_password_a_foreign_host_name_is_refused(tmp_path, daemons, shipped_model):
    port = free_port()
    daemon = daemons(*run_args(tmp_path, port, "--mqtt-enabled", "false"))
    wait_until_up(daemon, port)
    # A page on another site, resolving its own name to 127.0.0.1 (DNS rebinding), must not read the camera.
    assert get(port, "/snapshot.jpg", {"Host": f"attacker.example:{port}"})[0] == 403
    assert get(port, "/snapshot.jpg", {"Host": f"localhost:{port}"})[0] == 200


@needs_clip
def test_many_viewers_the_limit_holds_and_the_frame_loop_keeps_its_rate(tmp_path, broker, daemons, shipped_model):
    port = free_port()
    with Recorder(broker.port) as recorder:
        daemon = daemons(*run_args(tmp_path, port, "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                                   "--mqtt-stats-interval-s", "1", "--web-max-clients", "3", "--web-max-fps", "10"))
        wait_until_up(daemon, port)
        alone_from = time.monotonic()
        time.sleep(4.5)
        alone = frame_rate(recorder, alone_from)
        viewers = [MjpegReader(port) for _ in range(3)]
        counts = [0, 0, 0]
        stop = threading.Event()

        def read(i: int) -> None:
            while not stop.is_set():
                viewers[i].part()
                counts[i] += 1

        threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(3)]
        for thread in threads:
            thread.start()
        try:
            assert [v.status for v in viewers] == [200, 200, 200]
            extra = MjpegReader(port)
            assert extra.status == 503  # the fourth is turned away
            extra.close()
            assert get(port, "/snapshot.jpg")[0] == 503  # a snapshot counts as a viewer too
            assert get(port, "/healthz")[0] == 200  # health and state are not bounded by the viewers
            watched_from = time.monotonic()
            time.sleep(4.5)
            watched = frame_rate(recorder, watched_from)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=5)
        viewers[0].close()
        deadline = time.monotonic() + 5
        while (late := MjpegReader(port)).status != 200 and time.monotonic() < deadline:
            late.close()
            time.sleep(0.2)
        assert late.status == 200 and late.part()[1][:2] == b"\xff\xd8"  # a place came free
        late.close()
        for viewer in viewers[1:]:
            viewer.close()
    assert alone[1] >= 3 and watched[1] >= 3, (alone, watched)
    assert min(counts) >= 15, counts  # each viewer got frames (up to 10 Hz for about 4.5 s)
    # The clip is paced at 29.97 fps: with three viewers the frame loop keeps the pace it had without them.
    assert watched[0] >= 0.85 * alone[0], (alone, watched)


@needs_clip
def test_a_viewer_that_stops_reading_is_dropped_and_a_slow_one_gets_fewer_not_older_frames(tmp_path, broker,
                                                                                           daemons, shipped_model):
    port = free_port()
    with Recorder(broker.port) as recorder:
        daemon = daemons(*run_args(tmp_path, port, "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                                   "--mqtt-stats-interval-s", "1", "--web-max-clients", "2",
                                   "--web-send-timeout-s", "2"))
        wait_until_up(daemon, port)
        alone_from = time.monotonic()
        time.sleep(3.5)
        alone = frame_rate(recorder, alone_from)
        stalled = MjpegReader(port, receive_buffer=4096)  # reads the headers, then never again
        assert stalled.status == 200
        slow = MjpegReader(port, receive_buffer=8192)
        assert slow.status == 200
        assert MjpegReader(port).status == 503  # both places taken
        lags, indexes = [], []
        stalled_from = time.monotonic()
        for _ in range(6):  # one frame a second, where the page sends five
            index, jpeg = slow.part()
            current = json.loads(get(port, "/api/state")[2])["frame"]
            lags.append(current - index)
            indexes.append(index)
            assert jpeg[:2] == b"\xff\xd8"
            time.sleep(1.0)
        daemon.wait_for("a viewer took no data for 2 s: disconnected", timeout=10)
        fresh = MjpegReader(port)  # the stalled viewer's place is free again
        assert fresh.status == 200 and fresh.part()[1][:2] == b"\xff\xd8"
        fps, intervals = frame_rate(recorder, stalled_from)
        for viewer in (stalled, slow, fresh):
            viewer.close()
    # Fewer frames: about one in five of what the page sends; not older: each at most 2 s (60 clip frames)
    # behind the frame being processed, where queueing them would fall behind by about a second more each time.
    assert all(b - a >= 20 for a, b in zip(indexes[1:], indexes[2:], strict=False)), indexes
    assert max(lags[2:]) <= 60, lags
    # The frame loop kept the pace it had without viewers (the clip's 29.97 fps where the CPU allows).
    assert intervals >= 5 and alone[1] >= 2 and fps >= 0.85 * alone[0], (alone, fps, intervals)


@needs_clip
def test_home_assistant_links_to_the_page_when_it_is_on(tmp_path, broker, daemons, shipped_model):
    port = free_port()
    code, output = daemons(*run_args(tmp_path, port, "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                                     "--service-max-frames", "5")).finish()
    assert code == 0, output
    with Recorder(broker.port, topic="homeassistant/#") as recorder:
        device = json.loads(recorder.wait_for("/emotion/config", timeout=5).payload)["device"]
    assert device["configuration_url"] == f"http://127.0.0.1:{port}/"
    from device.homeassistant import discovery_messages
    from device.topics import Topics
    from device.web import page_url

    for config in discovery_messages(Topics("fer-edge", "x"), "m").values():
        assert "configuration_url" not in json.loads(config)["device"]
    assert page_url(cfg.WebSettings(listen="0.0.0.0:8080")) == f"http://{socket.gethostname()}:8080/"
    assert page_url(cfg.WebSettings(listen="[::1]:8081")) == "http://[::1]:8081/"
    assert page_url(cfg.WebSettings(url="https://kitchen.example/")) == "https://kitchen.example/"
