"""The opt-in live view page (`[web]`): the camera's frames with the faces drawn, the state and the stats.

aiohttp (https://docs.aiohttp.org/en/stable/web.html) serves it from its own thread and event loop beside the
frame loop, which it reads only through `device.liveview.LiveView`; this module never imports `device.mqtt`
(the service hands in a `broker_connected` callable). Routes, all GET (HEAD too):

    /              the page (device/page/index.html, page.js, page.css)
    /stream.mjpg   multipart/x-mixed-replace JPEG stream (MJPEG), at most `max_fps`, the latest frame only
    /snapshot.jpg  one annotated JPEG
    /api/state     JSON: frame, faces (id, box, shown emotion, confidence), dominant, detection, stats
    /healthz       JSON without any image: status, last frame age, frames, broker connected, viewers

Anything else is 404; other methods 405; malformed requests 400 (aiohttp's parser); an error inside a
handler 500 with no detail; none carries a traceback. At most `max_clients` streams and snapshots at once
(more: 503). With a password (needed on any address but loopback), every route asks for HTTP basic
authentication (RFC 7617), compared in constant time (`hmac.compare_digest`); without one, only requests whose
Host is a loopback name are served (a DNS-rebinding page cannot read the camera through a local browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import json
import logging
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import BasicAuth, web

from device.config import ConfigError, WebSettings, is_loopback, split_listen
from device.liveview import LiveView

log = logging.getLogger(__name__)

PAGE = Path(__file__).resolve().parent / "page"
STATIC = {"/": ("index.html", "text/html"), "/page.js": ("page.js", "text/javascript"),
          "/page.css": ("page.css", "text/css")}
HEADERS = {  # every response: nothing cached, nothing framed or sniffed, no script but the page's own
    "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}
STALE_S = 5.0  # /healthz says "stalled" (HTTP 503) after this long without a frame, s
SEND_BUFFER_BYTES = 64 * 1024  # kernel send buffer of a stream: a slow viewer has about one frame queued
SNAPSHOT_WAIT_S = 2.0  # a snapshot waits this long for a fresh frame, s
FAILED_LOGIN_LOG_S = 60.0  # wrong passwords are logged at most once per this many s, with their count


def check_listen(settings: WebSettings, password: str | None) -> tuple[str, int]:
    """`(host, port)` to bind, after the rule that any address but loopback needs a password.

    Raises:
        ConfigError: a non-loopback `listen` without `password_file` or the credential `web-password`.
    """
    host, port = split_listen(settings.listen)
    if password is None and not is_loopback(host):
        raise ConfigError(f"web.listen: {settings.listen} is not a loopback address, and no password is set: "
                          "set [web] password_file (or systemd's LoadCredential=web-password:...), or listen "
                          "on 127.0.0.1")
    return host, port


def page_url(settings: WebSettings) -> str:
    """The page's address for others (Home Assistant's `configuration_url`): `url`, else
    `http://<listen host, or this host's name for 0.0.0.0 / ::>:<port>/`."""
    if settings.url:
        return settings.url
    host, port = split_listen(settings.listen)
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


class _QuietServerLog(logging.Filter):
    """aiohttp logs a malformed request with a traceback: keep one line at DEBUG instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        log.debug("%s", record.getMessage())
        return False


def _unsent_bytes(sock) -> int:
    """Bytes in a TCP socket's send queue not yet acknowledged by the viewer (Linux SIOCOUTQ, tcp(7)); 0 where
    it cannot be read."""
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0


class WebServer:
    """The page's HTTP server on its own thread; `start` returns once it listens.

    Args:
        settings: the `[web]` section.
        live: the hand-off the pipeline fills.
        password: the page's password (`config.read_web_password`), or None (loopback only).
        broker_connected: whether the MQTT broker is connected now (None: MQTT off).
    """

    def __init__(self, settings: WebSettings, live: LiveView, password: str | None,
                 broker_connected: Callable[[], bool | None] = lambda: None) -> None:
        self.settings, self.live, self.broker_connected = settings, live, broker_connected
        self.host, self.port = check_listen(settings, password)
        self._password = password
        self.clients = 0
        self._failed_logins = 0
        self._failed_logged_at = -float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._closing = False
        self._frame_event: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._page = {path: (PAGE / name).read_bytes() for path, (name, _) in STATIC.items()}

    def start(self) -> None:
        """Listen on `listen`, serving from a new thread.

        Raises:
            ConfigError: the address cannot be bound (in use, not this machine's, or not allowed by the unit's
                `SocketBindAllow=`).
        """
        logging.getLogger("aiohttp.server").addFilter(_QuietServerLog())
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise ConfigError(f"web.listen: cannot listen on {self.settings.listen}: "
                              f"{getattr(self._error, 'strerror', None) or self._error}") from None
        log.info("live view page on http://%s:%d/ (%s)", self.host, self.port,
                 "password required" if self._password else "loopback only, no password")

    def stop(self) -> None:
        """Close every connection and the listening socket; returns within about a second."""
        self.live.on_offer = None
        self._closing = True
        if self._loop is not None and self._stopped is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._wake)  # streams see `_closing` at once
                self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=3)

    # --- the server thread ---
    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._frame_event, self._stopped = asyncio.Event(), asyncio.Event()
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port, shutdown_timeout=0.5, reuse_address=True)
            loop.run_until_complete(site.start())
        except Exception as err:  # OSError mostly (in use, EPERM, EADDRNOTAVAIL): start() raises it
            self._error = err
            loop.run_until_complete(runner.cleanup())
            loop.close()
            self._ready.set()
            return
        self.live.on_offer = self._on_offer
        self._ready.set()
        loop.run_until_complete(self._stopped.wait())
        loop.run_until_complete(runner.cleanup())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    def _on_offer(self) -> None:
        """Called by the frame loop after each hand-over: wake the streams (never waits)."""
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        event, self._frame_event = self._frame_event, asyncio.Event()
        event.set()

    async def _newer_than(self, seq: int, timeout: float) -> bool:
        """Wait up to `timeout` s for a frame newer than `seq`; whether one came."""
        deadline = time.monotonic() + timeout
        while not self._closing:
            event = self._frame_event
            latest = self.live.latest
            if latest is not None and latest.seq > seq:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return False
        return False

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=1024)
        for path in STATIC:
            app.router.add_get(path, self._static)
        app.router.add_get("/stream.mjpg", self._stream)
        app.router.add_get("/snapshot.jpg", self._snapshot)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/healthz", self._health)
        app.on_response_prepare.append(self._headers)
        return app

    @staticmethod
    async def _headers(_request: web.Request, response: web.StreamResponse) -> None:
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        if self._password is None and not is_loopback(request.url.host or ""):
            return web.Response(status=403, text="403: open this page at a loopback address (127.0.0.1) or set "
                                "a password\n")
        if self._password is not None and not self._authorized(request.headers.get("Authorization", "")):
            return web.Response(status=401, text="401: password needed\n",
                                headers={"WWW-Authenticate": 'Basic realm="fer-edge", charset="UTF-8"'})
        try:
            return await handler(request)
        except (web.HTTPException, ConnectionError):
            raise
        except Exception as err:  # never a traceback to the client; one line in the log
            log.error("%s %s failed: %s: %s", request.method, request.path, type(err).__name__, err)
            return web.Response(status=500, text="500: internal error\n")

    def _authorized(self, header: str) -> bool:
        try:
            given = BasicAuth.decode(header, encoding="utf-8")
        except ValueError:
            given = BasicAuth("", "")
        user_ok = hmac.compare_digest(given.login.encode(), self.settings.username.encode())
        password_ok = hmac.compare_digest(given.password.encode(), self._password.encode())
        if user_ok & password_ok:
            return True
        if header:  # a browser's first request carries no credentials: that is not a failed login
            self._failed_logins += 1
            now = time.monotonic()
            if now - self._failed_logged_at >= FAILED_LOGIN_LOG_S:
                log.warning("wrong user name or password (%d since the last such line)", self._failed_logins)
                self._failed_logged_at, self._failed_logins = now, 0
        return False

    async def _static(self, request: web.Request) -> web.Response:
        _, content_type = STATIC[request.path]
        return web.Response(body=self._page[request.path], content_type=content_type, charset="utf-8")

    def _admit(self) -> bool:
        if self.clients >= self.settings.max_clients:
            return False
        self.clients += 1
        return True

    @staticmethod
    def _busy() -> web.Response:
        return web.Response(status=503, text="503: too many viewers (web.max_clients)\n",
                            headers={"Retry-After": "5"})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if not self._admit():
            return self._busy()
        self.live.watch()
        log.info("a viewer connected (%d of %d)", self.clients, self.settings.max_clients)
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        try:
            sock = request.transport.get_extra_info("socket") if request.transport else None
            if sock is not None:  # a small kernel buffer: a slow viewer is never many frames behind
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            await response.prepare(request)
            await self._send_frames(response, sock)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self.clients -= 1
            self.live.unwatch()
            log.info("a viewer left (%d of %d)", self.clients, self.settings.max_clients)
        return response

    async def _send_frames(self, response: web.StreamResponse, sock) -> None:
        """Send the latest frame each time one comes, but only once the last one has left the kernel's send
        queue: a viewer that cannot keep up skips frames instead of falling behind."""
        loop = asyncio.get_running_loop()
        sent, progress_at, unsent = 0, time.monotonic(), 0
        timeout = self.settings.send_timeout_s
        while not self._closing:
            if not await self._newer_than(sent, 1.0):
                continue  # no frame (a stalled source): keep the viewer, the page shows the frame age
            queued = _unsent_bytes(sock)
            if queued:
                if queued < unsent:
                    progress_at = time.monotonic()
                unsent = queued
                if time.monotonic() - progress_at > timeout:
                    log.info("a viewer took no data for %.0f s: disconnected", timeout)
                    return
                sent = self.live.latest.seq  # skip this frame
                continue
            encoded = await loop.run_in_executor(None, self.live.jpeg)  # off the event loop
            if encoded is None:
                continue
            sent, index, data = encoded
            head = (f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
                    f"X-Frame-Index: {index}\r\n\r\n").encode()
            try:
                await asyncio.wait_for(response.write(head + data + b"\r\n"), timeout)
            except TimeoutError:
                log.info("a viewer took no data for %.0f s: disconnected", timeout)
                return
            progress_at, unsent = time.monotonic(), 0

    async def _snapshot(self, request: web.Request) -> web.Response:
        if not self._admit():
            return self._busy()
        try:
            latest = self.live.latest
            self.live.demand()
            if not await self._newer_than(latest.seq if latest else 0, SNAPSHOT_WAIT_S):
                return web.Response(status=503, text=f"503: no frame within {SNAPSHOT_WAIT_S:.0f} s\n")
            encoded = await asyncio.get_running_loop().run_in_executor(None, self.live.jpeg)
            _, index, data = encoded
            return web.Response(body=data, content_type="image/jpeg", headers={"X-Frame-Index": str(index)})
        finally:
            self.clients -= 1

    async def _state(self, _request: web.Request) -> web.Response:
        self.live.demand()
        latest = self.live.latest
        if latest is None or time.monotonic() - latest.at > 1.0:  # a fresh state, where frames come
            await self._newer_than(latest.seq if latest else 0, 1.0)
        state = self.live.state() | {"broker_connected": self.broker_connected(), "viewers": self.live.viewers}
        return web.Response(text=json.dumps(state), content_type="application/json")

    async def _health(self, _request: web.Request) -> web.Response:
        last = self.live.last_frame_at
        age = None if last is None else time.monotonic() - last
        if self.live.detection is False:  # the privacy switch is off: no frames, on purpose
            status = "paused"
        else:
            status = "starting" if age is None else ("ok" if age <= STALE_S else "stalled")
        body = {"status": status, "last_frame_age_s": None if age is None else round(age, 3),
                "frames": self.live.frames, "broker_connected": self.broker_connected(),
                "viewers": self.live.viewers}
        return web.Response(status=200 if status in ("ok", "paused") else 503, text=json.dumps(body),
                            content_type="application/json")
