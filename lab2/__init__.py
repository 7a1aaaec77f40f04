"""lab2: BatchNorm and Dropout in an MLP and a CNN on CIFAR-10, the package the book imports.

Public names are imported on first use, so that `from lab2.report import results` does not load
torch: the book's pages that only read results start seconds sooner.
"""

import importlib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the checkout: params/, book/, results/, data/

# Public name -> the lab2 module that defines it.
_EXPORTS = {
    "ConfigError": "config", "RunConfig": "config", "run_id": "config",
    "Cifar10": "data", "DataError": "data", "Splits": "data", "load_cifar10": "data", "normalize": "data",
    "split": "data",
    "BatchNorm1d": "layers", "BatchNorm2d": "layers", "Dropout": "layers", "Dropout2d": "layers",
    "batch_norm": "layers", "dropout": "layers",
    "build_model": "models", "count_parameters": "models",
    "RunResult": "train", "evaluate": "train", "fit": "train", "run": "train", "save_run": "runs.record",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lab2' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lab2.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
