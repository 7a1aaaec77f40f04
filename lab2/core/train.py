"""One training run: `run(config) -> RunResult` (lab2.runs.record writes it to a folder).

The loop follows the course framework the report used: Adam at a fixed learning rate,
training data reshuffled every epoch, per-epoch training metrics (mean over the epoch's
batches, train mode) and validation metrics (eval mode), and the test set evaluated
whenever validation accuracy reaches a new best (>=).

The same code runs on a CPU and on a GPU. The data sits on the device as uint8 and is
normalised there, batches are taken by index, and metrics are accumulated on the device
and read once per epoch, so a GPU step never waits for the host. On a GPU the step and
the evaluation are replayed from captured CUDA graphs (lab2.core.step); a CPU runs them eagerly;
either may compile them first (step mode `compiled`, chosen by $LAB2_STEP_MODE). The step
mode is how a run executes, like its device: recorded in env.json, not part of its config
or run id.
"""

import math
import os
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from lab2.core import data as cifar
from lab2.core import fidelity
from lab2.core.config import RunConfig
from lab2.core.models import build_model, count_parameters
from lab2.core.step import Evaluator, TrainStep, autocast_context, choose_step_mode, make_optimizer, uses_channels_last
from lab2.core.summary import DIVERGED, OK, failed_summary


@dataclass
class RunResult:
    """What one run produced: per-epoch metrics, the summary, and where it ran."""

    history: list[dict]
    summary: dict
    environment: dict = field(default_factory=dict)


def failed_result(error: BaseException, seconds: float) -> RunResult:
    """The result of a run that raised: no epochs, a failed summary naming the error."""
    return RunResult([], failed_summary("".join(traceback.format_exception_only(error)).strip(), seconds))


DEVICES = "cpu, cuda, cuda:N or auto"  # the devices a run may ask for (--device)


def parse_device(requested: str) -> torch.device:
    """A device a run can use, as written ('cpu', 'cuda', 'cuda:1'), whether or not this machine has it;
    ValueError naming --device for anything else (a typo, or a device torch knows and lab2 does not run on)."""
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {requested}: not a device lab2 runs on; allowed: {DEVICES}")
    return device


def choose_device(requested: str = "auto") -> torch.device:
    """CUDA when present unless a device is forced ('cpu', 'cuda', 'cuda:1'); ValueError if this machine has not it."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = parse_device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {requested}: CUDA is not available on this machine; use cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"--device {requested}: this machine has {count} GPU{'' if count == 1 else 's'}, "
                         f"cuda:0 to cuda:{count - 1}")
    return device


def seed_everything(seed: int) -> None:
    """Seed weights, shuffling and dropout masks (torch seeds CPU and every GPU)."""
    torch.manual_seed(seed)


def _numerics(config: RunConfig, device: torch.device, step_mode: str) -> dict:
    """Set and describe how this run computes: TF32, bf16 autocast, memory format, step mode."""
    on_cuda = device.type == "cuda"
    tf32 = on_cuda and config.precision in ("tf32", "bf16")
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    return {
        "precision": config.precision if on_cuda else "fp32",
        "tf32": tf32,
        "autocast_bf16": on_cuda and config.precision == "bf16",
        "channels_last": uses_channels_last(config.model, device),
        "step_mode": step_mode,
    }


def evaluate(model, images, labels) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a model over a whole set, in eval mode (eagerly)."""
    return Evaluator(model, images, labels)()


# A run has diverged when an epoch's loss is not finite or above this: ten times the loss of an
# untrained model, which guesses the 10 classes uniformly (ln 10 = 2.30). Training that works
# never comes near it; a CNN at learning rate 1.0 reached 6,649 at chance accuracy.
DIVERGED_LOSS = 10 * math.log(10)


def divergence(epoch: int, train_loss: float, val_loss: float) -> str | None:
    """Why an epoch's losses show the run has diverged (None if they do not)."""
    for name, loss in (("training", train_loss), ("validation", val_loss)):
        if not math.isfinite(loss):
            return f"diverged at epoch {epoch}: {name} loss is {loss}"
        if loss > DIVERGED_LOSS:
            return (f"diverged at epoch {epoch}: {name} loss {loss:,.4g} is above {DIVERGED_LOSS:.1f} "
                    "(10 x an untrained model's ln 10)")
    return None


def fit(config: RunConfig, splits: cifar.Splits, device: torch.device, progress: bool = True,
        layers: str = "lab2", step_mode: str | None = None) -> RunResult:
    """Train one model on splits and return its history and summary.

    layers='torch' swaps in torch.nn's BatchNorm and Dropout: the reference implementation.
    step_mode: eager, cuda_graph or compiled (default: $LAB2_STEP_MODE, else cuda_graph on a GPU).
    """
    started = time.perf_counter()
    seed_everything(config.seed)
    mode = choose_step_mode(device, step_mode)
    numerics = _numerics(config, device, mode)
    channels_last = numerics["channels_last"]
    model = build_model(config, layers).to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer = make_optimizer(model, config.learning_rate, device, mode)
    autocast = autocast_context(device, numerics["autocast_bf16"])

    train_images, train_labels = splits.train_images.to(device), splits.train_labels.to(device)
    shuffle = torch.Generator(device=device).manual_seed(config.seed)
    # Whole batches only: every step sees batch_size images, and BatchNorm never sees one.
    num_batches = len(train_images) // config.batch_size
    train_step = TrainStep(model, optimizer, train_images, train_labels, config.batch_size, mode, autocast, channels_last)
    evaluate_val, evaluate_test = (
        Evaluator(model, images.to(device), labels.to(device), mode, autocast, channels_last)
        for images, labels in ((splits.val_images, splits.val_labels), (splits.test_images, splits.test_labels))
    )

    history, status, diverged = [], OK, None
    best = {"best_val_acc": -1.0, "best_epoch": 0, "test_loss": None, "test_acc": None}
    epochs = tqdm(range(1, config.num_epochs + 1), desc=f"{config.model} training", unit="epoch",
                  disable=not progress, mininterval=1.0)
    for epoch in epochs:
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_images), device=device, generator=shuffle)
        train_step.reset_sums()
        for step in range(num_batches):
            train_step(order[step * config.batch_size:(step + 1) * config.batch_size])
        train_loss = (train_step.loss_sum / num_batches).item()
        train_acc = (train_step.acc_sum / num_batches).item()
        val_loss, val_acc = evaluate_val()
        diverged = divergence(epoch, train_loss, val_loss)
        if diverged:
            status = DIVERGED
            break
        if val_acc >= best["best_val_acc"]:
            test_loss, test_acc = evaluate_test()
            best = {"best_val_acc": val_acc, "best_epoch": epoch, "test_loss": test_loss, "test_acc": test_acc}
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
               "val_acc": val_acc, "seconds": time.perf_counter() - epoch_started}
        history.append(row)
        epochs.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}", test_acc=f"{best['test_acc']:.3f}")
    epochs.close()

    last = history[-1] if history else {}
    summary = {key: last.get(key) for key in ("train_loss", "train_acc", "val_loss", "val_acc")}
    summary.update(best if history else {"best_val_acc": None, "best_epoch": None, "test_loss": None, "test_acc": None})
    summary.update(status=status, seconds=time.perf_counter() - started, error=diverged,
                   num_parameters=count_parameters(model))
    if diverged:
        summary["diverged_epoch"] = len(history) + 1  # its metrics are not kept: the epochs before it are
    return RunResult(history, summary, {"numerics": numerics})


def run(config: RunConfig, data_dir=None, device: str = "auto", progress: bool = True,
        layers: str = "lab2") -> RunResult:
    """One run as a pure function of its config (and the data it reads): load, split, fit."""
    torch_device = choose_device(device)
    dataset = fidelity.degrade(cifar.load_cifar10(data_dir), config.jpeg_quality, config.pixel_noise)
    splits = cifar.split(dataset, config.train_size, config.eval_size, config.batch_size)
    result = fit(config, splits, torch_device, progress, layers)
    result.environment = describe_environment(torch_device, dataset, result.environment["numerics"])
    return result


def git_commit() -> str:
    """The project's commit, with '-dirty' when the tree has uncommitted changes; 'unknown' outside git."""
    root = cifar.PROJECT_ROOT
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("LAB2_GIT_COMMIT", "unknown")
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def describe_environment(device: torch.device, dataset: cifar.Cifar10, numerics: dict) -> dict:
    """Versions, device and data provenance for env.json."""
    import numpy
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "data_source": dataset.source,
        "data_fingerprint": dataset.fingerprint,
        **({"fidelity": dataset.fidelity} if dataset.fidelity else {}),
        **numerics,
    }
