"""lab2's BatchNorm and Dropout against torch.nn's twins: outputs, gradients, statistics, modes."""

import re

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from lab2.core.config import DROPOUT_RATES, ConfigError, RunConfig
from lab2.core.layers import BatchNorm1d, BatchNorm2d, Dropout, Dropout2d, dropout

BATCHNORM_PAIRS = [(BatchNorm1d, nn.BatchNorm1d, (32, 6)), (BatchNorm2d, nn.BatchNorm2d, (8, 6, 5, 4))]


def twins(ours_class, theirs_class, features=6):
    """A lab2 layer and a torch.nn layer with the same random affine parameters, in float64."""
    ours, theirs = ours_class(features).double(), theirs_class(features).double()
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.uniform_(-1, 1)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("ours_class, theirs_class, shape", BATCHNORM_PAIRS)
def test_batchnorm_matches_torch_in_training(ours_class, theirs_class, shape):
    torch.manual_seed(0)
    ours, theirs = twins(ours_class, theirs_class)
    for step in range(3):  # several steps, so the running statistics accumulate
        x = torch.randn(shape, dtype=torch.float64) * (2 + step) + 3
        grad = torch.randn(shape, dtype=torch.float64)
        x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
        assert_close(y_ours, y_theirs)
        (y_ours * grad).sum().backward()
        (y_theirs * grad).sum().backward()
        assert_close(x_ours.grad, x_theirs.grad)
        assert_close(ours.weight.grad, theirs.weight.grad)
        assert_close(ours.bias.grad, theirs.bias.grad)
        assert_close(ours.running_mean, theirs.running_mean)
        assert_close(ours.running_var, theirs.running_var)
    assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item() == 3


@pytest.mark.parametrize("ours_class, theirs_class, shape", BATCHNORM_PAIRS)
def test_batchnorm_matches_torch_in_eval(ours_class, theirs_class, shape):
    torch.manual_seed(1)
    ours, theirs = twins(ours_class, theirs_class)
    warm_up = torch.randn(shape, dtype=torch.float64) + 2
    for layer in (ours, theirs):
        layer(warm_up)  # move the running statistics away from (0, 1)
        layer.eval()
    x = torch.randn(shape, dtype=torch.float64).requires_grad_()
    x_theirs = x.detach().clone().requires_grad_()
    assert_close(ours(x), theirs(x_theirs))
    ours(x).sum().backward()
    theirs(x_theirs).sum().backward()
    assert_close(x.grad, x_theirs.grad)
    assert_close(ours.weight.grad, theirs.weight.grad)
    # A batch of one is fine in eval: it uses the running statistics.
    one = x[:1].detach()
    assert_close(ours(one), theirs(one))


@pytest.mark.parametrize("ours_class, theirs_class, shape", BATCHNORM_PAIRS)
def test_batchnorm_float32_close_to_torch(ours_class, theirs_class, shape):
    torch.manual_seed(2)
    ours, theirs = ours_class(6), theirs_class(6)
    x = torch.randn(shape) * 4 + 10  # a large mean, where a one-pass variance would lose precision
    assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
    assert_close(ours.running_var, theirs.running_var, rtol=1e-4, atol=1e-4)


def test_batchnorm_statistics_are_buffers_not_parameters():
    layer = BatchNorm2d(4)
    assert {name for name, _ in layer.named_parameters()} == {"weight", "bias"}
    assert {"running_mean", "running_var", "num_batches_tracked"} <= set(layer.state_dict())
    assert set(layer.state_dict()) == set(nn.BatchNorm2d(4).state_dict())


def test_batchnorm_refuses_one_value_per_channel_in_training_and_wrong_rank():
    with pytest.raises(ValueError, match="more than 1 value"):
        BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="4-D"):
        BatchNorm2d(3)(torch.randn(5, 3))


def test_dropout_is_inverted_and_the_identity_in_eval():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    layer = Dropout(0.3)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))  # kept units are scaled by 1/(1-p)
    layer.eval()
    assert layer(x) is x
    assert Dropout(0.0)(x) is x


def test_dropout_gradient_is_the_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 32, requires_grad=True)
    y = Dropout(0.5)(x)
    y.sum().backward()
    # d(sum y)/dx is the scaled mask: 2 where kept, 0 where dropped, as in torch.nn.Dropout.
    assert_close(x.grad, (y != 0).float() * 2)


def test_dropout2d_drops_whole_channels():
    torch.manual_seed(0)
    x = torch.ones(50, 16, 6, 6)
    y = Dropout2d(0.5)(x)
    per_channel = y.flatten(2)
    assert torch.all(per_channel.amin(2) == per_channel.amax(2))  # each map all kept or all zero
    assert set(per_channel[:, :, 0].unique().tolist()) == {0.0, 2.0}
    with pytest.raises(ValueError, match="N, C, H, W"):
        Dropout2d(0.5)(torch.ones(4, 4))


def test_dropout_mask_follows_input_dtype():
    y = Dropout(0.5)(torch.ones(10, 10, dtype=torch.float64))
    assert y.dtype == torch.float64


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_refuses_the_rates_the_run_config_refuses(p):
    """p = 1 keeps nothing, so has no 1 / (1 - p) scale: the layers and RunConfig allow the same rates."""
    for refuse in (Dropout, Dropout2d, lambda p: dropout(torch.ones(4), p, training=True)):
        with pytest.raises(ValueError, match=re.escape(f"must be in {DROPOUT_RATES}, got {p}")):
            refuse(p)
    with pytest.raises(ConfigError, match=re.escape(f"must be in {DROPOUT_RATES}, got {p}")):
        RunConfig(dropout_rate=p).validate()


@pytest.mark.parametrize("p", [0.0, 0.5, 0.99])
def test_dropout_accepts_the_rates_the_run_config_accepts(p):
    RunConfig(dropout_rate=p).validate()
    assert Dropout(p).p == Dropout2d(p).p == p


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_layers_on_cuda_match_torch():
    ours, theirs = BatchNorm2d(6).cuda(), nn.BatchNorm2d(6).cuda()
    x = torch.randn(8, 6, 5, 5, device="cuda")
    assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
    assert Dropout(0.5)(x).device == x.device
