"""The training step and the evaluation pass, run eagerly or replayed from a captured CUDA graph.

On a GPU the report's models are small enough that a step is bound by kernel launches,
not arithmetic: an eager CNN step issues hundreds of launches for a few milliseconds of
work. A CUDA graph records the whole step once (gather the batch, forward, backward, the
fused Adam update, the metric sums) and replays it with one launch. The semantics stay
the eager loop's: dropout draws come from the graph-safe CUDA generator, so they differ
on every replay; BatchNorm's running statistics and Adam's step count are updated in
place once per replay; the batch is read through an index buffer filled before each
replay. CUDA graphs were chosen over `torch.compile(mode="reduce-overhead")` because
every run is a process of its own and a compile would be paid again by each of them,
while a capture costs one eager pass.

The trainer (lab2.train) and the benchmark (lab2.bench) both use these classes, so the
benchmark times the very step that training runs.
"""

import os
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from lab2 import data as cifar

STEP_MODES = ("eager", "cuda_graph")
STEP_MODE_ENV = "LAB2_STEP_MODE"  # auto (default), eager or cuda_graph: lets a device call fall back
# Eager steps before a capture: cuDNN's autotuning and the allocator's first requests
# happen there, outside the graph. They are real steps of the first epoch.
WARMUP_STEPS = 3
EVAL_BATCH_SIZE = {"cpu": 1000, "cuda": 2500}  # no gradients are kept, so larger batches are cheaper


def choose_step_mode(device: torch.device, requested: str | None = None) -> str:
    """cuda_graph on a GPU, eager on a CPU, unless `requested` or $LAB2_STEP_MODE says otherwise."""
    requested = requested or os.environ.get(STEP_MODE_ENV) or "auto"
    if requested == "auto":
        return "cuda_graph" if device.type == "cuda" else "eager"
    if requested not in STEP_MODES:
        raise ValueError(f"step mode: must be auto, {' or '.join(STEP_MODES)}, got {requested!r}")
    if requested == "cuda_graph" and device.type != "cuda":
        raise ValueError(f"step mode cuda_graph needs a CUDA device, got {device}")
    return requested


def uses_channels_last(model: str, device: torch.device) -> bool:
    """The CNN on a GPU runs NHWC, so cuDNN can pick its tensor-core kernels; CPUs keep NCHW."""
    return device.type == "cuda" and model == "cnn"


def autocast_context(device: torch.device, bf16: bool):
    """bf16 autocast, or nothing. Its weight cache is off: a captured graph must not rely on it."""
    if not bf16:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


def model_input(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """A batch of uint8 images as the model's float input, normalised on their device."""
    x = cifar.normalize(images)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def make_optimizer(model: torch.nn.Module, learning_rate: float, device: torch.device, mode: str):
    """Adam, fused on a GPU; capturable (its step count on the device) when the step is captured."""
    on_cuda = device.type == "cuda"
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=on_cuda, capturable=mode == "cuda_graph")


def _side_stream_warmup(function, count: int) -> None:
    """Run `function` `count` times on a side stream, as capture requires of its first calls."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(count):
            function()
    torch.cuda.current_stream().wait_stream(stream)


class TrainStep:
    """One optimizer step on the images at given indices of resident training data.

    Loss and accuracy are summed on the device (`loss_sum`, `acc_sum`: means of each
    batch, added up) and read once per epoch by the caller.
    """

    def __init__(self, model, optimizer, images, labels, batch_size: int, mode: str = "eager",
                 autocast=nullcontext(), channels_last: bool = False):
        self.model, self.optimizer, self.images, self.labels = model, optimizer, images, labels
        self.mode, self.autocast, self.channels_last = mode, autocast, channels_last
        device = images.device
        self.loss_sum = torch.zeros((), device=device)
        self.acc_sum = torch.zeros((), device=device)
        # The batch's indices live in one buffer so that a captured graph reads new ones each replay.
        self.index = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.graph = None
        self.eager_steps = 0

    def reset_sums(self) -> None:
        self.loss_sum.zero_()
        self.acc_sum.zero_()

    def _step(self) -> None:
        labels = self.labels[self.index]
        with self.autocast:
            logits = self.model(model_input(self.images[self.index], self.channels_last))
        loss = F.cross_entropy(logits.float(), labels)
        # set_to_none: in a capture, backward then writes fresh gradients in the graph's own
        # memory, which every replay overwrites rather than adds to.
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach()
        self.acc_sum += (logits.detach().argmax(1) == labels).float().mean()

    def __call__(self, index: torch.Tensor) -> None:
        """Train on the batch `index` selects: eagerly, or by replaying the captured step."""
        self.index.copy_(index)
        if self.graph is not None:
            self.graph.replay()
        elif self.mode == "eager":
            self._step()
        else:
            _side_stream_warmup(self._step, 1)
            self.eager_steps += 1
            if self.eager_steps == WARMUP_STEPS:
                self._capture()

    def _capture(self) -> None:
        """Record one step. Nothing runs during capture, so no state changes and no sums grow."""
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self._step()


class Evaluator:
    """Mean cross-entropy and accuracy over a whole set in eval mode; captured on a GPU.

    The set is walked in batches of EVAL_BATCH_SIZE through one static input buffer; a last,
    smaller batch (only when the set size is not a multiple) runs eagerly.
    """

    def __init__(self, model, images, labels, mode: str = "eager", autocast=nullcontext(),
                 channels_last: bool = False):
        self.model, self.images, self.labels = model, images, labels
        self.mode, self.autocast, self.channels_last = mode, autocast, channels_last
        device = images.device
        self.batch_size = min(len(images), EVAL_BATCH_SIZE[device.type])
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.batch_images = torch.empty_like(images[:self.batch_size])
        self.batch_labels = torch.empty_like(labels[:self.batch_size])
        self.graph = None

    def _add(self, images, labels) -> None:
        with self.autocast:
            logits = self.model(model_input(images, self.channels_last))
        self.loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        self.correct += (logits.argmax(1) == labels).sum()

    def _add_batch(self) -> None:
        self._add(self.batch_images, self.batch_labels)

    @torch.no_grad()
    def __call__(self) -> tuple[float, float]:
        self.model.eval()
        self.loss_sum.zero_()
        self.correct.zero_()
        whole = len(self.images) - len(self.images) % self.batch_size
        for start in range(0, whole, self.batch_size):
            self.batch_images.copy_(self.images[start:start + self.batch_size])
            self.batch_labels.copy_(self.labels[start:start + self.batch_size])
            if self.mode == "eager":
                self._add_batch()
            elif self.graph is not None:
                self.graph.replay()
            else:
                # The eager pass both warms up and counts; the capture that follows runs nothing.
                _side_stream_warmup(self._add_batch, 1)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self._add_batch()
        if whole < len(self.images):
            self._add(self.images[whole:], self.labels[whole:])
        return (self.loss_sum / len(self.images)).item(), (self.correct / len(self.images)).item()
