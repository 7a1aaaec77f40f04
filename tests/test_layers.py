"""lab2's BatchNorm and Dropout against torch.nn's twins: outputs, gradients, statistics, modes."""

import re

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from lab2.core.config import BATCHNORM_VARIANTS, DROPOUT_RATES, ConfigError, RunConfig
from lab2.core.layers import BatchNorm1d, BatchNorm2d, Dropout, Dropout2d, dropout
from lab2.core.layer_check import batchnorm_definition

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


@pytest.mark.parametrize("variant", BATCHNORM_VARIANTS)
@pytest.mark.parametrize("layer_class, shape", [(BatchNorm1d, (32, 6)), (BatchNorm2d, (8, 6, 5, 4))])
def test_batchnorm_variants_follow_their_definition(variant, layer_class, shape):
    """Each variant against its definition written as plain formulas (layer_check.batchnorm_definition), in float64:
    outputs, every gradient and the running statistics over several steps, then eval."""
    torch.manual_seed(2)
    ours = layer_class(6, variant=variant).double()
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.uniform_(-1, 1)
    weight, bias = (p.detach().clone().requires_grad_() for p in (ours.weight, ours.bias))
    running_mean, running_var = ours.running_mean.clone(), ours.running_var.clone()
    for step in range(3):
        x = torch.randn(shape, dtype=torch.float64) * (2 + step) + 3
        upstream = torch.randn(shape, dtype=torch.float64)
        x_ours, x_definition = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_ours = ours(x_ours)
        y_definition, running_mean, running_var = batchnorm_definition(
            variant, x_definition, weight, bias, running_mean, running_var)
        assert_close(y_ours, y_definition)
        (y_ours * upstream).sum().backward()
        (y_definition * upstream).sum().backward()
        for ours_value, definition_value in ((x_ours.grad, x_definition.grad), (ours.weight.grad, weight.grad),
                                             (ours.bias.grad, bias.grad), (ours.running_mean, running_mean),
                                             (ours.running_var, running_var)):
            assert_close(ours_value, definition_value)
        ours.zero_grad()
        weight.grad = bias.grad = None
    view = (1, -1) + (1,) * (len(shape) - 2)
    x = torch.randn(shape, dtype=torch.float64)
    expected = (weight.view(view) * (x - running_mean.view(view)) / torch.sqrt(running_var.view(view) + ours.eps)
                + bias.view(view))
    assert_close(ours.eval()(x), expected.detach())


def test_momentum_swapped_trains_as_standard_batchnorm_and_evaluates_with_the_newest_batch():
    torch.manual_seed(3)
    standard, swapped = BatchNorm1d(6), BatchNorm1d(6, variant="momentum_swapped")
    batches = [torch.randn(32, 6) * 2 + 1, torch.randn(32, 6) - 4]
    for x in batches:
        assert torch.equal(standard(x), swapped(x))  # training never reads the running statistics
    assert_close(swapped.running_mean, 0.1 * (0.9 * batches[0].mean(0)) + 0.9 * batches[1].mean(0))
    assert not torch.allclose(standard.running_mean, swapped.running_mean)


def test_running_in_training_passes_no_gradient_through_the_statistics():
    """The input gradient is the upstream one scaled by gamma / sqrt(running var + eps): the statistics are constants."""
    torch.manual_seed(4)
    layer = BatchNorm1d(6, variant="running_in_training").double()
    x = (torch.randn(32, 6, dtype=torch.float64) * 3 + 2).requires_grad_()
    upstream = torch.randn(32, 6, dtype=torch.float64)
    (layer(x) * upstream).sum().backward()
    assert_close(x.grad, upstream * layer.weight.detach() / torch.sqrt(layer.running_var + layer.eps))


def test_batchnorm_variant_is_checked_where_it_is_set():
    with pytest.raises(ValueError, match="variant must be one of standard, momentum_swapped, running_in_training"):
        BatchNorm1d(6, variant="swapped")
    with pytest.raises(ConfigError, match="batchnorm_variant: must be one of"):
        RunConfig(batchnorm_variant="swapped")
    with pytest.raises(ConfigError, match="applies only with BatchNorm on"):
        RunConfig(batchnorm=False, batchnorm_variant="running_in_training")
