"""FER2013 loaders on real images: the Kaggle folders, the CSV form, and bad input of each kind."""

import logging
import shutil

import numpy as np
import pytest

from device.contract import LABELS
from training import data


def test_public_test_split_has_all_images_in_label_order(public_test):
    assert public_test.images.shape == (3589, 48, 48, 1)
    assert public_test.images.dtype == np.uint8
    assert np.bincount(public_test.labels).tolist() == [467, 56, 496, 895, 653, 415, 607]
    assert all(name.startswith("PublicTest_") for name in public_test.names)


def small_layout(fer2013_dir, tmp_path, per_class=3, split="PublicTest"):
    """A copy of a few real images of a test split per class, in the Kaggle layout."""
    for name in LABELS:
        (tmp_path / "test" / name).mkdir(parents=True)
        for source in sorted((fer2013_dir / "test" / name).glob(f"{split}_*.jpg"))[:per_class]:
            shutil.copy(source, tmp_path / "test" / name / source.name)
    return tmp_path


def test_folder_loader_reads_a_copied_layout(fer2013_dir, tmp_path):
    root = small_layout(fer2013_dir, tmp_path)
    split = data.load(root, "PublicTest", cache_dir=tmp_path / "cache")
    assert split.images.shape == (21, 48, 48, 1)
    assert split.labels.tolist() == [i for i in range(7) for _ in range(3)]
    again = data.load(root, "PublicTest", cache_dir=tmp_path / "cache")  # from the .npz cache
    np.testing.assert_array_equal(again.images, split.images)
    assert list((tmp_path / "cache").glob("*.npz"))


def test_missing_class_folder_is_named(fer2013_dir, tmp_path):
    root = small_layout(fer2013_dir, tmp_path)
    shutil.rmtree(root / "test" / "disgust")
    with pytest.raises(data.DatasetError, match=r"disgust.*missing class folder"):
        data.load(root, "PublicTest", cache_dir=tmp_path / "cache")


def test_missing_split_folder_explains_the_layout(tmp_path):
    with pytest.raises(data.DatasetError, match="Kaggle layout"):
        data.load(tmp_path, "Training")


def test_corrupt_and_mis_sized_images_are_named_or_skipped_with_a_log(fer2013_dir, tmp_path, caplog):
    root = small_layout(fer2013_dir, tmp_path)
    corrupt = root / "test" / "happy" / "PublicTest_0000001.jpg"
    corrupt.write_bytes(b"not a jpeg")
    with pytest.raises(data.DatasetError, match="PublicTest_0000001.jpg: cannot be decoded"):
        data.load(root, "PublicTest", cache_dir=tmp_path / "cache")
    import cv2

    big = root / "test" / "sad" / "PublicTest_0000002.jpg"
    cv2.imwrite(str(big), np.zeros((64, 64), np.uint8))
    with caplog.at_level(logging.WARNING):
        split = data.load(root, "PublicTest", skip_bad=True, cache_dir=tmp_path / "cache")
    assert len(split) == 21
    assert "skipped 2 bad item(s)" in caplog.text
    assert "PublicTest_0000002.jpg: is 64x64 px" in caplog.text


def write_csv(path, rows):
    path.write_text("emotion,pixels,Usage\n" + "".join(f"{r}\n" for r in rows))


def image_row(image, label, usage):
    return f"{label},{' '.join(map(str, image.reshape(-1).tolist()))},{usage}"


def test_csv_form_gives_the_same_arrays_as_the_images(public_test, tmp_path):
    rows = [image_row(public_test.images[i], public_test.labels[i], usage)
            for i, usage in ((0, "Training"), (1000, "PublicTest"), (3000, "PrivateTest"), (2000, "Training"))]
    write_csv(tmp_path / "fer2013.csv", rows)
    splits = data.load_csv(tmp_path / "fer2013.csv")
    assert len(splits["Training"]) == 2
    np.testing.assert_array_equal(splits["PublicTest"].images[0], public_test.images[1000])
    assert splits["PrivateTest"].labels.tolist() == [public_test.labels[3000]]
    # load() picks the CSV when the folder holds fer2013.csv and no train/ folder
    assert len(data.load(tmp_path, "Training")) == 2


@pytest.mark.parametrize("bad_row, message", [
    ("3,1 2 3,Training", "expected 2304 pixels, got 3"),
    ("9,{pixels},Training", "unknown emotion label '9'"),
    ("3,{pixels},Validation", "unknown Usage 'Validation'"),
    ("3,{pixels}", "expected 3 fields"),
    ("3,{bad_pixels},Training", "pixel values must be in 0-255"),
])
def test_bad_csv_rows_are_named_by_line_or_skipped(public_test, tmp_path, caplog, bad_row, message):
    pixels = " ".join(["7"] * 2304)
    bad = bad_row.format(pixels=pixels, bad_pixels=" ".join(["300"] * 2304))
    write_csv(tmp_path / "f.csv", [image_row(public_test.images[0], 0, "Training"), bad])
    with pytest.raises(data.DatasetError, match=rf"f\.csv:3: {message}"):
        data.load_csv(tmp_path / "f.csv")
    with caplog.at_level(logging.WARNING):
        splits = data.load_csv(tmp_path / "f.csv", skip_bad=True)
    assert len(splits["Training"]) == 1
    assert "skipped 1 bad item(s)" in caplog.text and "f.csv:3" in caplog.text


def test_csv_without_header_is_rejected(tmp_path):
    (tmp_path / "f.csv").write_text("0,1 2,Training\n")
    with pytest.raises(data.DatasetError, match="f.csv:1: expected header"):
        data.load_csv(tmp_path / "f.csv")


def test_stratified_subset_draws_from_every_class(public_test):
    subset = data.stratified_subset(public_test, per_class=10)
    assert np.bincount(subset.labels).tolist() == [10] * 7


def test_empty_image_file_is_named_or_skipped_not_a_cv2_traceback(fer2013_dir, tmp_path, caplog):
    """Issue 11: a 0-byte PrivateTest_*.jpg raised cv2.error, also with skip_bad."""
    root = small_layout(fer2013_dir, tmp_path, per_class=2, split="PrivateTest")
    empty = root / "test" / "fear" / "PrivateTest_0000000.jpg"
    empty.touch()
    with pytest.raises(data.DatasetError, match="PrivateTest_0000000.jpg: is empty"):
        data.load(root, "PrivateTest", cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        split = data.load(root, "PrivateTest", skip_bad=True, cache_dir=tmp_path / "cache")
    assert len(split) == 14 and "PrivateTest_0000000.jpg" not in split.names
    assert "skipped 1 bad item(s)" in caplog.text and "PrivateTest_0000000.jpg: is empty (0 bytes)" in caplog.text


def test_binary_csv_is_named_and_a_byte_order_mark_is_accepted(public_test, tmp_path):
    row = image_row(public_test.images[0], public_test.labels[0], "Training")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + f"emotion,pixels,Usage\n{row}\n".encode())
    assert data.load_csv(tmp_path / "bom.csv")["Training"].labels.tolist() == [public_test.labels[0]]
    (tmp_path / "binary.csv").write_bytes(f"emotion,pixels,Usage\n{row}\n".encode() + bytes(range(256)) * 4)
    for skip_bad in (False, True):
        with pytest.raises(data.DatasetError, match=r"binary.csv:4: not UTF-8 text \(invalid start byte, byte 0x80\)"):
            data.load_csv(tmp_path / "binary.csv", skip_bad=skip_bad)
    (tmp_path / "latin1.csv").write_bytes(f"emotion,pixels,Usage\n{row}\n".encode() + b"3,caf\xe9,Training\n")
    with pytest.raises(data.DatasetError, match=r"latin1.csv:3: not UTF-8 text .*byte 0xe9"):
        data.load_csv(tmp_path / "latin1.csv")
