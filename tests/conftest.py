"""Small CIFAR-10-shaped data sets, made by the tests, in every on-disk format lab2 reads."""

import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lab2.core.config import RunConfig, run_id
from lab2.core.data import CLASSES, PICKLE_TEST, PICKLE_TRAIN
from lab2.core.summary import OK

TRAIN_PER_CLASS = 130  # 1,300 training images: 1,040 train + 260 validation after the split
TEST_PER_CLASS = 30


def make_arrays(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Separable images: each class is its own colour pattern plus noise; uint8 (N, 3, 32, 32)."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(40, 216, size=(len(CLASSES), 3, 32, 32))
    arrays = {}
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        noise = rng.normal(0, 25, size=(len(labels), 3, 32, 32))
        images = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)
        arrays[split] = (images, labels.astype(np.int64))
    return arrays


def file_order(arrays) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The arrays in the order the official batches store images: shuffled, every class throughout."""
    rng = np.random.default_rng(1)
    ordered = {}
    for split, (images, labels) in arrays.items():
        order = rng.permutation(len(labels))
        ordered[split] = (images[order], labels[order])
    return ordered


def write_pickles(arrays, folder: Path) -> Path:
    """The official layout: data_batch_1..5 and test_batch in cifar-10-batches-py/, in file_order."""
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    arrays = file_order(arrays)
    images, labels = arrays["train"]
    for name, index in zip(PICKLE_TRAIN, np.array_split(np.arange(len(labels)), len(PICKLE_TRAIN))):
        batch = {b"data": images[index].reshape(len(index), -1), b"labels": labels[index].tolist()}
        (batches / name).write_bytes(pickle.dumps(batch))
    test_images, test_labels = arrays["test"]
    test = {b"data": test_images.reshape(len(test_labels), -1), b"labels": test_labels.tolist()}
    (batches / PICKLE_TEST).write_bytes(pickle.dumps(test))
    return folder


def write_image_folder(arrays, folder: Path, suffix: str = ".png") -> Path:
    """train/<class>/NNNN<suffix> and test/<class>/NNNN<suffix>."""
    for split, (images, labels) in arrays.items():
        for number, (image, label) in enumerate(zip(images, labels)):
            path = folder / split / CLASSES[label] / f"{number:04d}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(path)
    return folder


def write_tar_gz(folder: Path, archive: Path, top: str | None) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            tar.add(path, arcname=str(Path(top) / relative) if top else str(relative), recursive=False)
    return archive


TEST_FINGERPRINT = "0" * 64  # the data fingerprint of the runs tests write by hand


def written_config(model: str = "mlp", seed: int = 0) -> RunConfig:
    """The config of a run a test writes by hand (write_run)."""
    return RunConfig(model=model, seed=seed, num_epochs=2)


def run_name(model: str = "cnn", seed: int = 0) -> str:
    """The run id of written_config(model, seed) on TEST_FINGERPRINT: the folder name make_run needs for it."""
    return run_id(written_config(model, seed), TEST_FINGERPRINT)


def write_run(folder: Path, config: RunConfig, environment: dict | None = None, summary: dict | None = None,
              data_fingerprint: str = TEST_FINGERPRINT) -> Path:
    """A complete finished run in folder, as a sweep writes one (every file agreeing, lab2.runs.record.read_run)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    rows = [{"epoch": epoch, "train_loss": 2.0 / epoch, "train_acc": 0.2 * epoch, "val_loss": 2.1 / epoch,
             "val_acc": 0.19 * epoch, "seconds": 1.0} for epoch in range(1, config.num_epochs + 1)]
    columns = list(rows[0])
    (folder / "metrics.csv").write_text("\n".join([",".join(columns)] + [",".join(repr(row[c]) for c in columns)
                                                                         for row in rows]) + "\n")
    (folder / "env.json").write_text(json.dumps({"data_fingerprint": data_fingerprint, **(environment or {})}))
    last = {key: value for key, value in rows[-1].items() if key not in ("epoch", "seconds")}
    (folder / "summary.json").write_text(json.dumps({
        **last, "best_val_acc": last["val_acc"], "best_epoch": len(rows), "test_loss": 1.0, "test_acc": 0.5,
        "status": OK, "seconds": 2.0, "error": None, **(summary or {})}))
    return folder


# Ways a run's file is damaged: cut off part-way (a copy cut short, a disk that filled) or garbled (bytes overwritten).
DAMAGES = {
    "cut": lambda data: data[: len(data) * 2 // 3],
    "garbled": lambda data: data[: len(data) // 3] + bytes(range(128, 192)) + data[len(data) // 3 + 64:],
}
RUN_FILES = ("metrics.csv", "config.json", "env.json", "summary.json", "run.ipynb")  # what read_run checks


def damage(run_dir: Path, name: str, how: str) -> Path:
    """Damage one file of a run as DAMAGES[how] says; the file's path."""
    path = run_dir / name
    path.write_bytes(DAMAGES[how](path.read_bytes()))
    return path


def make_run(profile_dir: Path, name: str, device_name: str, seed: int = 0) -> Path:
    """A finished run folder as a device call brings it back, its env.json naming the device. A name that is a
    run id must be run_name(model, seed)'s."""
    model = name.split("-")[0] if name.split("-")[0] in ("mlp", "cnn") else "mlp"
    return write_run(profile_dir / name, written_config(model, seed), {"device": "cuda", "device_name": device_name})


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test decodes into its own cache folder, never the project's."""
    monkeypatch.setenv("LAB2_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def splits(arrays):
    """The made arrays split as training splits them, as tensors: for the trainer's tests."""
    import torch

    from lab2.core.data import Cifar10, split

    tensors = [torch.from_numpy(arrays[name][i]) for name in ("train", "test") for i in (0, 1)]
    return split(Cifar10(*tensors, source="synthetic", fingerprint="synthetic"))


@pytest.fixture(scope="session")
def arrays():
    return make_arrays()


@pytest.fixture(scope="session")
def pickle_dir(arrays, tmp_path_factory):
    return write_pickles(arrays, tmp_path_factory.mktemp("pickles"))


@pytest.fixture(scope="session")
def image_dir(arrays, tmp_path_factory):
    return write_image_folder(arrays, tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def image_archive(image_dir, tmp_path_factory):
    """A .tar.gz of the image folder with one top folder around train/ and test/, like the course copy."""
    return write_tar_gz(image_dir, tmp_path_factory.mktemp("archive") / "cifar10-png.tar.gz", top="cifar10-png")
