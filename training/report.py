"""Plots for a run or an evaluation: training curves and confusion matrices (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on training servers or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from device.contract import LABELS  # noqa: E402


def read_history(path: str | Path) -> dict[str, list[float]]:
    """Read Keras' `history.csv` (CSVLogger) into columns of floats; an epoch logged twice (a run killed
    after logging it but before its checkpoint, then resumed) keeps its last row."""
    with Path(path).open(newline="") as handle:
        rows = list({row["epoch"]: row for row in csv.DictReader(handle)}.values())
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def best_epoch(history: dict[str, list[float]]) -> int:
    """The 1-based epoch of the best PublicTest accuracy (`val_accuracy`) in a `read_history` result."""
    values = history["val_accuracy"]
    return int(history["epoch"][values.index(max(values))]) + 1


def plot_training_curves(history: dict[str, list[float]], out: str | Path) -> None:
    """Loss and accuracy per epoch, Training vs PublicTest, to a PNG."""
    epochs = [int(e) + 1 for e in history.get("epoch", range(len(history.get("loss", []))))]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("loss", "Training"), ("val_loss", "PublicTest")):
        if key in history:
            loss_ax.plot(epochs, history[key], label=label)
    for key, label in (("accuracy", "Training (augmented)"), ("val_accuracy", "PublicTest")):
        if key in history:
            acc_ax.plot(epochs, history[key], label=label)
    loss_ax.set(title="Loss", xlabel="epoch")
    acc_ax.set(title="Accuracy", xlabel="epoch")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_confusion_matrix(matrix: list[list[int]] | np.ndarray, out: str | Path, title: str) -> None:
    """Row-normalised confusion matrix (rows = true class) with counts, to a PNG."""
    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of true class")
    ax.set(xticks=range(len(LABELS)), yticks=range(len(LABELS)), xticklabels=LABELS, yticklabels=LABELS,
           xlabel="predicted", ylabel="true", title=title)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    for i in range(len(LABELS)):
        for j in range(len(LABELS)):
            ax.text(j, i, f"{share[i, j]:.2f}\n{counts[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
