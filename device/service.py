"""The daemon as a service: builds the stages, handles signals, talks to systemd, maps errors to exit codes
(`device/exit_codes.py`): 0 clean stop (SIGTERM/SIGINT/SIGHUP) or the end of a file source; 1 unexpected
internal error; 2 configuration or model error (bad key or value, corrupt or missing model, detector file,
TLS files, LED pins that cannot be used); 3 frame source error: cannot be opened, gives no frame at all,
or no frame for `source.frame_timeout_s` (systemd restarts).

systemd notification protocol (sd_notify(3)): `READY=1` after the first frame, `WATCHDOG=1` from the
frame loop at twice the rate `WatchdogSec=` asks for, `STOPPING=1` on the way out.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from gpiozero.exc import GPIOZeroError

from device.classifier import ModelError
from device.config import ConfigError, Settings, read_password, read_web_password
from device.control import publish_switch, switch_from_settings
from device.exit_codes import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, EXIT_SOURCE  # noqa: F401 - re-exported
from device.faces import DetectorError
from device.pipeline import Pipeline
from device.recognition import build_stages
from device.sources import SourceError, open_source, redact_url
from device.topics import Topics

log = logging.getLogger(__name__)


def sd_notify(message: str) -> bool:
    """Send `message` to systemd over `$NOTIFY_SOCKET` (a datagram Unix socket; '@' = abstract namespace).

    Returns False where the process does not run under systemd's notify protocol.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as err:
        log.warning("sd_notify to %s failed: %s", address, err)
        return False
    return True


class Watchdog:
    """Sends READY=1 once, then WATCHDOG=1 at most every `WATCHDOG_USEC / 2` (systemd's advice)."""

    def __init__(self) -> None:
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        self.interval_s = usec / 2e6 if usec else None
        self._ready = False
        self._last = 0.0

    def __call__(self) -> None:
        if not self._ready:
            self._ready = True
            sd_notify("READY=1\nSTATUS=processing frames")
        if self.interval_s and time.monotonic() - self._last >= self.interval_s:
            self._last = time.monotonic()
            sd_notify("WATCHDOG=1")

    def waiting(self) -> None:
        """While a live source waits for a frame (bounded by `frame_timeout_s`): WATCHDOG=1 after READY=1."""
        if self._ready:
            self()


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM, SIGINT and SIGHUP set `stop`: a clean stop (exit 0, `offline` published, LEDs off).

    Python's default SIGTERM and SIGHUP would end the process without cleanup (and without gpiozero's atexit).
    SIGHUP does not reload the configuration: `systemctl restart fer-edge` does.
    """

    def handler(signum, _frame) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, handler)


def run(settings: Settings, stop: threading.Event | None = None, pin_factory=None) -> int:
    """Run the daemon until the source ends or `stop` is set; returns the exit code.

    Args:
        settings: the validated configuration.
        stop: set it to stop (the signal handlers do); a new event when None.
        pin_factory: a gpiozero pin factory for the LEDs (tests pass a MockFactory).
    """
    stop = stop or threading.Event()
    source = publisher = leds = web = pipeline = None
    try:
        detector, classifier = build_stages(settings)
        if settings.service.annotate is not None:
            from device.video import check_video_path

            check_video_path(settings.service.annotate)
        detection = switch_from_settings(settings.service)
        _warn_if_detection_cannot_turn_on(settings, detection)
        publisher = _start_mqtt(settings, classifier, detection)  # before the camera: configuration errors first
        if settings.leds.enabled:
            from device.leds import EmotionLeds

            leds = EmotionLeds(settings.leds, pin_factory=pin_factory)
        live, web = _start_web(settings, publisher)  # before the camera: a port in use is a config error
        if live is not None:  # the page shows the switch
            live.detection = detection.is_on
            detection.add_listener(lambda on: setattr(live, "detection", on))
        watchdog = Watchdog()

        def open_camera():
            opened = open_source(settings.source, stop)
            if getattr(opened, "live", False):  # a camera or stream that drops: stats and the watchdog go on
                opened.on_wait = lambda: (pipeline.idle(), watchdog.waiting())
            return opened

        source = open_camera() if detection.is_on else None  # off: the camera stays closed
        if publisher is not None:
            publisher.start()
        log.info("model %s (%s input), detector %s, source %s", classifier.model_path, classifier.input_dtype,
                 settings.detector.kind, redact_url(settings.source.uri))
        pipeline = Pipeline(settings, source, detector, classifier, publisher, leds, on_frame=watchdog,
                            detection=detection, open_source=open_camera, live=live)
        pipeline.run(stop)
        return EXIT_OK
    except (ConfigError, ModelError, DetectorError) as err:
        log.error("%s", err)
        return EXIT_CONFIG
    except GPIOZeroError as err:  # e.g. no GPIO off a Pi: set [leds] mock = true or enabled = false
        log.error("leds: %s: %s", type(err).__name__, err)
        return EXIT_CONFIG
    except SourceError as err:
        log.error("%s", err)
        return EXIT_SOURCE
    finally:
        sd_notify("STOPPING=1")
        # the pipeline closes and reopens the source with the switch: close the one it holds now
        _close(web, publisher, leds, pipeline.source if pipeline is not None else source)


def _warn_if_detection_cannot_turn_on(settings: Settings, detection) -> None:
    """Log a warning where detection starts off and nothing on this daemon can turn it on."""
    if not detection.is_on and not (settings.mqtt.enabled and settings.mqtt.detection_commands):
        log.warning("detection is off (kept in %s) and no MQTT command can turn it on here "
                    "(mqtt.enabled or mqtt.detection_commands is false): delete that file or set it to ON",
                    detection.path)


def _start_mqtt(settings: Settings, classifier, detection):
    """The `MqttPublisher` with its Home Assistant discovery and switch state queued, or None with `[mqtt]` off.

    Nothing is sent until `publisher.start()`: retained messages are kept and sent on connect.

    Raises:
        ConfigError: an unreadable password or TLS file.
    """
    if not settings.mqtt.enabled:
        return None
    from device.mqtt import MqttPublisher

    topics = Topics(settings.mqtt.topic_root, settings.service.device_id, settings.mqtt.discovery_prefix)
    publisher = MqttPublisher(settings.mqtt, topics,
                              read_password(settings.mqtt, os.environ.get("CREDENTIALS_DIRECTORY")))
    if settings.mqtt.home_assistant:
        _announce_to_home_assistant(settings, classifier, publisher, topics)
    publish_switch(detection, publisher, topics, settings.mqtt.detection_commands)
    return publisher


def _announce_to_home_assistant(settings: Settings, classifier, publisher, topics: Topics) -> None:
    """Queue the retained MQTT discovery messages of the Home Assistant device (`device/homeassistant.py`)."""
    from device.homeassistant import HomeAssistant, discovery_messages

    url = None
    if settings.web.enabled:
        from device.web import page_url

        url = page_url(settings.web)
    model = classifier.card["name"] if classifier.card else classifier.model_path.name
    HomeAssistant(publisher, topics, discovery_messages(
        topics, model, settings.classifier.labels, switch=settings.mqtt.detection_commands,
        configuration_url=url)).announce()


def _close(web, publisher, leds, source) -> None:
    """Stop what `run` started, each part that exists, the page first so no request sees a closed part."""
    if web is not None:
        web.stop()
    if publisher is not None and publisher.started:
        publisher.stop()
    if leds is not None:
        leds.close()
    if source is not None:
        source.close()


def _start_web(settings: Settings, publisher):
    """`(LiveView, WebServer)` listening, with `[web]` on; `(None, None)` with it off (nothing listens).

    Raises:
        ConfigError: no password on a non-loopback address, an unreadable password file, or a port that
            cannot be bound.
    """
    if not settings.web.enabled:
        return None, None
    from device.liveview import LiveView
    from device.web import WebServer

    live = LiveView(settings.web.max_fps, settings.web.width)
    password = read_web_password(settings.web, os.environ.get("CREDENTIALS_DIRECTORY"))
    web = WebServer(settings.web, live, password,
                    broker_connected=(lambda: publisher.connected) if publisher is not None else (lambda: None))
    web.start()
    return live, web
