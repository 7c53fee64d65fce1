"""Several cameras on one host: 1, 2 and 4 `fer-edge run` processes at once (as systemd/fer-edge@.service
starts one per camera), each on the clip at the default settings (YuNet, flip TTA, 1 interpreter thread; the
file looped and read as fast as it decodes, so fps is what the host sustains), against one mosquitto on
127.0.0.1.

Per run: each instance's fps (frames processed per second, from its `stats` messages after the first, which
covers start-up), their sum, and each instance's resident memory (VmRSS at the end and VmHWM, its peak, from
/proc/<pid>/status; shared libraries count in every instance's RSS, so the sum over instances overstates the
host's use).

    python benchmarks/instances.py                       # 1, 2, 4 instances, 22 s each
    python benchmarks/instances.py --counts 1,2 --seconds 15 --out /tmp/instances
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/instances.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.broker import MOSQUITTO, Mosquitto, Recorder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STATS_INTERVAL_S = 5.0


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid`, KiB (proc(5))."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def run_instances(count: int, video: Path, model: Path | None, seconds: float, work: Path, port: int) -> dict:
    """`count` daemons for `seconds`; fps from `stats`, memory just before SIGTERM."""
    config = work / "empty.toml"
    config.touch()
    with Recorder(port) as recorder:
        processes = []
        for i in range(count):
            argv = [sys.executable, "-m", "device", "run", "--config", str(config), "--device-id", f"cam{i}",
                    "--source", str(video), "--source-loop", "true", "--mqtt-host", "127.0.0.1",
                    "--mqtt-port", str(port), "--mqtt-stats-interval-s", str(STATS_INTERVAL_S)]
            if model is not None:
                argv += ["--model", str(model)]
            processes.append(subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(seconds)
        memory = [memory_kib(p.pid) for p in processes]
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in processes]
        time.sleep(0.3)
    rows = []
    for i, mem in enumerate(memory):
        stats = [json.loads(m.payload) for m in recorder.on(f"/cam{i}/stats")][1:]  # the first covers start-up
        fps = sum(s["frames"] for s in stats) / (STATS_INTERVAL_S * len(stats)) if stats else None
        rows.append({"fps": None if fps is None else round(fps, 2), "stats_messages": len(stats),
                     "rss_mb": round(mem["VmRSS"] / 1024, 1), "peak_rss_mb": round(mem["VmHWM"] / 1024, 1),
                     "exit_code": codes[i]})
    measured = [r["fps"] for r in rows if r["fps"] is not None]
    return {"instances": count, "seconds": seconds, "per_instance": rows,
            "fps_mean": round(sum(measured) / len(measured), 2) if measured else None,
            "fps_total": round(sum(measured), 2) if measured else None,
            "rss_mb_mean": round(sum(r["rss_mb"] for r in rows) / count, 1),
            "rss_mb_total": round(sum(r["rss_mb"] for r in rows), 1)}


def measure(counts: list[int], video: Path, model: Path | None = None, seconds: float = 22.0) -> dict:
    """`run_instances` for each count, one after the other, one mosquitto for all."""
    if MOSQUITTO is None:
        return {"skipped": "mosquitto is not installed"}
    if not video.is_file():
        return {"skipped": f"{video} not found"}
    with tempfile.TemporaryDirectory() as work:
        broker = Mosquitto(Path(work)).start()
        try:
            runs = []
            for count in counts:
                print(f"instances: {count} at once, {seconds:.0f} s ...", flush=True)
                runs.append(run_instances(count, video, model, seconds, Path(work), broker.port))
        finally:
            broker.stop()
    return {"video": str(video), "stats_interval_s": STATS_INTERVAL_S, "runs": runs}


def markdown(instances: dict, cores: int | None = None) -> list[str]:
    """The instances table for the report."""
    if "skipped" in instances:
        return ["", f"Instances: not measured ({instances['skipped']})."]
    lines = ["", f"| daemons at once on {Path(instances['video']).name}, default settings | fps each (mean) | "
             "fps, all together | RSS each, MB (mean) | peak RSS each, MB (max) |", "|---|---|---|---|---|"]
    for run in instances["runs"]:
        peak = max(r["peak_rss_mb"] for r in run["per_instance"])
        fps = "-" if run["fps_mean"] is None else f"{run['fps_mean']:.1f} | {run['fps_total']:.1f}"
        lines.append(f"| {run['instances']} | {fps if run['fps_mean'] is not None else '- | -'} | "
                     f"{run['rss_mb_mean']:.0f} | {peak:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,2,4", help="comma-separated instance counts (default 1,2,4)")
    parser.add_argument("--seconds", type=float, default=22.0, help="run time of each count, s (default 22)")
    parser.add_argument("--video", type=Path, default=REPO.parent / "shared" / "media" / "woman2.mp4")
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--out", type=Path, default=None, help="write instances.json here")
    args = parser.parse_args(argv)
    instances = measure([int(n) for n in args.counts.split(",")], args.video, args.model, args.seconds)
    print("\n".join(markdown(instances)))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "instances.json").write_text(json.dumps(instances, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
