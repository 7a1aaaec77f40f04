"""lab2: BatchNorm and Dropout in an MLP and a CNN on CIFAR-10, the package the book imports."""

from lab2.config import ConfigError, RunConfig, run_id
from lab2.data import Cifar10, DataError, Splits, load_cifar10, normalize, split
from lab2.layers import BatchNorm1d, BatchNorm2d, Dropout, Dropout2d, batch_norm, dropout
from lab2.models import build_model, count_parameters
from lab2.train import RunResult, evaluate, fit, run, save_run

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "Cifar10", "ConfigError", "DataError", "Dropout", "Dropout2d",
    "RunConfig", "RunResult", "Splits", "batch_norm", "build_model", "count_parameters", "dropout",
    "evaluate", "fit", "load_cifar10", "normalize", "run", "run_id", "save_run", "split",
]
