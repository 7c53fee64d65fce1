"""Command line: `fer-edge run | classify | check-config | watch | remove-ha` (also `python -m device`).

    fer-edge run --source 0 --mqtt-host broker.local --device-id kitchen
    fer-edge run --source clip.mp4 --annotate out.mp4 --config ./config.toml
    fer-edge classify face1.jpg face2.jpg --annotate annotated/
    fer-edge check-config --config /etc/fer-edge/config.toml
    fer-edge watch --mqtt-host localhost --count 10
    fer-edge watch --mqtt-host central.example --share dashboards   # MQTT 5 shared subscription
    fer-edge remove-ha --config /etc/fer-edge/config.toml

Every configuration key is also a flag `--<section>-<key>` (see `fer-edge run --help`); dict and list
values take JSON, e.g. `--leds-pins '{"happy": 17}'`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path

from device import config as cfg
from device.exit_codes import EXIT_CONFIG, EXIT_OK

log = logging.getLogger("fer-edge")


class _Parser(argparse.ArgumentParser):
    """No abbreviated flags: `--mqtt-password` must not pass for `--mqtt-password-file` (subcommands'
    parsers are of this class too)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)


def _reject_unknown(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """Exit 2 with the subcommand's usage, naming the unknown flags but never their values: a value may be a
    secret typed on the command line."""
    flags = [arg.split("=", 1)[0] for arg in unknown if arg.startswith("-")]
    section = next((f[2:6].rstrip("-") for f in flags if f.startswith(("--mqtt-pass", "--web-pass"))), None)
    hint = f" (a password is never a flag: use --{section}-password-file or systemd's LoadCredential=)" \
        if section else ""
    parser.error(f"unrecognized arguments: {' '.join(flags) or '(not shown)'}{hint}; values are not shown")


# The configuration each subcommand uses: it takes flags for these keys only ("*": the whole section).
COMMAND_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "run": dict.fromkeys(cfg.Settings.model_fields, ("*",)),
    "check-config": dict.fromkeys(cfg.Settings.model_fields, ("*",)),
    "classify": {"detector": ("*",), "classifier": ("*",), "service": ("log_level",)},
    "remove-ha": {"mqtt": ("host", "port", "keepalive_s", "username", "password_file", "tls", "tls_ca", "tls_cert",
                           "tls_key", "topic_root", "discovery_prefix"), "service": ("device_id", "log_level")},
}
SHORT_HELP = {"source": "--source-uri", "model": "--classifier-model", "device_id": "--service-device-id"}


def _add_settings_flags(parser: argparse.ArgumentParser, command: str) -> None:
    used = COMMAND_KEYS[command]
    parser.add_argument("--config", type=Path, default=cfg.DEFAULT_CONFIG,
                        help=f"TOML configuration (default {cfg.DEFAULT_CONFIG}; where that file does not exist, "
                        "the built-in defaults)")
    for name, (section, key) in cfg.SHORT_FLAGS.items():
        if section in used and (used[section] == ("*",) or key in used[section]):
            metavar, text = cfg.flag_help(section, key)
            alias = SHORT_HELP.get(name)
            flag = "--" + name.replace("_", "-")
            parser.add_argument(flag, metavar=metavar, help=f"{text}; same as {alias}" if alias else text)
    if command == "run":
        parser.add_argument("--annotate", metavar="PATH", help="write an annotated video of a file source: "
                            ".mp4 (H.264 where OpenCV's FFmpeg has an encoder, else MPEG-4 part 2), .webm (VP8, "
                            "plays in every browser) or .avi (MJPG) [config: service.annotate]")
    elif command == "classify":
        parser.add_argument("--annotate", metavar="DIR", type=Path, help="write an annotated copy of each image "
                            "into this folder")
    group = parser.add_argument_group("configuration keys (each is also `[section] key` in the TOML file)")
    for flag, section, key in cfg.flag_names():
        if flag in ("--mqtt-host", "--mqtt-port") or section not in used:
            continue
        if used[section] != ("*",) and key not in used[section]:
            continue
        metavar, text = cfg.flag_help(section, key)
        group.add_argument(flag, dest=f"set__{section}__{key}", metavar=metavar, help=text)


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
    if getattr(args, "annotate", None) and args.command == "run":
        overrides[("service", "annotate")] = args.annotate
    return cfg.load_settings(args.config, overrides)


def build_parser() -> argparse.ArgumentParser:
    """The `fer-edge` parser; `parser.commands` maps each subcommand to its own parser (for its usage)."""
    parser = _Parser(prog="fer-edge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the daemon", description="Run the daemon: frames -> faces -> "
                              "emotions -> MQTT and LEDs, until SIGTERM/SIGINT or the end of a file source.")
    classify = commands.add_parser("classify", help="detect and classify the faces in images, one JSON line each",
                                   description="Detect and classify the faces of still images; prints one JSON "
                                   "object per image. Uses only the detector and classifier settings.")
    classify.add_argument("images", nargs="+", type=Path, help="image files")
    classify.add_argument("--face", action="store_true", help="the images are face crops framed like FER2013 "
                          "(e.g. 48x48 faces): classify each whole image, no detection")
    check = commands.add_parser("check-config", help="validate the configuration and print it",
                                description="Validate the configuration file and flags, and print the "
                                "resulting settings as JSON (the defaults where there is no file).")
    remove = commands.add_parser("remove-ha", help="remove the device from Home Assistant and the broker",
                                 description="Publish an empty retained message on every Home Assistant discovery "
                                 "config and every retained state topic of this device, so that a decommissioned "
                                 "device leaves nothing behind. Stop the daemon first.")
    for name, sub in (("run", run), ("classify", classify), ("check-config", check), ("remove-ha", remove)):
        _add_settings_flags(sub, name)
    watch = commands.add_parser("watch", help="print the messages of fer-edge devices from a broker",
                                description="Subscribe and print `topic payload` lines, like mosquitto_sub -v.")
    watch.add_argument("--mqtt-host", default="localhost", help="MQTT broker host (default localhost)")
    watch.add_argument("--mqtt-port", type=int, default=1883, help="MQTT broker port (default 1883)")
    watch.add_argument("--topic", action="append", help="topic filter, may be repeated (default fer-edge/#)")
    watch.add_argument("--count", type=int, default=0, help="stop after N messages (default 0: never)")
    watch.add_argument("--until", default=None, help="stop after a message with this payload (e.g. offline)")
    watch.add_argument("--timeout", type=float, default=0, help="stop after this many s (default 0: never)")
    watch.add_argument("--summary", action="store_true", help="at the end, print how many messages arrived "
                       "per topic")
    watch.add_argument("--share", metavar="GROUP", type=_share_group, default=None,
                       help="subscribe as MQTT 5 shared subscription $share/GROUP/<topic>: each message goes to one "
                       "watcher of the group (no retained messages)")
    parser.commands = {"run": run, "classify": classify, "check-config": check, "watch": watch, "remove-ha": remove}
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would print the top-level usage; the subcommand's is the useful one
        _reject_unknown(parser.commands[args.command], unknown)
    if args.command == "watch":
        from device.watch import watch

        return watch(args.mqtt_host, args.mqtt_port, args.topic or ["fer-edge/#"], args.count, args.until, args.timeout,
                     summary=args.summary, share=args.share)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        settings = settings_from_args(args)
    except cfg.ConfigError as err:
        log.error("%s", err)
        return EXIT_CONFIG
    logging.getLogger().setLevel(settings.service.log_level)
    if args.command == "check-config":
        if not Path(args.config).is_file():
            log.info("%s does not exist: showing the defaults%s", args.config,
                     " with the flags applied" if _has_overrides(args) else "")
        print(json.dumps(settings.model_dump(mode="json"), indent=2))
        return EXIT_OK
    if args.command == "classify":
        from device.classify import classify_images

        return classify_images(settings, args.images, args.annotate, whole_face=args.face)
    if args.command == "remove-ha":
        from device.homeassistant import remove_device

        try:
            return remove_device(settings, cfg.read_password(settings.mqtt, os.environ.get("CREDENTIALS_DIRECTORY")))
        except cfg.ConfigError as err:
            log.error("%s", err)
            return EXIT_CONFIG
    from device import service

    stop = threading.Event()
    service.install_signal_handlers(stop)
    return service.run(settings, stop)


def _share_group(value: str) -> str:
    from device.watch import share_group_problem

    problem = share_group_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"share group {value!r} {problem}")
    return value


def _has_overrides(args: argparse.Namespace) -> bool:
    return any(value is not None and (name.startswith("set__") or name in cfg.SHORT_FLAGS)
               for name, value in vars(args).items())


if __name__ == "__main__":
    sys.exit(main())
