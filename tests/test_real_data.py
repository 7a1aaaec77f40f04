"""Slow checks on the real CIFAR-10 copy beside the project (run with `make test-all`)."""

from pathlib import Path

import pytest

from lab2.core.config import RunConfig
from lab2.core.data import PROJECT_ROOT, load_cifar10
from lab2.core.train import run

ARCHIVE = PROJECT_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path(ARCHIVE).is_file(), reason=f"needs {ARCHIVE}")]


def test_real_archive_loads_whole():
    dataset = load_cifar10(ARCHIVE)
    assert dataset.train_images.shape == (50_000, 3, 32, 32) and dataset.test_images.shape == (10_000, 3, 32, 32)
    assert dataset.train_labels.bincount().tolist() == [5000] * 10


def test_lab2_layers_match_a_plain_torch_nn_run_within_two_points():
    """The issue's acceptance run: MLP, dropout 0.5, batch 500, lr 1e-3, 5 epochs, all 40,000 images."""
    config = RunConfig(model="mlp", dropout_rate=0.5, batch_size=500, learning_rate=0.001, num_epochs=5)
    ours = run(config, ARCHIVE, "cpu", progress=False).summary["test_acc"]
    reference = run(config, ARCHIVE, "cpu", progress=False, layers="torch").summary["test_acc"]
    assert ours > 0.45 and abs(ours - reference) < 0.02
