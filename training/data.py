"""FER2013 loaders: the Kaggle folder layout and the original `fer2013.csv`.

Both return, per split, `(N, 48, 48, 1) uint8` images and `(N,) int64` labels in the label order of
`device.contract.LABELS`. Splits are FER2013's own: Training (train), PublicTest (validation,
model selection) and PrivateTest (test, reported once).

Bad input raises `DatasetError` naming the file or CSV line; with `skip_bad=True` bad items are
skipped instead and each one is logged, never dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.contract import INPUT_SIZE, LABELS

log = logging.getLogger(__name__)

SPLITS = ("Training", "PublicTest", "PrivateTest")
SPLIT_FOLDER = {"Training": "train", "PublicTest": "test", "PrivateTest": "test"}
DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "fer2013"
CACHE_VERSION = 1


class DatasetError(ValueError):
    """A FER2013 file, folder or CSV row that cannot be read as the layout promises."""


@dataclass(frozen=True)
class Split:
    """One FER2013 split: `images` `(N, 48, 48, 1) uint8`, `labels` `(N,) int64`, `names` (N,)."""

    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def default_root() -> Path:
    """`$FER2013_DIR` if set, else `../shared/datasets/fer2013` beside the repository."""
    return Path(os.environ.get("FER2013_DIR", DEFAULT_ROOT))


def load(root: str | Path, split: str, *, skip_bad: bool = False, cache_dir: str | Path | None = None) -> Split:
    """Load one split from a folder layout or from `fer2013.csv`.

    Args:
        root: the folder holding `train/` and `test/`, that folder's `fer2013.csv`, or a CSV path.
        split: "Training", "PublicTest" or "PrivateTest".
        skip_bad: skip (and log) undecodable or mis-sized items instead of raising.
        cache_dir: where to keep a `.npz` cache keyed by the files' names, sizes and mtimes;
            `None` for `$FER_EDGE_CACHE` or `~/.cache/fer-edge`.

    Raises:
        DatasetError: on a missing folder/class folder, an unreadable image or CSV row.
        ValueError: on an unknown split name.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    root = Path(root)
    csv_path = root if root.suffix == ".csv" else root / "fer2013.csv"
    if csv_path.is_file() and not (root / SPLIT_FOLDER[split]).is_dir():
        return load_csv(csv_path, skip_bad=skip_bad)[split]
    return _cached(root, split, skip_bad, cache_dir)


def _cached(root: Path, split: str, skip_bad: bool, cache_dir: str | Path | None) -> Split:
    files = list_folder_split(root, split)
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{split}|{skip_bad}".encode())
    for path, _ in files:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    cache_dir = Path(cache_dir or os.environ.get("FER_EDGE_CACHE", Path.home() / ".cache" / "fer-edge"))
    cache_file = cache_dir / f"fer2013-{split}-{digest.hexdigest()[:16]}.npz"
    if cache_file.is_file():
        with np.load(cache_file) as data:
            return Split(data["images"], data["labels"], tuple(data["names"].tolist()))
    result = decode_files(files, skip_bad=skip_bad)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, images=result.images, labels=result.labels, names=np.array(result.names))
        tmp.replace(cache_file)
    except OSError as err:  # a read-only home must not stop training
        log.warning("could not write dataset cache %s: %s", cache_file, err)
    return result


def list_folder_split(root: str | Path, split: str) -> list[tuple[Path, int]]:
    """List `(path, label)` for one split of the Kaggle layout, sorted by class then name.

    Raises:
        DatasetError: if `root/<train|test>/<class>/` is missing for any of the seven classes.
    """
    folder = Path(root) / SPLIT_FOLDER[split]
    if not folder.is_dir():
        raise DatasetError(f"{folder}: missing; expected FER2013's Kaggle layout (train/ and test/ with one "
                           f"folder per class: {', '.join(LABELS)}) or a fer2013.csv")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(LABELS):
        class_dir = folder / name
        if not class_dir.is_dir():
            raise DatasetError(f"{class_dir}: missing class folder for {name!r}")
        files += [(p, label) for p in sorted(class_dir.glob(f"{split}_*.jpg"))]
    if not files:
        raise DatasetError(f"{folder}: no {split}_*.jpg images found")
    return files


def decode_files(files: list[tuple[Path, int]], *, skip_bad: bool = False) -> Split:
    """Decode `(path, label)` pairs into a `Split`; each image must be a 48x48 grayscale-decodable file.

    Raises:
        DatasetError: naming the file, unless `skip_bad` (then the file is logged and skipped).
    """
    import cv2

    images, labels, names, bad = [], [], [], []
    for path, label in files:
        image, problem = None, None
        try:
            encoded = np.fromfile(path, dtype=np.uint8)
        except OSError as err:
            problem = f"cannot be read: {err.strerror or err}"
        else:
            if not encoded.size:  # cv2.imdecode raises cv2.error on an empty buffer instead of returning None
                problem = "is empty (0 bytes)"
            else:
                try:
                    image = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
                except cv2.error as err:
                    problem = f"cannot be decoded as an image ({err.err or err})"
        if problem is None and image is None:
            problem = "cannot be decoded as an image"
        elif image is not None and image.shape != (INPUT_SIZE, INPUT_SIZE):
            problem = f"is {image.shape[1]}x{image.shape[0]} px, expected {INPUT_SIZE}x{INPUT_SIZE}"
        if problem:
            if not skip_bad:
                raise DatasetError(f"{path}: {problem} (pass skip_bad / --skip-bad to skip such files)")
            bad.append(f"{path}: {problem}")
            continue
        images.append(image)
        labels.append(label)
        names.append(path.name)
    _report_skipped(bad)
    return _as_split(images, labels, names)


def load_csv(path: str | Path, *, skip_bad: bool = False) -> dict[str, Split]:
    """Read the original `fer2013.csv` (`emotion,pixels,Usage`) into its three splits.

    The file is UTF-8; a leading byte-order mark (as some spreadsheets write) is accepted.

    Raises:
        DatasetError: naming the file for a file that is not UTF-8 text (e.g. binary bytes), and the file
            and line for a missing header column, a row with the wrong field count, a NUL byte, a pixel
            count other than 2304, a non-integer or out-of-range pixel, an unknown label or Usage; with
            `skip_bad` such rows are logged and skipped (a file that is not UTF-8 text is never skipped).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    parts: dict[str, tuple[list, list, list]] = {s: ([], [], []) for s in SPLITS}
    bad: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:3]] != ["emotion", "pixels", "Usage"]:
                raise DatasetError(f"{path}:1: expected header 'emotion,pixels,Usage', got {header}")
            for row in reader:
                line = reader.line_num
                try:
                    image, label, usage = _parse_row(row)
                except ValueError as err:
                    if not skip_bad:
                        raise DatasetError(f"{path}:{line}: {err}") from None
                    bad.append(f"{path}:{line}: {err}")
                    continue
                images, labels, names = parts[usage]
                images.append(image)
                labels.append(label)
                names.append(f"{usage}_csv{line}")
        except UnicodeDecodeError:
            raise DatasetError(_not_utf8(path)) from None
        except csv.Error as err:  # e.g. a NUL byte
            raise DatasetError(f"{path}:{reader.line_num + 1}: {err}") from None
    _report_skipped(bad)
    return {s: _as_split(*parts[s]) for s in SPLITS}


def _not_utf8(path: Path) -> str:
    # The text reader decodes ahead in blocks: find the line of the first bad byte in the bytes themselves.
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return f"{path}:{line}: not UTF-8 text ({err.reason}, byte 0x{raw[err.start]:02x}): is it really fer2013.csv?"
    return f"{path}: not UTF-8 text"


def _parse_row(row: list[str]) -> tuple[np.ndarray, int, str]:
    if len(row) != 3:
        raise ValueError(f"expected 3 fields (emotion,pixels,Usage), got {len(row)}")
    emotion, pixels, usage = (field.strip() for field in row)
    if not emotion.isdigit() or int(emotion) >= len(LABELS):
        raise ValueError(f"unknown emotion label {emotion!r}; expected 0-{len(LABELS) - 1}")
    if usage not in SPLITS:
        raise ValueError(f"unknown Usage {usage!r}; expected one of {SPLITS}")
    values = pixels.split()
    if len(values) != INPUT_SIZE * INPUT_SIZE:
        raise ValueError(f"expected {INPUT_SIZE * INPUT_SIZE} pixels, got {len(values)}")
    try:
        array = np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        raise ValueError("pixels must be integers separated by spaces") from None
    if array.min() < 0 or array.max() > 255:
        raise ValueError("pixel values must be in 0-255")
    return array.astype(np.uint8).reshape(INPUT_SIZE, INPUT_SIZE), int(emotion), usage


def _report_skipped(bad: list[str]) -> None:
    if bad:
        log.warning("skipped %d bad item(s):\n  %s", len(bad), "\n  ".join(bad))


def _as_split(images: list, labels: list, names: list) -> Split:
    array = np.stack(images)[..., np.newaxis] if images else np.zeros((0, *(INPUT_SIZE,) * 2, 1), np.uint8)
    return Split(array.astype(np.uint8), np.asarray(labels, dtype=np.int64), tuple(names))


def stratified_subset(split: Split, per_class: int, seed: int = 0) -> Split:
    """Draw up to `per_class` items of every class (all of a class that has fewer), seeded."""
    rng = np.random.default_rng(seed)
    keep = []
    for label in range(len(LABELS)):
        idx = np.flatnonzero(split.labels == label)
        keep.append(rng.permutation(idx)[:per_class])
    index = np.sort(np.concatenate(keep))
    return Split(split.images[index], split.labels[index], tuple(split.names[i] for i in index))


def limit(split: Split, count: int | None, seed: int = 0) -> Split:
    """A stratified subset of about `count` items (for quick runs); the whole split if `count` is None."""
    if count is None or count >= len(split):
        return split
    return stratified_subset(split, max(1, count // len(LABELS)), seed)
