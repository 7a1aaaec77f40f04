"""Data fidelity as a run setting: the images re-encoded as JPEG, or with fixed Gaussian noise.

The original report trained on CIFAR-10's lossless pixels; the copy on these machines was
re-encoded as JPEG at quality 75. Lowering fidelity further by a known amount, and measuring
how the metrics move, tells how much of a difference to the original the JPEG step can
explain (the chapter "Why the numbers differ").

Both degradations act on the whole data set before it is split, so an image is degraded the
same way in every epoch, every run and every split size.
"""

import io
import sys
from dataclasses import replace

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from lab2.core.atomic import atomic_write
from lab2.core.data import Cifar10, cache_dir

# The noise is drawn once from this seed (one stream per split), so every run adds the same noise.
NOISE_SEED = 20_261_129
NOISE_CHUNK = 5_000  # images per draw: bounds the float32 buffer to ~60 MB


def jpeg_round_trip(images: np.ndarray, quality: int, desc: str = "re-encoding") -> np.ndarray:
    """Each (3, 32, 32) uint8 image encoded as JPEG at quality (Pillow's defaults otherwise) and decoded."""
    out = np.empty_like(images)
    for index in tqdm(range(len(images)), desc=f"{desc} as JPEG {quality}", unit="img", mininterval=2.0):
        buffer = io.BytesIO()
        Image.fromarray(images[index].transpose(1, 2, 0)).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[index] = np.asarray(decoded.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    return out


def add_pixel_noise(images: np.ndarray, grey_levels: float, stream: int) -> np.ndarray:
    """images + N(0, grey_levels^2) per pixel, rounded and clipped to 0..255; the same noise on every call."""
    generator = np.random.default_rng([NOISE_SEED, stream])
    out = np.empty_like(images)
    for start in range(0, len(images), NOISE_CHUNK):
        chunk = images[start:start + NOISE_CHUNK]
        noise = generator.standard_normal(chunk.shape, dtype=np.float32) * np.float32(grey_levels)
        out[start:start + NOISE_CHUNK] = np.clip(np.rint(chunk + noise), 0, 255).astype(np.uint8)
    return out


def pixel_rmse(images: np.ndarray, reference: np.ndarray) -> float:
    """Root-mean-square difference in grey levels."""
    difference = images.astype(np.float32) - reference.astype(np.float32)
    return float(np.sqrt(np.mean(np.square(difference), dtype=np.float64)))


def _jpeg_cached(dataset: Cifar10, quality: int) -> dict[str, np.ndarray]:
    """Train and test images re-encoded at quality, decoded once per data set and quality."""
    cache_file = cache_dir() / f"cifar10-{dataset.fingerprint[:16]}-jpeg{quality}.npz"
    if cache_file.is_file():
        try:
            with np.load(cache_file) as cached:
                arrays = {split: cached[split] for split in ("train", "test")}
            if arrays["train"].shape == dataset.train_images.shape and arrays["test"].shape == dataset.test_images.shape:
                return arrays
            raise ValueError("its arrays have the wrong shape")
        except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways (zip, CRC, keys, shapes)
            print(f"lab2: WARNING: the re-encoding cache {cache_file} is damaged ({error}); re-encoding again",
                  file=sys.stderr)
            cache_file.unlink(missing_ok=True)
    arrays = {split: jpeg_round_trip(images.numpy(), quality, f"{split} images")
              for split, images in (("train", dataset.train_images), ("test", dataset.test_images))}
    with atomic_write(cache_file, "wb") as handle:
        np.savez(handle, **arrays)
    return arrays


def degrade(dataset: Cifar10, jpeg_quality: int | None = None, pixel_noise: float = 0.0) -> Cifar10:
    """The data set as a run with these fidelity settings sees it (JPEG first, then noise).

    The result keeps the fingerprint of the data as read (run ids hash it together with the
    settings) and records in `fidelity` the settings and the pixel error they cause.
    """
    if jpeg_quality is None and pixel_noise == 0:
        return dataset
    arrays = {"train": dataset.train_images.numpy(), "test": dataset.test_images.numpy()}
    if jpeg_quality is not None:
        arrays = _jpeg_cached(dataset, jpeg_quality)
    if pixel_noise > 0:
        arrays = {split: add_pixel_noise(images, pixel_noise, stream)
                  for stream, (split, images) in enumerate(arrays.items())}
    fidelity = {
        "jpeg_quality": jpeg_quality,
        "pixel_noise": pixel_noise,
        # Against the images as read: the x axis of the fidelity figures.
        "train_pixel_rmse": pixel_rmse(arrays["train"], dataset.train_images.numpy()),
    }
    return replace(dataset, train_images=torch.from_numpy(arrays["train"]),
                   test_images=torch.from_numpy(arrays["test"]), fidelity=fidelity)
