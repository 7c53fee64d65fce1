"""Command line: `fer-edge run | classify | check-config | watch` (also `python -m device`).

    fer-edge run --source 0 --mqtt-host broker.local --device-id kitchen
    fer-edge run --source clip.mp4 --annotate out.mp4 --config ./config.toml
    fer-edge classify face1.jpg face2.jpg --annotate annotated/
    fer-edge check-config --config /etc/fer-edge/config.toml
    fer-edge watch --mqtt-host localhost --count 10

Every configuration key is also a flag `--<section>-<key>` (see `fer-edge run --help`); dict and list
values take JSON, e.g. `--leds-pins '{"happy": 17}'`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from pathlib import Path

from device import config as cfg

log = logging.getLogger("fer-edge")


class _Parser(argparse.ArgumentParser):
    """No abbreviated flags (`--mqtt-password` must not pass for `--mqtt-password-file`), and an unknown flag's
    value is never repeated: it may be a secret typed on the command line."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            flags = [arg.split("=", 1)[0] for arg in extras if arg.startswith("-")]
            hint = " (the MQTT password is never a flag: use --mqtt-password-file or systemd's LoadCredential=)" \
                if any(flag.startswith("--mqtt-pass") for flag in flags) else ""
            self.error(f"unrecognized arguments: {' '.join(flags) or '(not shown)'}{hint}; values are not shown")
        return parsed


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=cfg.DEFAULT_CONFIG,
                        help=f"TOML configuration (default {cfg.DEFAULT_CONFIG}, may be absent)")
    parser.add_argument("--source", help="picamera2, camera index, video/image file, folder or URL")
    parser.add_argument("--model", help="the .tflite model (default: the shipped int8 model)")
    parser.add_argument("--mqtt-host", help="MQTT broker host")
    parser.add_argument("--mqtt-port", help="MQTT broker port")
    parser.add_argument("--device-id", help="device id in the topics (default: the host name)")
    parser.add_argument("--annotate", help="write an annotated copy: a video for `run`, a folder for `classify`")
    group = parser.add_argument_group("every configuration key")
    for flag, section, key in cfg.flag_names():
        if flag in ("--mqtt-host", "--mqtt-port"):
            continue
        group.add_argument(flag, dest=f"set__{section}__{key}", metavar="VALUE")


def settings_from_args(args: argparse.Namespace) -> cfg.Settings:
    """Build the validated settings from `--config` and the flags.

    Raises:
        config.ConfigError: see `config.load_settings`.
    """
    overrides = {}
    for name, value in vars(args).items():
        if value is None:
            continue
        if name.startswith("set__"):
            _, section, key = name.split("__")
            overrides[(section, key)] = value
        elif name in cfg.SHORT_FLAGS:
            overrides[cfg.SHORT_FLAGS[name]] = value
    if args.annotate and args.command == "run":
        overrides[("service", "annotate")] = args.annotate
    return cfg.load_settings(args.config, overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fer-edge", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the daemon")
    classify = commands.add_parser("classify", help="detect and classify the faces in images, one JSON line each")
    classify.add_argument("images", nargs="+", type=Path)
    classify.add_argument("--face", action="store_true", help="the images are face crops framed like FER2013 "
                          "(e.g. 48x48 faces): classify each whole image, no detection")
    check = commands.add_parser("check-config", help="validate the configuration and print it")
    for sub in (run, classify, check):
        _add_settings_flags(sub)
    watch = commands.add_parser("watch", help="print the messages of fer-edge devices from a broker")
    watch.add_argument("--mqtt-host", default="localhost")
    watch.add_argument("--mqtt-port", type=int, default=1883)
    watch.add_argument("--topic", default="fer-edge/#")
    watch.add_argument("--count", type=int, default=0, help="stop after N messages (0: never)")
    watch.add_argument("--until", default=None, help="stop after a message with this payload (e.g. offline)")
    watch.add_argument("--timeout", type=float, default=0, help="stop after this many seconds (0: never)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "watch":
        from device.watch import watch

        return watch(args.mqtt_host, args.mqtt_port, args.topic, args.count, args.until, args.timeout)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        settings = settings_from_args(args)
    except cfg.ConfigError as err:
        log.error("%s", err)
        return 2
    logging.getLogger().setLevel(settings.service.log_level)
    if args.command == "check-config":
        print(json.dumps(settings.model_dump(mode="json"), indent=2))
        return 0
    if args.command == "classify":
        from device.classify import classify_images

        return classify_images(settings, args.images, Path(args.annotate) if args.annotate else None,
                               whole_face=args.face)
    from device import service

    stop = threading.Event()
    service.install_signal_handlers(stop)
    return service.run(settings, stop)


if __name__ == "__main__":
    sys.exit(main())
