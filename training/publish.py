"""Ship a trained run as the default model: convert it, document the run, and regenerate the README's results.

    python training/publish.py --run runs/long
    python training/publish.py --run runs/try --out /tmp/model --docs /tmp/model/run   # not as the default
    python training/publish.py --run runs/member-s4 --keep-as docs/teachers/member-s4  # a teacher member

1. `convert/quantize.py` writes `device/models/fer_int8.tflite` and its model card (int8 vs float on PublicTest
   and PrivateTest, each TTA mode, per-face latency, Edge TPU op check).
2. `docs/default-run/` is replaced by the run's record: the float Keras model `model.keras` (the shipped epoch,
   committed so that a later run can start from it, distil from it or evaluate it on a machine without `runs/`;
   the card's `training_run.float_model` names it), `config.json`, `history.csv`, `checkpoint.json` (epochs
   done, each epoch's wall clock), `metrics.json` when the run has finished, `training_curves.png` (the whole
   PublicTest curve so far) and `training/evaluate.py`'s report of the shipped int8 model
   (`evaluation.json`, PrivateTest and PublicTest confusion matrices).
3. `python -m training.results_table --write` rewrites the README's result blocks from the new card (only
   when the model goes to `device/models/`, the shipped model the README describes).

`--keep-as DIR` copies only step 2's run record (no int8 report) into DIR: a teacher member's float model
and record, committed so that `training/distill.py teacher` can use it on a machine without `runs/` (runs never
cross machines), with the lineage (command, epochs, wall clock) that the student's card states. Nothing is
converted or shipped.

A run still in progress may be published (its best PublicTest epoch so far); the card and the README say so.
The benchmark (`python benchmarks/run.py`, then `python -m training.results_table --write`) is a separate step.

Exit codes: 0 published; 1 the conversion refused the model (see `convert/quantize.py`); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/publish.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.exit_codes import EXIT_CONFIG, EXIT_OK  # noqa: E402

log = logging.getLogger("publish")

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "default-run"
MODELS = REPO / "device" / "models"
RUN_RECORD = ("model.keras", "config.json", "history.csv", "checkpoint.json", "metrics.json")
CURVES = "training_curves.png"


def document_run(run_dir: Path, docs: Path) -> None:
    """Replace `docs` with the run's record files and its training curves."""
    from training.report import plot_training_curves, read_history

    if docs.exists():
        shutil.rmtree(docs)
    docs.mkdir(parents=True)
    for name in RUN_RECORD:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, docs / name)
    plot_training_curves(read_history(run_dir / "history.csv"), docs / CURVES)


def keep_run(run_dir: Path, folder: Path) -> int:
    """Keep the run's record and float model in `folder` (`document_run`) without converting or shipping it.

    Returns `EXIT_OK`, or `EXIT_CONFIG` (nothing changed) where `folder` is the shipped model's record or
    is a file, or holds files that are not a run record (the run folder itself among them: no other file is
    deleted)."""
    if folder.resolve() == DOCS.resolve():
        log.error("--keep-as %s: that is the shipped model's record; publish it with --run alone", folder)
        return EXIT_CONFIG
    if folder.exists() and not folder.is_dir():
        log.error("--keep-as %s: not a folder", folder)
        return EXIT_CONFIG
    foreign = sorted(path.name for path in folder.glob("*") if path.name not in (*RUN_RECORD, CURVES))  # [] if new
    if foreign:
        log.error("--keep-as %s: holds files that are not a run record (%s); choose an empty folder",
                  folder, ", ".join(foreign))
        return EXIT_CONFIG
    document_run(run_dir, folder)
    log.info("kept %s in %s (nothing converted or shipped)", run_dir, folder)
    return EXIT_OK


def name_float_model(card_path: Path, docs: Path) -> None:
    """Write into the model card where the float model it was converted from is kept: `docs/model.keras`,
    relative to the repository where it lies inside it."""
    card = json.loads(card_path.read_text())
    kept = (docs / "model.keras").resolve()
    card["training_run"]["float_model"] = str(kept.relative_to(REPO)) if kept.is_relative_to(REPO) else str(kept)
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="run folder written by training/train.py")
    parser.add_argument("--data", default=None, help="FER2013 folder (default: $FER2013_DIR or ../shared)")
    parser.add_argument("--out", type=Path, default=MODELS, help="model folder (default: device/models)")
    parser.add_argument("--docs", type=Path, default=DOCS, help="run record folder (default: docs/default-run)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on about N images per split (trials only)")
    parser.add_argument("--max-drop", type=float, default=None, help="points of PublicTest accuracy int8 may lose "
                        "(default: convert/quantize.py's)")
    parser.add_argument("--keep-as", type=Path, default=None, metavar="DIR",
                        help="only keep the run's float model and record in DIR (a teacher member, e.g. "
                        "docs/teachers/member-s4); nothing is converted or shipped")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    missing = [name for name in ("model.keras", "history.csv", "config.json") if not (args.run / name).is_file()]
    if missing:
        log.error("%s: not a training run (missing %s)", args.run, ", ".join(missing))
        return EXIT_CONFIG
    if args.keep_as is not None:
        return keep_run(args.run, args.keep_as)
    from convert import quantize
    from training import evaluate, results_table

    data = (["--data", args.data] if args.data else []) + (["--limit", str(args.limit)] if args.limit else [])
    max_drop = ["--max-drop", str(args.max_drop)] if args.max_drop is not None else []
    code = quantize.main(["--model", str(args.run / "model.keras"), "--out", str(args.out), *data, *max_drop])
    if code != EXIT_OK:
        return code
    document_run(args.run, args.docs)
    name_float_model(args.out / f"{quantize.DEFAULT_NAME}.json", args.docs)
    code = evaluate.main(["--model", str(args.out / f"{quantize.DEFAULT_NAME}.tflite"), "--out", str(args.docs), *data])
    if code != EXIT_OK or args.out.resolve() != MODELS:
        return code
    return results_table.main(["--write"])


if __name__ == "__main__":
    sys.exit(main())
