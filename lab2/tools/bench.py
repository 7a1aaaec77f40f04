"""Training-step throughput of lab2's layers against torch.nn's, in the same models.

Each measurement is a block of the trainer's own steps (lab2.core.step.TrainStep, in one step
mode: eager, replayed from a CUDA graph, or compiled) on random uint8 images already on
the device; both implementations run in the same mode, so a compile fuses torch.nn's
layers as it fuses lab2's. They alternate block by block so that drifts in clock speed or
load hit both alike, and the median over blocks is reported. Compiling and capturing
happen in the warm-up, outside the timed blocks.
"""

import dataclasses
import statistics
import time
from dataclasses import dataclass

import torch

from lab2.core.config import RunConfig
from lab2.core.models import build_model
from lab2.core.step import STEP_MODES, WARMUP_STEPS, TrainStep, make_optimizer, uses_channels_last
from lab2.runs.grid import baseline_config


@dataclass
class BenchResult:
    model: str
    channels: int
    batch_size: int
    device: str
    step_mode: str
    lab2_images_per_s: float
    torch_images_per_s: float

    @property
    def ratio(self) -> float:
        return self.lab2_images_per_s / self.torch_images_per_s


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(config: RunConfig, layers: str, device: torch.device, images, labels, mode: str):
    """A closure that runs `count` training steps of one implementation, as training runs them."""
    torch.manual_seed(0)
    channels_last = uses_channels_last(config.model, device)
    model = build_model(config, layers).to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    model.train()
    train_step = TrainStep(model, make_optimizer(model, config.learning_rate, device, mode), images, labels,
                           config.batch_size, mode, channels_last=channels_last)
    index = torch.arange(config.batch_size, device=device)

    def steps(count: int) -> None:
        for _ in range(count):
            train_step(index)
        _synchronize(device)

    return steps


def random_batch(batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-shaped uint8 images and labels, the same on every call."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, generator=generator).to(device)
    return images, torch.randint(0, 10, (batch_size,), generator=generator).to(device)


def measure(config: RunConfig, device: torch.device, repeats: int, steps_per_block: int,
            mode: str = "eager") -> BenchResult:
    """Median images/s over `repeats` alternating blocks of each implementation."""
    images, labels = random_batch(config.batch_size, device)
    trainers = {layers: make_trainer(config, layers, device, images, labels, mode) for layers in ("lab2", "torch")}
    for steps in trainers.values():  # warm-up: allocator, cuDNN autotuning, compile, capture, first-call costs
        steps(max(WARMUP_STEPS + 1, steps_per_block // 2))
    rates = {layers: [] for layers in trainers}
    for _ in range(repeats):
        for layers, steps in trainers.items():
            started = time.perf_counter()
            steps(steps_per_block)
            rates[layers].append(steps_per_block * config.batch_size / (time.perf_counter() - started))
    return BenchResult(config.model, config.channels, config.batch_size, str(device), mode,
                       statistics.median(rates["lab2"]), statistics.median(rates["torch"]))


def run_bench(models, device: torch.device, channels: int, repeats: int, steps_per_block: int,
              dropout_rate: float = 0.5, modes=None) -> list[BenchResult]:
    """Benchmark each model's best setting (params/: its baseline) with `channels` in each step mode.

    Default: every mode on a GPU; eager only on a CPU, where a compile takes longer than the
    bench. Dropout is on, so both hand-written layers are timed.
    """
    modes = modes or (STEP_MODES if device.type == "cuda" else ("eager",))
    results = []
    for model in models:
        config = dataclasses.replace(baseline_config(model), channels=channels, dropout_rate=dropout_rate)
        results += [measure(config, device, repeats, steps_per_block, mode) for mode in modes]
    return results


def format_results(results: list[BenchResult]) -> str:
    lines = [f"{'model':<5} {'C':>4} {'batch':>5} {'device':<7} {'step':<10} {'lab2 img/s':>11} {'torch img/s':>12} "
             f"{'ratio':>6}"]
    for r in results:
        lines.append(f"{r.model:<5} {r.channels if r.model == 'cnn' else '-':>4} {r.batch_size:>5} {r.device:<7} "
                     f"{r.step_mode:<10} "
                     f"{r.lab2_images_per_s:>11.0f} {r.torch_images_per_s:>12.0f} {r.ratio:>6.2f}")
    return "\n".join(lines)
