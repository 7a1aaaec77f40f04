"""The training step and the evaluation pass: eager, replayed from a captured CUDA graph, or compiled.

On a GPU the report's models are small enough that a step is bound by kernel launches,
not arithmetic: an eager CNN step issues hundreds of launches for a few milliseconds of
work. A CUDA graph records the whole step once (gather the batch, forward, backward, the
fused Adam update, the metric sums) and replays it with one launch. The semantics stay
the eager loop's: dropout draws come from the graph-safe CUDA generator, so they differ
on every replay; BatchNorm's running statistics and Adam's step count are updated in
place once per replay; the batch is read through an index buffer filled before each
replay.

Once launches are gone, what remains is memory traffic: lab2's BatchNorm, ReLU, Dropout
and max-pool each read and write a whole activation, forward and backward. The compiled
mode hands the forward (batch gather, normalisation, the model, the loss and accuracy) to
`torch.compile`; AOTAutograd derives its backward, and inductor fuses both into a few
kernels each. The layers stay lab2's hand-written ones; only how they execute changes.
Adam and the metric sums stay as they are (a few fused kernels). On a GPU the compiled
step is then captured and replayed by the cuda_graph mode's code, so the compile also keeps
the single launch: one graph holds the whole step, Adam included, where
`mode="reduce-overhead"` would record the compiled forward and backward apart. Dropout masks inside a compiled graph are drawn by inductor's own
generator (seeded from torch's, new draws every step and every replay) rather than by
`torch.rand`: the same distribution, other numbers than an eager run with the same seed.
A compile costs tens of seconds per distinct model, paid once per process; inductor's
on-disk caches (`COMPILE_CACHE_ENV`) let the runs of one call share it.

The trainer (lab2.core.train) and the benchmark (lab2.tools.bench) both use these classes, so the
benchmark times the very step that training runs.
"""

import os
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from lab2.core import data as cifar

STEP_MODES = ("eager", "cuda_graph", "compiled")
STEP_MODE_ENV = "LAB2_STEP_MODE"  # auto (default), eager, cuda_graph or compiled: lets a device call choose
# Where inductor keeps compiled graphs and kernels; processes that share it compile a model once.
COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
# Every TrainStep and Evaluator compiles the same method for its own model, and dynamo counts
# each as a recompilation of that one function. Its default limit (8) is within reach of one
# process that builds a step per case (the step tests, gpu-check's stages); a run builds three.
COMPILES_PER_FUNCTION = 64
# Eager steps before a capture: cuDNN's autotuning and the allocator's first requests
# happen there, outside the graph. They are real steps of the first epoch.
WARMUP_STEPS = 3
# Images per chunk of an evaluation pass. Not a batch size: in eval mode nothing is computed across
# images (BatchNorm uses its running statistics), so a chunk changes only the speed, and no
# gradients are kept, so chunks larger than a training batch are cheaper.
EVAL_CHUNK_SIZE = {"cpu": 1000, "cuda": 2500}


def choose_step_mode(device: torch.device, requested: str | None = None) -> str:
    """cuda_graph on a GPU, eager on a CPU, unless `requested` or $LAB2_STEP_MODE says otherwise.

    compiled is never the default: a compile costs more than it saves in a short run, so it
    is chosen where measured (gpu-check) or asked for.
    """
    requested = requested or os.environ.get(STEP_MODE_ENV) or "auto"
    if requested == "auto":
        return "cuda_graph" if device.type == "cuda" else "eager"
    if requested not in STEP_MODES:
        raise ValueError(f"step mode: must be one of auto, {', '.join(STEP_MODES)}; got {requested!r}")
    if requested == "cuda_graph" and device.type != "cuda":
        raise ValueError(f"step mode cuda_graph needs a CUDA device, got {device}")
    return requested


def modes_on(device: torch.device) -> tuple[str, ...]:
    """The step modes that run on a device: every one on a GPU; a CPU has no CUDA graphs."""
    return STEP_MODES if device.type == "cuda" else tuple(mode for mode in STEP_MODES if mode != "cuda_graph")


def captures(mode: str, device: torch.device) -> bool:
    """Whether steps and evaluation are replayed from captured CUDA graphs: cuda_graph, and compiled on a GPU."""
    return device.type == "cuda" and mode in ("cuda_graph", "compiled")


def compile_fused(function):
    """`function` compiled by inductor, for fixed shapes.

    fullgraph: a construct dynamo cannot trace is an error, not a silent return to eager for
    part of the step; so is passing COMPILES_PER_FUNCTION.
    """
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, COMPILES_PER_FUNCTION)
    return torch.compile(function, fullgraph=True, dynamic=False)


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
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=on_cuda, capturable=captures(mode, device))


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
    batch, added up) and read once per epoch by the caller. In compiled mode the forward
    (and so its backward) is compiled on the first step.
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
        self.captured = captures(mode, device)
        self.forward = compile_fused(self._forward) if mode == "compiled" else self._forward
        self.graph = None
        self.eager_steps = 0

    def reset_sums(self) -> None:
        self.loss_sum.zero_()
        self.acc_sum.zero_()

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's loss and accuracy: the part of a step that a compile fuses."""
        labels = self.labels[self.index]
        with self.autocast:
            logits = self.model(model_input(self.images[self.index], self.channels_last))
        loss = F.cross_entropy(logits.float(), labels)
        return loss, (logits.detach().argmax(1) == labels).float().mean()

    def _step(self) -> None:
        loss, accuracy = self.forward()
        # set_to_none: in a capture, backward then writes fresh gradients in the graph's own
        # memory, which every replay overwrites rather than adds to.
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach()
        self.acc_sum += accuracy

    def __call__(self, index: torch.Tensor) -> None:
        """Train on the batch `index` selects: eagerly (compiled or not), or by replaying the captured step."""
        self.index.copy_(index)
        if self.graph is not None:
            self.graph.replay()
        elif not self.captured:
            self._step()
        else:
            _side_stream_warmup(self._step, 1)
            self.eager_steps += 1
            if self.eager_steps == WARMUP_STEPS:
                self._capture()

    def _capture(self) -> None:
        """Record one step. Nothing runs during capture, so no state changes and no sums grow.

        A compiled forward was compiled during the warm-up steps; the capture records its kernels.
        """
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self._step()


class Evaluator:
    """Mean cross-entropy and accuracy over a whole set in eval mode; captured on a GPU, compiled in compiled mode.

    The set is walked in chunks of EVAL_CHUNK_SIZE images through one static input buffer; a
    last, smaller chunk (only when the set size is not a multiple) runs eagerly, uncompiled: a
    compile for one chunk an epoch would cost more than it saves.
    """

    def __init__(self, model, images, labels, mode: str = "eager", autocast=nullcontext(),
                 channels_last: bool = False):
        self.model, self.images, self.labels = model, images, labels
        self.mode, self.autocast, self.channels_last = mode, autocast, channels_last
        device = images.device
        self.chunk_size = min(len(images), EVAL_CHUNK_SIZE[device.type])
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.chunk_images = torch.empty_like(images[:self.chunk_size])
        self.chunk_labels = torch.empty_like(labels[:self.chunk_size])
        self.captured = captures(mode, device)
        self.chunk_sums = compile_fused(self._sums) if mode == "compiled" else self._sums
        self.graph = None

    def _sums(self, images, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy and number of correct predictions of one chunk."""
        with self.autocast:
            logits = self.model(model_input(images, self.channels_last))
        return F.cross_entropy(logits.float(), labels, reduction="sum"), (logits.argmax(1) == labels).sum()

    def _add(self, images, labels, sums) -> None:
        loss_sum, correct = sums(images, labels)
        self.loss_sum += loss_sum
        self.correct += correct

    def _add_chunk(self) -> None:
        self._add(self.chunk_images, self.chunk_labels, self.chunk_sums)

    @torch.no_grad()
    def __call__(self) -> tuple[float, float]:
        self.model.eval()
        self.loss_sum.zero_()
        self.correct.zero_()
        whole = len(self.images) - len(self.images) % self.chunk_size
        for start in range(0, whole, self.chunk_size):
            self.chunk_images.copy_(self.images[start:start + self.chunk_size])
            self.chunk_labels.copy_(self.labels[start:start + self.chunk_size])
            if not self.captured:
                self._add_chunk()
            elif self.graph is not None:
                self.graph.replay()
            else:
                # The eager pass both warms up and counts; the capture that follows runs nothing.
                _side_stream_warmup(self._add_chunk, 1)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self._add_chunk()
        if whole < len(self.images):
            self._add(self.images[whole:], self.labels[whole:], self._sums)
        return (self.loss_sum / len(self.images)).item(), (self.correct / len(self.images)).item()
