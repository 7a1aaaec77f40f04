"""lab2's hand-written layers against torch.nn's twins, as tables the book shows.

tests/test_layers.py asserts the same agreement; these functions report the size of the
differences, in float32 as the layers compute in training.
"""

from collections import defaultdict

import pandas as pd
import torch
from torch import nn

from lab2.core import layers
from lab2.core.config import BATCHNORM_VARIANTS, RunConfig
from lab2.core.models import build_model

CHANNELS = 16
# (lab2 layer, torch.nn twin, input shape): an MLP's (N, C) and a CNN's (N, C, H, W).
BATCHNORM_PAIRS = {
    "BatchNorm1d": (layers.BatchNorm1d, nn.BatchNorm1d, (128, CHANNELS)),
    "BatchNorm2d": (layers.BatchNorm2d, nn.BatchNorm2d, (32, CHANNELS, 8, 8)),
}
DROPOUT_RATES = (0.1, 0.3, 0.5, 0.7)


def _twins(ours_class, theirs_class):
    """The two layers with the same random affine parameters."""
    ours, theirs = ours_class(CHANNELS), theirs_class(CHANNELS)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.uniform_(-1.0, 1.0)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def batchnorm_differences(steps: int = 3, seed: int = 0) -> pd.DataFrame:
    """Largest |lab2 - torch.nn| over `steps` training steps, then in eval, per quantity."""
    rows = []
    for name, (ours_class, theirs_class, shape) in BATCHNORM_PAIRS.items():
        torch.manual_seed(seed)
        ours, theirs = _twins(ours_class, theirs_class)
        worst = defaultdict(float)
        for step in range(steps):
            # A mean and scale far from (0, 1), changing per step, so running statistics move.
            x = torch.randn(shape) * (2 + step) + 3
            upstream = torch.randn(shape)
            x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
            y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
            (y_ours * upstream).sum().backward()
            (y_theirs * upstream).sum().backward()
            pairs = {
                "output (train)": (y_ours, y_theirs), "input gradient": (x_ours.grad, x_theirs.grad),
                "gamma gradient": (ours.weight.grad, theirs.weight.grad),
                "beta gradient": (ours.bias.grad, theirs.bias.grad),
                "running mean": (ours.running_mean, theirs.running_mean),
                "running variance": (ours.running_var, theirs.running_var),
            }
            for quantity, (a, b) in pairs.items():
                worst[quantity] = max(worst[quantity], _max_difference(a, b))
            ours.zero_grad()
            theirs.zero_grad()
        ours.eval()
        theirs.eval()
        x = torch.randn(shape) * 2 + 3
        with torch.no_grad():
            worst["output (eval)"] = _max_difference(ours(x), theirs(x))
        rows.append({"layer": name, **worst})
    return pd.DataFrame(rows).set_index("layer").T.rename_axis("max |lab2 - torch.nn|")


def batchnorm_definition(variant: str, x, weight, bias, running_mean, running_var, momentum=layers.BATCHNORM_MOMENTUM,
                         eps=layers.BATCHNORM_EPS):
    """One training step of a BatchNorm variant written as its definition says, in plain autograd
    formulas (per channel over dim 0 and any spatial dims): the output and the new running statistics."""
    dims = [0] + list(range(2, x.dim()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    count = x.numel() // x.shape[1]
    batch_mean = x.mean(dims)
    batch_var = ((x - batch_mean.view(shape)) ** 2).mean(dims)  # biased: what training normalises with
    unbiased = batch_var.detach() * count / (count - 1)  # what the running variance averages
    newest = 1 - momentum if variant == "momentum_swapped" else momentum
    new_mean = (1 - newest) * running_mean + newest * batch_mean.detach()
    new_var = (1 - newest) * running_var + newest * unbiased
    if variant == "running_in_training":
        mean, var = new_mean, new_var  # constants of the gradient: computed from detached values
    else:
        mean, var = batch_mean, batch_var
    y = weight.view(shape) * (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps) + bias.view(shape)
    return y, new_mean, new_var


def batchnorm_variant_differences(steps: int = 3, seed: int = 0) -> pd.DataFrame:
    """Largest |lab2 - definition| of each BatchNorm variant (batchnorm_definition), over `steps`
    training steps of BatchNorm1d, then in eval, per quantity."""
    ours_class, _, shape = BATCHNORM_PAIRS["BatchNorm1d"]
    columns = {}
    for variant in BATCHNORM_VARIANTS:
        torch.manual_seed(seed)
        ours = ours_class(CHANNELS, variant=variant)
        with torch.no_grad():
            ours.weight.uniform_(0.5, 1.5)
            ours.bias.uniform_(-1.0, 1.0)
        weight = ours.weight.detach().clone().requires_grad_()
        bias = ours.bias.detach().clone().requires_grad_()
        running_mean, running_var = ours.running_mean.clone(), ours.running_var.clone()
        worst = defaultdict(float)
        for step in range(steps):
            x = torch.randn(shape) * (2 + step) + 3
            upstream = torch.randn(shape)
            x_ours, x_definition = x.clone().requires_grad_(), x.clone().requires_grad_()
            y_ours = ours(x_ours)
            y_definition, running_mean, running_var = batchnorm_definition(
                variant, x_definition, weight, bias, running_mean, running_var)
            (y_ours * upstream).sum().backward()
            (y_definition * upstream).sum().backward()
            pairs = {
                "output (train)": (y_ours, y_definition), "input gradient": (x_ours.grad, x_definition.grad),
                "gamma gradient": (ours.weight.grad, weight.grad), "beta gradient": (ours.bias.grad, bias.grad),
                "running mean": (ours.running_mean, running_mean), "running variance": (ours.running_var, running_var),
            }
            for quantity, (a, b) in pairs.items():
                worst[quantity] = max(worst[quantity], _max_difference(a, b))
            ours.zero_grad()
            weight.grad, bias.grad = None, None
        x = torch.randn(shape) * 2 + 3
        with torch.no_grad():
            eval_definition = weight * (x - running_mean) / torch.sqrt(running_var + ours.eps) + bias
            worst["output (eval)"] = _max_difference(ours.eval()(x), eval_definition)
        columns[variant] = worst
    return pd.DataFrame(columns).rename_axis("max |lab2 - definition|")


def dropout_behaviour(rates=DROPOUT_RATES, size: int = 1_000_000, seed: int = 0) -> pd.DataFrame:
    """What lab2's Dropout and torch.nn.Dropout do to an input of ones, in train and eval mode."""
    x = torch.ones(size)
    rows = []
    for p in rates:
        torch.manual_seed(seed)
        ours, theirs = layers.Dropout(p).train(), nn.Dropout(p).train()
        y_ours, y_theirs = ours(x), theirs(x)
        rows.append({
            "p": p,
            "fraction zeroed": (y_ours == 0).float().mean().item(),
            "kept value (lab2)": y_ours.max().item(),
            "kept value (torch.nn)": y_theirs.max().item(),
            "1 / (1 - p)": 1.0 / (1.0 - p),
            "mean output / mean input": (y_ours.mean() / x.mean()).item(),
            "eval output = input": bool(torch.equal(ours.eval()(x), x) and torch.equal(theirs.eval()(x), x)),
        })
    return pd.DataFrame(rows).set_index("p")


def whole_channel_fraction(p: float = 0.5, shape=(64, CHANNELS, 8, 8), seed: int = 0) -> pd.DataFrame:
    """Share of (sample, channel) maps kept or dropped as a whole, element-wise vs channel-wise."""
    x = torch.ones(shape)
    rows = []
    for name, layer in (("Dropout (element-wise)", layers.Dropout(p)), ("Dropout2d (channel-wise)", layers.Dropout2d(p))):
        torch.manual_seed(seed)
        zeros = (layer.train()(x) == 0).flatten(2)
        whole = (zeros.all(-1) | (~zeros).all(-1)).float().mean().item()
        rows.append({"layer": name, "maps kept or dropped whole": whole, "fraction zeroed": zeros.float().mean().item()})
    return pd.DataFrame(rows).set_index("layer")


def train_eval_behaviour(seed: int = 0) -> pd.DataFrame:
    """One batch through a small MLP twice in train mode, then twice in eval mode."""
    torch.manual_seed(seed)
    model = build_model(RunConfig(model="mlp", hidden=64, dropout_rate=0.5))
    batchnorm = next(m for m in model.modules() if isinstance(m, layers.BatchNorm1d))
    x = torch.randn(16, 3, 32, 32)
    rows = []
    for mode in ("train", "eval"):
        model.train(mode == "train")
        before = batchnorm.running_mean.clone()
        with torch.no_grad():
            first, second = model(x), model(x)
        rows.append({
            "mode": f"model.{mode}()",
            "self.training": batchnorm.training,
            "max |first - second| output": _max_difference(first, second),
            "running mean updated": not torch.equal(before, batchnorm.running_mean),
        })
    return pd.DataFrame(rows).set_index("mode")
