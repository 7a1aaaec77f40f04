"""CIFAR-10 loading from both on-disk formats, the decode cache, the split and the errors."""

import time

import numpy as np
import pytest
import torch

from conftest import file_order, write_image_folder, write_tar_gz
from lab2.core import data as cifar
from lab2.core.config import ConfigError
from lab2.core.data import DataError, load_cifar10, split


def assert_same_as(dataset, arrays):
    for split_name in ("train", "test"):
        images, labels = arrays[split_name]
        got_images = getattr(dataset, f"{split_name}_images")
        got_labels = getattr(dataset, f"{split_name}_labels")
        assert got_images.dtype == torch.uint8 and got_images.shape == images.shape
        # Image folders come back sorted by class; pickles in their file order.
        np.testing.assert_array_equal(got_images.numpy(), images)
        np.testing.assert_array_equal(got_labels.numpy(), labels)


def test_pickles_folder_and_parent(arrays, pickle_dir):
    assert_same_as(load_cifar10(pickle_dir), file_order(arrays))
    assert_same_as(load_cifar10(pickle_dir / "cifar-10-batches-py"), file_order(arrays))


def test_pickles_as_tar_gz(arrays, pickle_dir, tmp_path):
    archive = write_tar_gz(pickle_dir, tmp_path / "cifar-10-python.tar.gz", top=None)
    dataset = load_cifar10(archive)
    assert dataset.source.startswith("pickle:")
    assert_same_as(dataset, file_order(arrays))


def test_image_folder_plain_and_archived(arrays, image_dir, image_archive):
    plain, archived = load_cifar10(image_dir), load_cifar10(image_archive)
    assert_same_as(plain, arrays)
    assert_same_as(archived, arrays)
    assert archived.source.startswith("image-folder:")
    # Same pixels, same fingerprint, whatever the container: the run ids depend on it.
    assert plain.fingerprint == archived.fingerprint == load_cifar10(image_archive.parent).fingerprint


def test_image_folder_without_top_folder_in_archive(arrays, image_dir, tmp_path):
    archive = write_tar_gz(image_dir, tmp_path / "flat.tar.gz", top=None)
    assert_same_as(load_cifar10(archive), arrays)


def test_jpeg_image_folder_decodes(arrays, tmp_path):
    folder = write_image_folder({"train": arrays["train"], "test": arrays["test"]}, tmp_path / "jpeg", ".jpg")
    dataset = load_cifar10(folder)
    assert dataset.train_images.shape == arrays["train"][0].shape
    # JPEG is lossy and drops the pixel noise, but keeps each image's average colour.
    decoded_means = dataset.train_images.numpy().mean(axis=(2, 3))
    source_means = arrays["train"][0].mean(axis=(2, 3))
    assert np.abs(decoded_means - source_means).max() < 5


def test_second_load_comes_from_the_cache_in_under_a_second(image_archive):
    load_cifar10(image_archive)
    cache_files = list(cifar.cache_dir().glob("*.npz"))
    assert len(cache_files) == 1
    started = time.perf_counter()
    load_cifar10(image_archive)
    assert time.perf_counter() - started < 1.0
    assert list(cifar.cache_dir().glob("*.npz")) == cache_files


def test_image_folder_split_is_seeded_random_and_disjoint(image_dir):
    dataset = load_cifar10(image_dir)
    first, again = split(dataset), split(dataset)
    total = len(dataset.train_images)
    assert len(first.val_images) == total // 5 and len(first.train_images) == total - total // 5
    assert torch.equal(first.val_images, again.val_images)
    # Not "the last fifth": the folder is sorted by class, and the validation set must hold every class.
    assert len(first.val_labels.unique()) == 10
    assert not torch.equal(first.val_labels, dataset.train_labels[-len(first.val_labels):])
    # Disjoint: no training image is also a validation image.
    train_rows = {row.tobytes() for row in first.train_images.numpy()}
    assert not any(row.tobytes() in train_rows for row in first.val_images.numpy())


def test_official_batches_split_as_the_course_framework(pickle_dir):
    """The first four fifths in file order train, the last fifth (data_batch_5) validates, the test set in file order."""
    dataset = load_cifar10(pickle_dir)
    splits = split(dataset)
    total = len(dataset.train_images)
    assert torch.equal(splits.train_images, dataset.train_images[:total - total // 5])
    assert torch.equal(splits.val_images, dataset.train_images[total - total // 5:])
    assert torch.equal(splits.test_images, dataset.test_images)
    subset = split(dataset, train_size=100, eval_size=50)
    assert torch.equal(subset.train_images, dataset.train_images[:100])
    assert torch.equal(subset.val_images, dataset.train_images[total - total // 5:][:50])


def test_split_subsets(image_dir):
    subset = split(load_cifar10(image_dir), train_size=100, eval_size=50)
    assert len(subset.train_images) == 100 and len(subset.val_images) == 50 and len(subset.test_images) == 50
    assert len(subset.test_labels.unique()) > 5  # a random subset of the test set, not its first class
    with pytest.raises(ConfigError) as refused:
        split(load_cifar10(image_dir), train_size=10**6)
    assert refused.value.field == "train_size"


def test_normalize_scales_as_the_report():
    pixels = torch.tensor([0, 128, 255], dtype=torch.uint8)
    torch.testing.assert_close(cifar.normalize(pixels), torch.tensor([-128 / 255, 0.0, 127 / 255]))


def test_missing_data_names_the_place_and_the_remedy(tmp_path):
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value) and "--data-dir" in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No CIFAR-10 found in"):
        load_cifar10(tmp_path / "empty")


def test_corrupt_image_fails_clearly_and_leaves_no_cache(arrays, tmp_path):
    folder = write_image_folder(arrays, tmp_path / "broken")
    (folder / "train" / "cat" / "0400.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="Could not decode train/cat/0400.png"):
        load_cifar10(folder)
    assert list(cifar.cache_dir().glob("*")) == []


def test_corrupt_pickle_and_archive_fail_clearly(pickle_dir, tmp_path):
    broken = tmp_path / "cifar-10-batches-py"
    broken.mkdir()
    for path in (pickle_dir / "cifar-10-batches-py").iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "data_batch_3").write_bytes(b"\x80garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(broken)
    bad_archive = tmp_path / "bad.tar.gz"
    bad_archive.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable .tar.gz"):
        load_cifar10(bad_archive)
    assert list(cifar.cache_dir().glob("*")) == []
