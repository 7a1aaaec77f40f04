"""The report's MLP and CNN, built from a RunConfig with lab2's layers or torch.nn's twins."""

from torch import nn

from lab2.core import layers
from lab2.core.config import RunConfig

IMAGE_SHAPE = (3, 32, 32)  # CIFAR-10: RGB, 32 x 32 pixels
NUM_CLASSES = 10
CONV_KERNEL = 5

# The same four layer classes from two implementations, so the benchmark and the
# reference runs can swap one for the other without touching the architecture.
LAYER_SETS = {
    "lab2": {
        "BatchNorm1d": layers.BatchNorm1d, "BatchNorm2d": layers.BatchNorm2d,
        "Dropout": layers.Dropout, "Dropout2d": layers.Dropout2d,
    },
    "torch": {
        "BatchNorm1d": nn.BatchNorm1d, "BatchNorm2d": nn.BatchNorm2d,
        "Dropout": nn.Dropout, "Dropout2d": nn.Dropout2d,
    },
}


def _batchnorm(parts: dict, name: str, features: int, config: RunConfig) -> nn.Module:
    """The BatchNorm layer `name` of a layer set, in the config's variant (lab2's layers only have variants)."""
    if config.batchnorm_variant == "standard":
        return parts[name](features)
    if parts is not LAYER_SETS["lab2"]:
        raise ValueError(f"batchnorm_variant {config.batchnorm_variant!r} exists in lab2's layers only, not torch.nn's")
    return parts[name](features, variant=config.batchnorm_variant)


def build_mlp(config: RunConfig, impl: str = "lab2") -> nn.Sequential:
    """Linear(3072, hidden) - BatchNorm1d - ReLU - Dropout - Linear(hidden, 10)."""
    parts = LAYER_SETS[impl]
    in_features = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
    stack = [nn.Flatten(), nn.Linear(in_features, config.hidden)]
    if config.batchnorm:
        stack.append(_batchnorm(parts, "BatchNorm1d", config.hidden, config))
    stack += [nn.ReLU(), parts["Dropout"](config.dropout_rate), nn.Linear(config.hidden, NUM_CLASSES)]
    return nn.Sequential(*stack)


def build_cnn(config: RunConfig, impl: str = "lab2") -> nn.Sequential:
    """[Conv2d(5) - BatchNorm2d - ReLU - Dropout - MaxPool2d(2)] x 2 - Linear(C*5*5, 10)."""
    parts = LAYER_SETS[impl]
    dropout_layer = parts["Dropout2d"] if config.dropout_kind == "2d" else parts["Dropout"]
    stack, in_channels, side = [], IMAGE_SHAPE[0], IMAGE_SHAPE[1]
    for _ in range(2):
        stack.append(nn.Conv2d(in_channels, config.channels, CONV_KERNEL))
        if config.batchnorm:
            stack.append(_batchnorm(parts, "BatchNorm2d", config.channels, config))
        stack += [nn.ReLU(), dropout_layer(config.dropout_rate), nn.MaxPool2d(2, 2)]
        in_channels, side = config.channels, (side - CONV_KERNEL + 1) // 2
    stack += [nn.Flatten(), nn.Linear(config.channels * side * side, NUM_CLASSES)]
    return nn.Sequential(*stack)


def build_model(config: RunConfig, impl: str = "lab2") -> nn.Sequential:
    """The model config.model names, with impl ('lab2' or 'torch') BatchNorm and Dropout."""
    if impl not in LAYER_SETS:
        raise ValueError(f"impl must be one of {', '.join(LAYER_SETS)}, got {impl!r}")
    return {"mlp": build_mlp, "cnn": build_cnn}[config.model](config, impl)


def layer_summary(model: nn.Module, batch: int = 2):
    """Each layer of a Sequential model: its output shape for CIFAR-10 input and its parameters."""
    import pandas as pd
    import torch

    rows, x = [], torch.zeros(batch, *IMAGE_SHAPE)
    model = model.eval()  # eval: BatchNorm uses its running statistics, so the pass changes nothing
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            rows.append({"layer": type(layer).__name__, "output shape": tuple(x.shape[1:]),
                         "parameters": count_parameters(layer)})
    return pd.DataFrame(rows)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm's running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


_MULTIPLY_ADDS: dict = {}


def multiply_adds(config: RunConfig) -> int:
    """Multiply-adds of one image's forward pass through the Linear and Conv2d layers: a run's
    cost per image and epoch, to compare runs (the book's CPU estimates, the sweep's order)."""
    import torch

    key = (config.model, config.hidden, config.channels)
    if key not in _MULTIPLY_ADDS:
        total = 0

        def count(layer, inputs, output):
            nonlocal total
            if isinstance(layer, nn.Linear):
                total += layer.in_features * layer.out_features
            elif isinstance(layer, nn.Conv2d):
                kernel = layer.kernel_size[0] * layer.kernel_size[1]
                total += output[0].numel() * layer.in_channels * kernel // layer.groups

        # On the meta device: shapes only, so a config too large to build (hidden = 10^9) is counted too.
        with torch.device("meta"), torch.no_grad():
            model = build_model(config).eval()
            hooks = [layer.register_forward_hook(count) for layer in model.modules()
                     if isinstance(layer, (nn.Linear, nn.Conv2d))]
            model(torch.zeros(1, *IMAGE_SHAPE))
        for hook in hooks:
            hook.remove()
        _MULTIPLY_ADDS[key] = total
    return _MULTIPLY_ADDS[key]
