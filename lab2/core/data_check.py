"""The data copy this project reads, measured: how much one JPEG round trip at the copy's quality
changes lossless photographs of CIFAR-10's size, and whether the copy's files were written by the
encoder lab2.core.fidelity re-encodes with (Pillow's), so that its re-encodings degrade the data the
way it was made. The chapter "Why the numbers differ" shows both; no run imports this module.
"""

import contextlib
import importlib.util
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from lab2.core import fidelity
from lab2.core.data import split_source

# Lossless colour photographs scikit-image ships (its data folder), and the quality of the
# JPEG copy of CIFAR-10 this project reads (../shared/data/README.md).
LOSSLESS_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png")
SHARED_COPY_QUALITY = 75
SIDE = 32  # CIFAR-10 images are 32 x 32
TILINGS = (1, 2, 3)  # each photo's central square whole, in 2 x 2 and in 3 x 3 tiles, each shrunk to 32 x 32


def lossless_tiles() -> np.ndarray:
    """CIFAR-sized (32 x 32) RGB images cut from lossless photographs that scikit-image ships.

    Each photo's central square is shrunk whole and cut into 2 x 2 and 3 x 3 tiles, each tile
    shrunk to 32 x 32 by averaging (Pillow's box filter), as CIFAR-10's images were shrunk from
    larger ones.
    """
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        raise ModuleNotFoundError("scikit-image is not installed (requirements.txt lists it: `make venv`)")
    folder = Path(spec.submodule_search_locations[0]) / "data"
    tiles = []
    for name in LOSSLESS_PHOTOS:
        with Image.open(folder / name) as photo:
            photo = photo.convert("RGB")
            side = min(photo.size)
            left, top = (photo.width - side) // 2, (photo.height - side) // 2
            square = photo.crop((left, top, left + side, top + side))
        for count in TILINGS:
            step = side // count
            for row in range(count):
                for column in range(count):
                    tile = square.crop((column * step, row * step, (column + 1) * step, (row + 1) * step))
                    tiles.append(np.asarray(tile.resize((SIDE, SIDE), Image.Resampling.BOX)))
    return np.stack(tiles)


def jpeg_round_trip_error(images: np.ndarray, quality: int) -> float:
    """RMS difference in grey levels between (N, 32, 32, 3) images and their JPEG round trip, made
    as the fidelity setting makes it (lab2.core.fidelity: Pillow's defaults)."""
    channels_first = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar: a page would print it as an error
        round_trip = fidelity.jpeg_round_trip(channels_first, quality, "lossless photographs")
    return fidelity.pixel_rmse(round_trip, channels_first)


def jpeg_error_on_lossless(quality: int = SHARED_COPY_QUALITY) -> dict:
    """The pixel error of one JPEG round trip at `quality` on lossless CIFAR-sized photographs."""
    tiles = lossless_tiles()
    return {"quality": quality, "images": len(tiles), "photos": len(LOSSLESS_PHOTOS),
            "rmse": jpeg_round_trip_error(tiles, quality)}


def first_jpeg(data_source: str) -> bytes | None:
    """The first JPEG file of the data a profile was made from (a .tar.gz or a folder); None if it is not here."""
    path = Path(split_source(data_source)[1])
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as archive:
            for member in archive:
                if member.isfile() and member.name.lower().endswith((".jpg", ".jpeg")):
                    return archive.extractfile(member).read()
    elif path.is_dir():
        for file in sorted(path.rglob("*.jp*g")):
            return file.read_bytes()
    return None


def encoded_like_pillow(data_source: str, quality: int = SHARED_COPY_QUALITY) -> bool | None:
    """Whether the data's JPEGs carry the quantization tables and chroma subsampling that Pillow
    writes at `quality` (so lab2.core.fidelity re-encodes the way the copy was made); None if no JPEG is here."""
    raw = first_jpeg(data_source)
    if raw is None:
        return None
    with Image.open(io.BytesIO(raw)) as copy:
        buffer = io.BytesIO()
        copy.convert("RGB").save(buffer, format="JPEG", quality=quality)
        tables, sampling = copy.quantization, JpegImagePlugin.get_sampling(copy)
    buffer.seek(0)
    with Image.open(buffer) as ours:
        return tables == ours.quantization and sampling == JpegImagePlugin.get_sampling(ours)
