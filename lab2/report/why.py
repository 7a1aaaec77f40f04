"""Why our numbers differ from the report's: the computations of the chapter "Why the numbers differ".

- `lr_rule_firings`: how often the course framework's learning-rate rule, which lab2 does not
  follow, would have fired in our runs.
- `fidelity_runs` / `fidelity_table` / `fidelity_differences`: the data-fidelity experiment
  (lab2.core.fidelity) per level, with the pixel error each level causes, against the images as
  read on the same device (the CPU, in fp32).
- `jpeg_error_on_lossless`: the pixel error a JPEG round trip causes on lossless natural
  photographs shrunk to CIFAR-10's size, from the images scikit-image ships.
- `encoded_like_pillow`: whether the data's JPEGs were written as lab2.core.fidelity re-encodes.

The explanations tested by prediction are judged in lab2.report.predictions.
"""

import contextlib
import importlib.util
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lab2.report import predictions, results
from lab2.core.data import split_source
from lab2.core.summary import METRICS
from lab2.report.noise import Estimate, judge_difference, plus_minus
from lab2.report.experiments import JPEG_QUALITY_GRID, PIXEL_NOISE_GRID

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
    """The MLP runs of the fidelity experiment and, at the level 'as read', the same settings as read
    on the device the fidelity runs used (the CPU, in fp32), each with `level` and `kind`."""
    jpeg = results.runs_of(runs, "mlp", JPEG_QUALITY_GRID)
    noise = results.runs_of(runs, "mlp", PIXEL_NOISE_GRID)
    rates = sorted(set(jpeg["dropout_rate"]) | set(noise["dropout_rate"]), reverse=True)
    best = predictions.best_mlp_setting(runs)
    as_read = [predictions.on_cpu(predictions.select(runs, **{**predictions.AS_READ, **best, "dropout_rate": rate,
                                                              "precision": "fp32"})) for rate in rates]
    parts = [part.assign(kind="as read", level="as read") for part in as_read]
    parts.append(jpeg.assign(kind="JPEG", level=[f"JPEG {q:.0f}" for q in jpeg["jpeg_quality"]]))
    parts.append(noise.assign(kind="noise", level=[f"noise {n:g}" for n in noise["pixel_noise"]]))
    return pd.concat(parts, ignore_index=True).drop_duplicates(["run_id", "kind"]).reset_index(drop=True)


def fidelity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dropout rate and fidelity level: pixel error and each metric as mean ± std over seeds."""
    chosen = results.finished(fidelity_runs(runs))
    rows = []
    for (rate, level), group in chosen.groupby(["dropout_rate", "level"], sort=False):
        row = {"dropout rate": f"{rate:g}", "level": level, "seeds": len(group),
               "pixel error (RMS grey levels)": f"{group['pixel_rmse'].mean():.2f}"}
        for metric in FIDELITY_METRICS:
            estimate = Estimate.of(group[metric])
            row[METRICS[metric].label] = plus_minus(estimate.mean, estimate.std)
        rows.append(row)
    return pd.DataFrame(rows)


def fidelity_differences(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dropout rate and degraded level: each metric minus the images as read on the same CPU, judged by the noise rule."""
    chosen = results.finished(fidelity_runs(runs))
    rows = []
    for rate, at_rate in chosen.groupby("dropout_rate", sort=False):
        as_read = at_rate[at_rate["kind"] == "as read"]
        for level, group in at_rate[at_rate["kind"] != "as read"].groupby("level", sort=False):
            row = {"dropout rate": f"{rate:g}", "level": level}
            for metric in FIDELITY_METRICS:
                verdict = judge_difference(Estimate.of(group[metric]), Estimate.of(as_read[metric]), metric)
                row[METRICS[metric].label] = verdict.shown()
            rows.append(row)
    return pd.DataFrame(rows)


def level_direction(runs: pd.DataFrame, level: str, metric: str = "train_loss") -> float:
    """A degraded level's mean `metric` minus the images as read on the same CPU, at the best setting (nan if missing)."""
    chosen = results.finished(fidelity_runs(runs))
    best = results.matching(chosen, dropout_rate=float(predictions.best_mlp_setting(runs).get("dropout_rate", np.nan)))
    return best.loc[best["level"] == level, metric].mean() - best.loc[best["kind"] == "as read", metric].mean()


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


def first_jpeg(data_source: str) -> bytes | None:
    """The first JPEG file of the data a profile was made from (a .tar.gz or a folder); None if it is not here."""
    import tarfile

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


def conclusion_facts(lost, variants, comparison: pd.DataFrame) -> dict:
    """What the chapter's conclusion says, from the judged predictions (lab2.report.predictions) and the
    comparison with the report: which settings the noise reproduced, what it cost, what each BatchNorm
    variant showed, and the CNN's test accuracy against the report's."""
    by_setting = lost.prediction.groupby("setting", sort=False)["outcome"] if len(lost.prediction) else None
    reproduced = [setting for setting, outcomes in by_setting if (outcomes == predictions.HELD).all()] if by_setting else []
    failed = {setting: [METRICS[metric].label for metric, outcome in
                        zip(lost.prediction.loc[outcomes.index, "metric"], outcomes) if outcome == predictions.FAILED]
              for setting, outcomes in by_setting} if by_setting else {}
    cost = lost.cost["verdict"].map(lambda verdict: verdict.difference) if len(lost.cost) else pd.Series(dtype=float)
    cnn = comparison[(comparison["model"] == "cnn") & (comparison["metric"] == "test_acc") & (comparison["seeds"] > 0)]
    return {
        "settings": lost.prediction["setting"].nunique() if len(lost.prediction) else 0,
        "reproduced": reproduced, "failed": {setting: metrics for setting, metrics in failed.items() if metrics},
        "waiting": lost.counts.get(predictions.NOT_JUDGED, 0),
        "cost_low": cost.min(), "cost_high": cost.max(),
        "variants": {variant: {**counts, "explains": [batch for batch, agrees in variants.explains[variant].items()
                                                      if agrees is True]}
                     for variant, counts in variants.counts.items()},
        "cnn_settings": len(cnn), "cnn_below": int((cnn["difference"] < 0).sum()),
        "cnn_low": cnn["difference"].min(), "cnn_high": cnn["difference"].max(),
        "cnn_seeds": int(cnn["seeds"].max()) if len(cnn) else 0,
    }
