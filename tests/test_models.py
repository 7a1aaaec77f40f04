"""The MLP and CNN: shapes, architecture as printed, and both layer implementations alike."""

import pytest
import torch

from lab2.core.config import MODELS, RunConfig
from lab2.core.models import build_model, count_parameters


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("impl", ["lab2", "torch"])
def test_output_shape(model, impl):
    net = build_model(RunConfig(model=model, channels=8, hidden=16), impl)
    assert net(torch.randn(4, 3, 32, 32)).shape == (4, 10)


def test_report_sizes():
    cnn = build_model(RunConfig(model="cnn"))
    assert "Linear(in_features=6400, out_features=10" in str(cnn)  # C = 256, as the report printed
    mlp = build_model(RunConfig(model="mlp"))
    assert "Linear(in_features=3072, out_features=1024" in str(mlp)
    assert count_parameters(mlp) == count_parameters(build_model(RunConfig(model="mlp"), "torch"))
    assert count_parameters(cnn) == count_parameters(build_model(RunConfig(model="cnn"), "torch"))


def test_print_shows_the_real_architecture():
    without_batchnorm = str(build_model(RunConfig(model="mlp", batchnorm=False)))
    assert "BatchNorm" not in without_batchnorm
    channelwise = str(build_model(RunConfig(model="cnn", dropout_rate=0.3, channels=8)))
    elementwise = str(build_model(RunConfig(model="cnn", dropout_rate=0.3, channels=8, dropout_kind="1d")))
    assert channelwise.count("Dropout2d(p=0.3)") == 2 and channelwise.count("BatchNorm2d(8") == 2
    assert "Dropout2d" not in elementwise and elementwise.count("Dropout(p=0.3)") == 2


def test_unknown_impl_is_refused():
    with pytest.raises(ValueError, match="lab2, torch"):
        build_model(RunConfig(), "keras")


def test_multiply_adds_count_the_layers_without_building_their_weights():
    from lab2.core.models import multiply_adds

    # conv1 28x28x256 outputs of 3x5x5, conv2 10x10x256 of 256x5x5, then the linear layer: the report's CNN.
    assert multiply_adds(RunConfig(model="cnn")) == 28 * 28 * 256 * 3 * 25 + 10 * 10 * 256 * 256 * 25 + 6400 * 10
    assert multiply_adds(RunConfig(model="mlp", hidden=10**9)) == 3072 * 10**9 + 10**9 * 10  # 12 TB of weights if built
