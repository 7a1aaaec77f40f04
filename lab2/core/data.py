"""CIFAR-10 from either on-disk format, decoded once into a cache, split and scaled.

Two formats are read, both as a folder or as a .tar.gz of it:
- the official python-pickle batches (`data_batch_1..5`, `test_batch`), which torchvision
  downloads into `cifar-10-batches-py/` when the machine is online;
- an image folder `train/<class>/*`, `test/<class>/*`, optionally inside one top folder.
"""

import hashlib
import io
import os
import pickle
import sys
import tarfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm  # tqdm.auto warns in a kernel without ipywidgets, naming a local path

from lab2 import PROJECT_ROOT
from lab2.core.atomic import atomic_write
from lab2.core.config import ConfigError

DATA_ENV = "LAB2_DATA"  # where to look for CIFAR-10 when --data-dir is not given
CACHE_ENV = "LAB2_CACHE"  # where decoded arrays are kept

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
PICKLE_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
PICKLE_TEST = "test_batch"

# The course framework's scaling, (x - 128) / 255, kept exactly for comparability.
PIXEL_OFFSET = 128.0
PIXEL_SCALE = 255.0
# 10,000 of the 50,000 training images are held out for validation. The course framework
# took the last 10,000 in file order (data_batch_5); the official batches keep that order, so
# they are split the same way. An image folder has lost it (its files are numbered per
# class), so its split is drawn by a fixed permutation: every run sees the same one.
VALIDATION_FRACTION = 0.2
SPLIT_SEED = 20_240_501

HOW_TO_PROVIDE = (
    "Provide CIFAR-10 with --data-dir PATH, the LAB2_DATA environment variable or "
    "`make ... DATA=PATH`: either the official python batches (cifar-10-batches-py/) or "
    "an image folder train/<class>/*, test/<class>/* (a folder or a .tar.gz of it). "
    "On a machine that is online, the default folder data/ is filled by downloading "
    "the official files."
)


class DataError(RuntimeError):
    """CIFAR-10 is missing or unreadable; the message says where we looked and what to do."""


@dataclass
class Cifar10:
    """The official train (50,000) and test (10,000) sets as uint8 (N, 3, 32, 32) tensors."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # what was read, e.g. "image-folder:/path/cifar10-jpeg.tar.gz"
    fingerprint: str  # sha256 of the decoded pixels and labels: same data, same hash
    fidelity: dict = field(default_factory=dict)  # how lab2.core.fidelity degraded the images; empty: as read

    @property
    def kind(self) -> str:
        """The format read: 'pickle' (the official batches, in file order) or 'image-folder'."""
        return split_source(self.source)[0]


def split_source(source: str) -> tuple[str, str]:
    """A data source as Cifar10.source and the manifest spell it, 'image-folder:/path/x.tar.gz', split into its
    kind and its path (a source without a kind is all path): the one reader of that spelling."""
    kind, found, path = source.partition(":")
    return (kind, path) if found else ("", source)


@dataclass
class Splits:
    """Train / validation / test tensors (uint8 images, int64 labels) for one run."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or PROJECT_ROOT / "data")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or PROJECT_ROOT / "data" / "cache")


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats, (x - 128) / 255, on the images' own device."""
    return (images.float() - PIXEL_OFFSET) / PIXEL_SCALE


# ---------------------------------------------------------------- locating the data


def locate(path: Path) -> tuple[str, Path]:
    """Find which format lies at path: ('pickle' | 'image-folder', the file or folder to read)."""
    path = Path(path)
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz")):
            return _archive_format(path), path
        raise DataError(f"{path} is a file but not a .tar.gz archive. {HOW_TO_PROVIDE}")
    if not path.is_dir():
        raise DataError(f"No CIFAR-10 found: {path} does not exist. {HOW_TO_PROVIDE}")
    for folder in (path, path / "cifar-10-batches-py"):
        if (folder / PICKLE_TEST).is_file():
            return "pickle", folder
    for folder in [path] + sorted(p for p in path.iterdir() if p.is_dir()):
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return "image-folder", folder
    archives = sorted(p for p in path.iterdir() if p.name.endswith((".tar.gz", ".tgz")))
    if len(archives) == 1:
        return _archive_format(archives[0]), archives[0]
    raise DataError(
        f"No CIFAR-10 found in {path}: looked for cifar-10-batches-py/, {PICKLE_TEST}, "
        f"train/ and test/ folders, and a single .tar.gz. {HOW_TO_PROVIDE}"
    )


def _archive_format(archive: Path) -> str:
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if Path(member.name).name == PICKLE_TEST:
                    return "pickle"
                if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                    return "image-folder"
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"{archive} is not a readable .tar.gz ({error}). {HOW_TO_PROVIDE}") from None
    raise DataError(f"{archive} holds neither CIFAR-10 pickle batches nor images. {HOW_TO_PROVIDE}")


def _download(path: Path) -> None:
    """Fetch the official python batches with torchvision (needs the network)."""
    import torchvision

    try:
        torchvision.datasets.CIFAR10(root=str(path), train=True, download=True)
    except Exception as error:  # noqa: BLE001 - any failure means "could not download"
        raise DataError(f"No CIFAR-10 in {path}, and downloading it failed ({error}). {HOW_TO_PROVIDE}") from None


# ---------------------------------------------------------------- decoding


@contextmanager
def _readable_archive(archive: Path):
    """Open a .tar.gz; a truncated or damaged one is reported by name, not as a traceback."""
    try:
        with tarfile.open(archive) as tar:
            yield tar
    except (EOFError, zlib.error, tarfile.TarError) as error:
        raise DataError(f"{archive} is incomplete or damaged ({error}): it was probably cut short while "
                        f"being copied or downloaded; copy or download it again") from None


def _decode_pickle_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = pickle.loads(raw, encoding="bytes")
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as error:  # noqa: BLE001 - a corrupt batch can fail in many ways
        raise DataError(f"Could not decode CIFAR-10 batch {name}: {error}. {HOW_TO_PROVIDE}") from None
    if len(images) != len(labels):
        raise DataError(f"CIFAR-10 batch {name} has {len(images)} images but {len(labels)} labels.")
    return images, labels


def _read_pickles(location: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    wanted = PICKLE_TRAIN + (PICKLE_TEST,)
    raws = {}
    if location.is_file():
        with _readable_archive(location) as tar:
            for member in tar:
                if Path(member.name).name in wanted and member.isfile():
                    raws[Path(member.name).name] = tar.extractfile(member).read()
    else:
        raws = {name: (location / name).read_bytes() for name in wanted if (location / name).is_file()}
    missing = [name for name in wanted if name not in raws]
    if missing:
        raise DataError(f"CIFAR-10 batches missing from {location}: {', '.join(missing)}. {HOW_TO_PROVIDE}")
    batches = {name: _decode_pickle_batch(raws[name], name) for name in wanted}
    train = [batches[name] for name in PICKLE_TRAIN]
    return {
        "train": (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])),
        "test": batches[PICKLE_TEST],
    }


def _image_entries(location: Path):
    """Yield (split, class name, file name, bytes) for every image under train/ and test/."""
    if location.is_file():
        with _readable_archive(location) as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                    parts = Path(member.name).parts
                    if len(parts) >= 3 and parts[-3] in ("train", "test"):
                        yield parts[-3], parts[-2], parts[-1], tar.extractfile(member).read()
    else:
        for split in ("train", "test"):
            for file in sorted((location / split).glob("*/*")):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    yield split, file.parent.name, file.name, file.read_bytes()


def _read_image_folder(location: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    found = {"train": [], "test": []}
    for split, class_name, file_name, raw in tqdm(_image_entries(location), desc="decoding images", unit="img"):
        if class_name not in CLASSES:
            raise DataError(f"{location}: folder {split}/{class_name} is not a CIFAR-10 class ({', '.join(CLASSES)}).")
        try:
            with Image.open(io.BytesIO(raw)) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except Exception as error:  # noqa: BLE001 - PIL raises many kinds for a bad file
            raise DataError(f"Could not decode {split}/{class_name}/{file_name} in {location}: {error}.") from None
        if pixels.shape != (32, 32, 3):
            raise DataError(f"{split}/{class_name}/{file_name} in {location} is {pixels.shape[:2]}, not 32x32.")
        found[split].append((class_name, file_name, pixels))
    arrays = {}
    for split, entries in found.items():
        if not entries:
            raise DataError(f"No images under {split}/<class>/ in {location}. {HOW_TO_PROVIDE}")
        # Sorted so the result does not depend on the order of the archive or the file system.
        entries.sort(key=lambda entry: (CLASSES.index(entry[0]), entry[1]))
        images = np.stack([pixels for _, _, pixels in entries]).transpose(0, 3, 1, 2)
        labels = np.array([CLASSES.index(name) for name, _, _ in entries], dtype=np.int64)
        arrays[split] = (np.ascontiguousarray(images), labels)
    return arrays


def _fingerprint(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for split in ("train", "test"):
        for array in arrays[split]:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _source_key(kind: str, location: Path) -> str:
    """Identify the bytes on disk cheaply (paths, sizes, mtimes), to name the cache file."""
    files = [location] if location.is_file() else sorted(p for p in location.rglob("*") if p.is_file())
    digest = hashlib.sha256(f"{kind}:{location.resolve()}".encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _read_cache(cache_file: Path) -> tuple[dict, str] | None:
    """The decoded arrays and fingerprint from the cache; None (and the file removed) if it is damaged.

    A zip member's CRC is checked as it is read, so a truncated or altered cache fails here
    instead of being read as data.
    """
    try:
        with np.load(cache_file) as cached:
            arrays = {split: (cached[f"{split}_images"], cached[f"{split}_labels"]) for split in ("train", "test")}
            fingerprint = str(cached["fingerprint"])
        for split, (images, labels) in arrays.items():
            if images.dtype != np.uint8 or images.shape[1:] != (3, 32, 32) or len(images) != len(labels):
                raise ValueError(f"{split} arrays have the wrong shape or type")
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways (zip, CRC, keys, shapes)
        print(f"lab2: WARNING: the decode cache {cache_file} is damaged ({type(error).__name__}: {error}); "
              f"removing it and decoding the data again", file=sys.stderr)
        cache_file.unlink(missing_ok=True)
        return None
    return arrays, fingerprint


def load_cifar10(path: Path | str | None = None) -> Cifar10:
    """Load CIFAR-10 from path (default: LAB2_DATA or data/), decoding only on first use."""
    path = Path(path) if path is not None else default_data_dir()
    try:
        kind, location = locate(path)
    except DataError:
        if path.resolve() != (PROJECT_ROOT / "data").resolve():
            raise
        _download(path)
        kind, location = locate(path)
    cache_file = cache_dir() / f"cifar10-{kind}-{_source_key(kind, location)}.npz"
    source = f"{kind}:{location.resolve()}"
    cached = _read_cache(cache_file) if cache_file.is_file() else None
    if cached is not None:
        arrays, fingerprint = cached
    else:
        arrays = _read_pickles(location) if kind == "pickle" else _read_image_folder(location)
        fingerprint = _fingerprint(arrays)
        flat = {f"{split}_{part}": arrays[split][i] for split in arrays for i, part in enumerate(("images", "labels"))}
        # Written whole or not at all: a decode that failed above never reaches this line.
        with atomic_write(cache_file, "wb") as handle:
            np.savez(handle, fingerprint=np.array(fingerprint), **flat)
    return Cifar10(
        *(torch.from_numpy(arrays[split][i]) for split in ("train", "test") for i in (0, 1)),
        source=source,
        fingerprint=fingerprint,
    )


def split_counts(data: Cifar10) -> dict[str, int]:
    """How many images the split has for training, validation and test."""
    count = len(data.train_images)
    num_val = int(round(count * VALIDATION_FRACTION))
    return {"train": count - num_val, "validation": num_val, "test": len(data.test_images)}


def size_problem(data: Cifar10, train_size: int | None, eval_size: int | None,
                 batch_size: int | None = None) -> ConfigError | None:
    """Why a run's sizes do not fit this data, naming the field (None if they fit).

    Checked where a run starts, and by the sweep for every run before any starts.
    """
    counts = split_counts(data)
    if train_size is not None and train_size > counts["train"]:
        return ConfigError("train_size", f"must be at most the {counts['train']} training images, got {train_size}")
    evaluated = min(counts["validation"], counts["test"])
    if eval_size is not None and eval_size > evaluated:
        return ConfigError("eval_size", f"must be at most {evaluated} (the data has {counts['validation']} "
                                        f"validation and {counts['test']} test images), got {eval_size}")
    training = counts["train"] if train_size is None else train_size
    if batch_size is not None and batch_size > training:
        return ConfigError("batch_size", f"must be at most the {training} training images, got {batch_size}")
    return None


def split(data: Cifar10, train_size: int | None = None, eval_size: int | None = None,
          batch_size: int | None = None) -> Splits:
    """Train/validation split of the official training set (see VALIDATION_FRACTION), with optional subsets.

    Subsets are the first train_size training images and the first eval_size validation and
    test images of the split's order; a subset larger than the data, or a batch larger than
    the training set, is a ConfigError naming its field (size_problem).
    """
    count = len(data.train_images)
    num_val = split_counts(data)["validation"]
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    if data.kind == "pickle":
        order = torch.arange(count)
        val_index, train_index = order[count - num_val:], order[:count - num_val]
        test_index = torch.arange(len(data.test_images))
    else:
        order = torch.randperm(count, generator=generator)
        val_index, train_index = order[:num_val], order[num_val:]
        # The test set is sorted by class in an image folder, so its subset is drawn at random too.
        test_index = torch.randperm(len(data.test_images), generator=generator)
    problem = size_problem(data, train_size, eval_size, batch_size)
    if problem:
        raise problem
    if train_size is not None:
        train_index = train_index[:train_size]
    if eval_size is not None:
        val_index, test_index = val_index[:eval_size], test_index[:eval_size]
    return Splits(
        data.train_images[train_index], data.train_labels[train_index],
        data.train_images[val_index], data.train_labels[val_index],
        data.test_images[test_index], data.test_labels[test_index],
    )
