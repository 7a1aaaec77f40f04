"""lab2: BatchNorm and Dropout in an MLP and a CNN on CIFAR-10, the package the book imports.

Public names are imported on first use, so that `from lab2.report import results` does not load
torch: the book's pages that only read results start seconds sooner.
"""

import importlib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the checkout: params/, book/, results/, data/

# Public name -> the lab2 module that defines it.
_EXPORTS = {
    "ConfigError": "core.config", "RunConfig": "core.config", "run_id": "core.config",
    "Cifar10": "core.data", "DataError": "core.data", "Splits": "core.data", "load_cifar10": "core.data",
    "normalize": "core.data", "split": "core.data",
    "BatchNorm1d": "core.layers", "BatchNorm2d": "core.layers", "Dropout": "core.layers",
    "Dropout2d": "core.layers", "batch_norm": "core.layers", "dropout": "core.layers",
    "build_model": "core.models", "count_parameters": "core.models",
    "RunResult": "core.train", "evaluate": "core.train", "fit": "core.train", "run": "core.train",
    "save_run": "runs.record",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lab2' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lab2.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
