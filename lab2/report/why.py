"""Why our numbers differ from the report's: the computations of the chapter "Why the numbers differ".

- `lr_rule_firings`: how often the course framework's learning-rate rule, which lab2 does not
  follow, would have fired in our runs.
- `fidelity_runs` / `fidelity_table`: the data-fidelity experiment (lab2.core.fidelity) per level,
  with the pixel error each level causes.
- `jpeg_error_on_lossless`: the pixel error a JPEG round trip causes on lossless natural
  photographs shrunk to CIFAR-10's size, from the images scikit-image ships.
- `gap_explained`: the trend of each metric against pixel error, read at that error, against
  the difference between our numbers and the report's.
"""

import contextlib
import importlib.util
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lab2.report import compare, results
from lab2.report.compare import Estimate, plus_minus
from lab2.report.experiments import BASELINE, JPEG_QUALITY_GRID, NO_DROPOUT, PIXEL_NOISE_GRID

# The course framework's rule: lr *= LR_DECAY when an epoch's training loss exceeds the
# largest of the LR_WINDOW epochs before it.
LR_DECAY, LR_WINDOW = 0.9995, 3
# Lossless colour photographs scikit-image ships (its data folder), and the quality of the
# JPEG copy of CIFAR-10 this project reads (../shared/data/README.md).
LOSSLESS_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png")
SHARED_COPY_QUALITY = 75
SIDE = 32  # CIFAR-10 images are 32 x 32
TILINGS = (1, 2, 3)  # each photo's central square whole, in 2 x 2 and in 3 x 3 tiles, each shrunk to 32 x 32
FIDELITY_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc")


def lr_rule_firings(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per finished run: the epochs at which the framework's rule would have lowered the learning
    rate, and the factor it would have reached by the last epoch."""
    rows = []
    for run_id, history in epochs.sort_values("epoch").groupby("run_id"):
        losses = history["train_loss"].to_numpy()
        fired = [int(epoch) for index, epoch in enumerate(history["epoch"])
                 if index >= LR_WINDOW and losses[index] > losses[index - LR_WINDOW:index].max()]
        rows.append({"run_id": run_id, "firings": len(fired), "factor": LR_DECAY ** len(fired)})
    return pd.DataFrame(rows, columns=["run_id", "firings", "factor"])


def fidelity_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The MLP runs of the fidelity experiment and the runs at the images as read it is measured
    against (the best setting and without dropout), each with `level` and `kind`."""
    parts = []
    for role in (BASELINE, NO_DROPOUT):
        parts.append(results.runs_of(runs, "mlp", role).assign(kind="as read", level="as read"))
    jpeg = results.runs_of(runs, "mlp", JPEG_QUALITY_GRID)
    parts.append(jpeg.assign(kind="JPEG", level=[f"JPEG {q:.0f}" for q in jpeg["jpeg_quality"]]))
    noise = results.runs_of(runs, "mlp", PIXEL_NOISE_GRID)
    parts.append(noise.assign(kind="noise", level=[f"noise {n:g}" for n in noise["pixel_noise"]]))
    chosen = pd.concat(parts, ignore_index=True)
    return chosen.drop_duplicates(["run_id", "kind"]).reset_index(drop=True)


def fidelity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dropout rate and fidelity level: pixel error and each metric as mean ± std over seeds."""
    chosen = results.finished(fidelity_runs(runs))
    rows = []
    for (rate, kind, level), group in chosen.groupby(["dropout_rate", "kind", "level"], sort=False):
        row = {"dropout_rate": rate, "level": level, "seeds": len(group),
               "pixel error (RMS grey levels)": round(group["pixel_rmse"].mean(), 2)}
        for metric in FIDELITY_METRICS:
            estimate = Estimate.of(group[metric])
            row[metric] = plus_minus(estimate.mean, estimate.std)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(["dropout_rate", "pixel error (RMS grey levels)"], ascending=[False, True],
                             kind="stable").set_index(["dropout_rate", "level"])


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
    from lab2.core import fidelity

    channels_first = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar: a page would print it as an error
        round_trip = fidelity.jpeg_round_trip(channels_first, quality, "lossless photographs")
    return fidelity.pixel_rmse(round_trip, channels_first)


def jpeg_error_on_lossless(quality: int = SHARED_COPY_QUALITY) -> dict:
    """The pixel error of one JPEG round trip at `quality` on lossless CIFAR-sized photographs."""
    tiles = lossless_tiles()
    return {"quality": quality, "images": len(tiles), "photos": len(LOSSLESS_PHOTOS),
            "rmse": jpeg_round_trip_error(tiles, quality)}


def trend(chosen: pd.DataFrame, metric: str) -> tuple[float, float, int]:
    """Least-squares slope of `metric` against pixel error over runs (with its standard error), and the run count."""
    x, y = chosen["pixel_rmse"].to_numpy(float), chosen[metric].to_numpy(float)
    if len(x) < 3 or np.ptp(x) == 0:
        return float("nan"), float("nan"), len(x)
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (slope * x + intercept)
    error = np.sqrt(residuals.var(ddof=2) / ((x - x.mean()) ** 2).sum())
    return float(slope), float(error), len(x)


def gap_explained(runs: pd.DataFrame, comparison: pd.DataFrame, pixel_error: float,
                  metrics=("train_loss", "train_acc", "val_loss", "test_acc"), kind: str = "JPEG") -> pd.DataFrame:
    """Per dropout rate and metric: the trend of the `kind` levels (JPEG or noise) read at
    `pixel_error` (what removing our data's JPEG step would change, if the trend held down to
    lossless data), against our difference from the report at the images as read, and the
    share of that difference it accounts for."""
    chosen = results.finished(fidelity_runs(runs))
    jpeg_levels = chosen[chosen["kind"].isin(["as read", kind])]
    rows = []
    for rate, group in jpeg_levels.groupby("dropout_rate", sort=False):
        for metric in metrics:
            slope, error, count = trend(group, metric)
            match = comparison[(comparison["model"] == "mlp") & (comparison["metric"] == metric)
                               & (comparison["dropout_rate"].round(10) == round(rate, 10))
                               & (comparison["batch_size"] == group["batch_size"].iloc[0])
                               & (comparison["learning_rate"].round(10) == round(group["learning_rate"].iloc[0], 10))
                               & comparison["batchnorm"]]
            gap = float(match["difference"].iloc[0]) if len(match) else float("nan")
            beyond = len(match) > 0 and match["beyond_noise"].iloc[0] is True
            effect = slope * pixel_error
            rows.append({"dropout_rate": rate, "metric": metric, "runs": count,
                         "slope per grey level": slope, "slope std error": error,
                         "trend": "yes" if abs(slope) > compare.NOISE_Z * error else "not told from 0",
                         "JPEG effect at the shared copy's error": effect, "ours - original": gap,
                         # A share of a difference that is within noise would be a ratio of noise.
                         "share explained": effect / gap if beyond and gap else float("nan")})
    return pd.DataFrame(rows)


def first_jpeg(data_source: str) -> bytes | None:
    """The first JPEG file of the data a profile was made from (a .tar.gz or a folder); None if it is not here."""
    import tarfile

    path = Path(data_source.partition(":")[2])
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
    from PIL import JpegImagePlugin

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


def grid_gaps(comparison: pd.DataFrame, metric: str = "train_loss") -> pd.DataFrame:
    """Ours minus the report's `metric` over each MLP grid the report printed, one row per grid value."""
    rows = comparison[(comparison["model"] == "mlp") & (comparison["metric"] == metric) & (comparison["seeds"] > 0)]
    parts = []
    for field in ("dropout_rate", "batch_size", "learning_rate"):
        others = [other for other in ("dropout_rate", "batch_size", "learning_rate") if other != field]
        # One-factor grids around the best setting: the other two fields at the best setting's values.
        best = rows[rows["role"] == BASELINE.label]
        if best.empty:
            continue
        mask = rows["batchnorm"] & np.logical_and.reduce([rows[o].round(10) == round(best[o].iloc[0], 10) for o in others])
        grid = rows[mask].sort_values(field)
        parts.append(pd.DataFrame({"grid": field, "value": grid[field].map(lambda v: f"{v:g}"),
                                   "ours - original": grid["difference"].round(3), "verdict": grid["verdict"]}))
    return pd.concat(parts, ignore_index=True).set_index(["grid", "value"]) if parts else pd.DataFrame()
