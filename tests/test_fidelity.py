"""Data fidelity as a run setting: JPEG re-encoding and fixed pixel noise (lab2.core.fidelity)."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from lab2 import PROJECT_ROOT
from lab2.core import fidelity
from lab2.core.config import ConfigError, RunConfig, run_id
from lab2.core.data import load_cifar10


def test_jpeg_round_trip_is_pillows_encoding_deterministic_and_lossy(arrays):
    images = arrays["test"][0][:20]
    once, again = fidelity.jpeg_round_trip(images, 30), fidelity.jpeg_round_trip(images, 30)
    np.testing.assert_array_equal(once, again)
    assert once.dtype == np.uint8 and once.shape == images.shape
    # The same as encoding one image with Pillow at that quality and decoding it.
    buffer = io.BytesIO()
    Image.fromarray(images[3].transpose(1, 2, 0)).save(buffer, format="JPEG", quality=30)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(once[3], expected)
    # Lower quality, larger error.
    assert 0 < fidelity.pixel_rmse(fidelity.jpeg_round_trip(images, 90), images) < fidelity.pixel_rmse(once, images)


def test_pixel_noise_is_fixed_gaussian_rounded_and_clipped(arrays):
    images = arrays["train"][0][:200]
    noisy = fidelity.add_pixel_noise(images, 8.0, stream=0)
    np.testing.assert_array_equal(noisy, fidelity.add_pixel_noise(images, 8.0, stream=0))  # the same every call
    assert not np.array_equal(noisy, fidelity.add_pixel_noise(images, 8.0, stream=1))  # another split, other noise
    assert noisy.dtype == np.uint8
    difference = noisy.astype(float) - images
    interior = (images > 40) & (images < 215)  # far from 0 and 255, where clipping does not cut the noise
    assert abs(difference[interior].std() - 8.0) < 0.3 and abs(difference[interior].mean()) < 0.2
    assert np.all(np.abs(difference - np.rint(difference)) == 0)  # whole grey levels


def test_degrade_keeps_the_data_fingerprint_and_records_the_error(image_dir):
    dataset = load_cifar10(image_dir)
    assert fidelity.degrade(dataset) is dataset
    degraded = fidelity.degrade(dataset, jpeg_quality=50, pixel_noise=4.0)
    assert degraded.fingerprint == dataset.fingerprint
    assert degraded.fidelity["jpeg_quality"] == 50 and degraded.fidelity["pixel_noise"] == 4.0
    assert degraded.fidelity["train_pixel_rmse"] > 4.0
    # Re-encoded once per quality: the second call reads the cache and gives the same pixels.
    again = fidelity.degrade(dataset, jpeg_quality=50, pixel_noise=4.0)
    np.testing.assert_array_equal(again.train_images.numpy(), degraded.train_images.numpy())
    np.testing.assert_array_equal(degraded.train_labels.numpy(), dataset.train_labels.numpy())


def test_fidelity_settings_reach_the_run_id_only_when_set():
    base = RunConfig()
    ids = {run_id(config, "data") for config in (base, RunConfig(jpeg_quality=50), RunConfig(pixel_noise=4.0))}
    assert len(ids) == 3
    # Left out at their defaults, so the committed runs, made before the fields existed, keep their ids.
    manifest = json.loads((PROJECT_ROOT / "results" / "full" / "manifest.json").read_text())
    committed = [run for run in manifest["runs"] if run["config"].get("jpeg_quality") is None
                 and not run["config"].get("pixel_noise")]
    assert committed
    for run in committed:
        assert run_id(RunConfig.from_dict(run["config"]), manifest["data_fingerprint"]) == run["run_id"]


@pytest.mark.parametrize("values, field", [({"jpeg_quality": 0}, "jpeg_quality"), ({"jpeg_quality": 100}, "jpeg_quality"),
                                           ({"pixel_noise": -1.0}, "pixel_noise"), ({"pixel_noise": 100.0}, "pixel_noise"),
                                           ({"jpeg_quality": 50.5}, "jpeg_quality")])
def test_bad_fidelity_values_are_refused(values, field):
    with pytest.raises(ConfigError) as error:
        RunConfig.from_dict(values)
    assert error.value.field == field
