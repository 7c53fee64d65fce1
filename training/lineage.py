"""The chain of training runs behind a model: a run started with `init_from` continues another run.

Each run directory (written by `training/train.py`) holds `config.json` (with the run's `command` and
`init_from`; a model recovered by `convert/dequantize.py` adds `lineage`, the stages of the run behind it) and
`metrics.json` (with `train_seconds`, summed over a resumed run's sessions, or else
`train_seconds_this_session`, and `best_epoch`, `epochs`). The model
card and the README state the whole recipe, every stage's command and the summed wall clock, from here.
A distilled student's recipe also holds its teacher's members' stages (`member_lineage`, recorded by
`training/distill.py teacher` when it makes the teacher, since a `.tflite` member may be replaced later).
"""

from __future__ import annotations

import json
from pathlib import Path


def run_lineage(keras_model: str | Path) -> list[dict]:
    """The runs behind `keras_model` (a `RUN_DIR/model.keras`), oldest first.

    Each stage: `{"run": str, "command": str | None, "init_from": str | None, "epochs": int | None,
    "best_epoch": int | None, "train_seconds": float | None}`; `None` where the run directory lacks the file.

    Raises:
        ValueError: the `init_from` chain loops back on itself (names the run directory).
    """
    stages: list[dict] = []
    seen: set[Path] = set()
    model: Path | None = Path(keras_model)
    while model is not None:
        run_dir = model.parent.resolve()
        if run_dir in seen:
            raise ValueError(f"{run_dir}: init_from chain loops back to this run")
        seen.add(run_dir)
        config, metrics = read_run(run_dir)
        init_from = config.get("init_from")
        stage = {"run": str(model.parent), "command": config.get("command"), "init_from": init_from,
                 "epochs": metrics.get("epochs", config.get("epochs")), "best_epoch": metrics.get("best_epoch"),
                 "train_seconds": metrics.get("train_seconds", metrics.get("train_seconds_this_session"))}
        if not metrics:  # a run still in progress: what its checkpoint and history say so far
            stage |= progress(run_dir)
        stages.append(stage)
        # a model recovered from an int8 one (convert/dequantize.py) carries the stages that trained it
        stages.extend(reversed(config.get("lineage") or []))
        model = Path(init_from) if init_from else None
    return stages[::-1]


def member_lineage(model: str | Path) -> list[dict]:
    """The stages that trained one teacher member: a `.keras` run's (`run_lineage`), or a `.tflite` model's as
    its model card (the `.json` beside it, written by `convert/quantize.py`) records them; `[]` where the card
    is absent or says nothing of its training.

    Raises:
        ValueError: a `.keras` run's `init_from` chain loops; the card is not JSON (names the file).
    """
    model = Path(model)
    if model.suffix != ".tflite":
        return run_lineage(model)
    card_path = model.with_suffix(".json")
    if not card_path.is_file():
        return []
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{card_path}: not a model card: {err}") from None
    return (card.get("training_run") or {}).get("stages") or []


def progress(run_dir: str | Path) -> dict:
    """`{"epochs_done", "best_epoch", "train_seconds"}` of an unfinished run, from its `checkpoint.json`
    (epochs done, each epoch's wall clock) and `history.csv` (best PublicTest epoch); `{}` without a checkpoint."""
    from training.report import best_epoch, read_history

    state_file, history_file = Path(run_dir) / "checkpoint.json", Path(run_dir) / "history.csv"
    if not state_file.is_file() or not history_file.is_file():
        return {}
    state = json.loads(state_file.read_text())
    return {"epochs_done": state["epoch"], "best_epoch": best_epoch(read_history(history_file)),
            "train_seconds": timed_seconds(state)}


def timed_seconds(state: dict) -> float | None:
    """A run's wall clock in s from its `checkpoint.json` state: the sum of `epoch_seconds` when every epoch
    done was timed (None for a checkpoint written before epochs were timed)."""
    seconds = state.get("epoch_seconds", [])
    return round(float(sum(seconds)), 1) if len(seconds) == state["epoch"] else None


def total_train_seconds(stages: list[dict]) -> float | None:
    """Summed wall clock of every stage, or None when one stage's time is unknown."""
    seconds = [stage["train_seconds"] for stage in stages]
    return None if any(s is None for s in seconds) else float(sum(seconds))


def recipe_seconds(stages: list[dict], teacher: dict | None) -> float | None:
    """Wall clock in s of the whole recipe: the teacher's members' stages, making the teacher (its `seconds`)
    and the student's `stages`; None when one of them is unknown. Without a teacher: `stages`' total."""
    if teacher is None:
        return total_train_seconds(stages)
    members = [stage for member in teacher.get("accuracy", []) for stage in member.get("stages") or []]
    seconds = total_train_seconds(members + stages) if members else None
    return None if seconds is None or teacher.get("seconds") is None else seconds + teacher["seconds"]


def read_run(run_dir: str | Path) -> tuple[dict, dict]:
    """`(config.json, metrics.json)` of a run directory, each `{}` where the file is absent."""
    files = (Path(run_dir) / "config.json", Path(run_dir) / "metrics.json")
    config, metrics = (json.loads(path.read_text()) if path.is_file() else {} for path in files)
    return config, metrics
