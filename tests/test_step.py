"""The training step and evaluation in each step mode against eager ones, on each device a mode runs on.

Eager is the reference. `gpu-check` runs these tests per mode before it measures anything
(`-k "<device> and <mode>"`, slow ones included): a mode whose tests fail is neither
measured nor used by the sweeps. On a CPU only the compiled mode runs (inductor generates
C++ there); its compiles take tens of seconds on a 2-core machine, so most are marked slow.
"""

import pytest
import torch

from lab2.core import layers
from lab2.core.config import MODELS, RunConfig
from lab2.core.models import build_model
from lab2.core.step import (EVAL_CHUNK_SIZE, STEP_MODE_ENV, WARMUP_STEPS, Evaluator, TrainStep, choose_step_mode,
                            compile_fused, make_optimizer, model_input)
from lab2.core.train import evaluate, fit

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ADAM_EPS_FOR_COMPARISONS = 1e-2  # far above a gradient's rounding noise (up to about 1e-6 here)


def modes(cpu_is_slow: bool = True) -> list:
    """(device, mode) cases, with ids gpu-check selects by: every mode but eager, where it runs."""
    return [
        pytest.param("cpu", "compiled", id="cpu-compiled", marks=[pytest.mark.slow] if cpu_is_slow else []),
        pytest.param("cuda", "cuda_graph", id="cuda-cuda_graph", marks=needs_cuda),
        pytest.param("cuda", "compiled", id="cuda-compiled", marks=needs_cuda),
    ]


def small(**fields) -> RunConfig:
    values = dict(model="cnn", hidden=64, channels=8, batch_size=50, num_epochs=2, dropout_rate=0.0)
    return RunConfig(**{**values, **fields})


def test_step_mode_is_chosen_by_device_env_or_request(monkeypatch):
    monkeypatch.delenv(STEP_MODE_ENV, raising=False)
    assert choose_step_mode(CPU) == "eager"
    assert choose_step_mode(torch.device("cuda")) == "cuda_graph"
    monkeypatch.setenv(STEP_MODE_ENV, "eager")
    assert choose_step_mode(torch.device("cuda")) == "eager"
    assert choose_step_mode(torch.device("cuda"), "cuda_graph") == "cuda_graph"  # an explicit request wins
    monkeypatch.setenv(STEP_MODE_ENV, "compiled")
    assert choose_step_mode(CPU) == "compiled"  # inductor compiles for a CPU too
    with pytest.raises(ValueError, match="must be one of auto, eager, cuda_graph, compiled; got 'graph'"):
        choose_step_mode(CPU, "graph")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        choose_step_mode(CPU, "cuda_graph")


def test_a_run_records_its_step_mode(splits, monkeypatch):
    monkeypatch.delenv(STEP_MODE_ENV, raising=False)
    assert fit(small(num_epochs=1), splits, CPU, progress=False).environment["numerics"]["step_mode"] == "eager"


def test_evaluation_in_chunks_equals_one_pass(splits, monkeypatch):
    monkeypatch.setitem(EVAL_CHUNK_SIZE, "cpu", 100)
    torch.manual_seed(0)
    model = build_model(small()).eval()
    images, labels = splits.val_images[:250], splits.val_labels[:250]  # two whole chunks and a remainder
    assert Evaluator(model, images, labels).chunk_size == 100
    with torch.no_grad():
        logits = model(model_input(images))
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert evaluate(model, images, labels) == pytest.approx((loss, accuracy), rel=1e-5)


@pytest.mark.parametrize("kind", ["1d", "2d"])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_compiled_dropout_draws_fresh_masks_of_the_right_rate(device, kind):
    """The hand-written dropout as inductor compiles it: its own generator, the same distribution."""
    rate, shape = 0.3, (64, 32, 6, 6)
    mask_shape = (64, 32, 1, 1) if kind == "2d" else None
    drop = compile_fused(lambda x: layers.dropout(x, rate, True, mask_shape))
    ones = torch.ones(shape, device=device)
    torch.manual_seed(0)
    first, second = drop(ones), drop(ones)
    torch.manual_seed(0)
    again = drop(ones)
    for out in (first, second):
        assert out.unique().tolist() == pytest.approx([0.0, 1 / (1 - rate)])
        assert (out > 0).float().mean().item() == pytest.approx(1 - rate, abs=0.05)
        if kind == "2d":  # whole channels kept or dropped
            assert torch.equal(out.amax((2, 3)), out.amin((2, 3)))
    assert not torch.equal(first, second)  # a new mask every call
    assert torch.equal(first, again)  # drawn from torch's seed: runs stay reproducible


def _steps(config, splits, device, mode, count, layers="lab2", index=None):
    """Per-step losses, the first step's gradients, and the model and step afterwards."""
    device = torch.device(device)
    torch.manual_seed(config.seed)
    model = build_model(config, layers).to(device).train()
    images, labels = splits.train_images.to(device), splits.train_labels.to(device)
    optimizer = make_optimizer(model, config.learning_rate, device, mode)
    # Adam divides each gradient by its running size plus eps (1e-8), so where a gradient is
    # rounding noise (a bias before BatchNorm, whose exact gradient is zero; a weight that
    # hardly matters) it steps by the whole learning rate in the noise's direction, and two
    # correct loops that round differently drift apart there. With an eps far above that
    # noise, a small gradient makes a proportionally small step: rounding differences stay
    # rounding-sized, a wrong gradient still shows, and every parameter can be compared.
    for group in optimizer.param_groups:
        group["eps"] = ADAM_EPS_FOR_COMPARISONS
    train_step = TrainStep(model, optimizer, images, labels, config.batch_size, mode)
    losses, first_gradients = [], None
    for step in range(count):
        before = train_step.loss_sum.item()
        batch = index if index is not None else torch.arange(step * config.batch_size, (step + 1) * config.batch_size)
        train_step(batch.to(device))
        losses.append(train_step.loss_sum.item() - before)
        if first_gradients is None:
            first_gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    return losses, first_gradients, model, train_step


@pytest.fixture
def exact_arithmetic():
    """fp32 arithmetic and deterministic cuDNN algorithms, so that two loops can agree to rounding.

    cuDNN's default choice for a convolution's backward may add with atomics in any order;
    Adam then turns those last-bit differences of tiny gradients into visible ones within a
    few steps (the first H200 check failed this way for the CNN while the MLP agreed).
    A compiled graph draws its dropout masks with inductor's generator; to compare it with
    eager on the same masks, `fallback_random` makes it call torch's (the tests of fresh
    masks run without it).
    """
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    with torch._inductor.config.patch(fallback_random=True):
        yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


def step_cases() -> list:
    """(device, mode, model, layers) for each mode case; on a CPU only the MLP with lab2's layers compiles quickly."""
    return [pytest.param(*case.values, model, layers, id=f"{case.id}-{model}-{layers}", marks=case.marks)
            for model in MODELS for layers in ("lab2", "torch")
            for case in modes(cpu_is_slow=(model, layers) != ("mlp", "lab2"))]


@pytest.mark.parametrize("device,mode,model,layers", step_cases())
def test_steps_reproduce_eager_steps(splits, device, mode, model, layers, exact_arithmetic):
    # Dropout on, through BatchNorm, so that both hand-written layers and their masks are compared;
    # torch.nn's dropout draws its masks another way than torch.rand, which fallback_random calls.
    config = small(model=model, dropout_rate=0.3 if layers == "lab2" else 0.0)
    count = WARMUP_STEPS + 5  # warm-up, capture, then replays, where a mode captures
    eager, eager_gradients, eager_model, _ = _steps(config, splits, device, "eager", count, layers)
    other, other_gradients, other_model, train_step = _steps(config, splits, device, mode, count, layers)
    assert (train_step.graph is not None) == (device == "cuda")
    torch.testing.assert_close(other, eager, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(other_gradients, eager_gradients, rtol=1e-4, atol=1e-6)
    # Parameters after every step, and BatchNorm's running statistics moved once per step, as in eager mode.
    torch.testing.assert_close(other_model.state_dict(), eager_model.state_dict(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device,mode", modes(cpu_is_slow=False))
def test_dropout_draws_new_masks_every_step(splits, device, mode):
    # Adam at a tiny rate barely moves the weights, so on one fixed batch a change of loss
    # between steps (replays, where captured) comes from new dropout masks.
    config = small(model="mlp", dropout_rate=0.5, learning_rate=1e-9)
    losses, _, _, _ = _steps(config, splits, device, mode, WARMUP_STEPS + 4, index=torch.arange(config.batch_size))
    assert len(set(round(loss, 6) for loss in losses)) == len(losses)


@pytest.mark.parametrize("device,mode", modes())
def test_fit_matches_eager_fit(splits, device, mode):
    config = small(precision="fp32")
    eager = fit(config, splits, torch.device(device), progress=False, step_mode="eager")
    other = fit(config, splits, torch.device(device), progress=False, step_mode=mode)
    assert other.environment["numerics"]["step_mode"] == mode
    assert [row["epoch"] for row in other.history] == [row["epoch"] for row in eager.history]
    for ours, theirs in zip(other.history, eager.history):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-3)
        assert ours["val_acc"] == pytest.approx(theirs["val_acc"], abs=0.02)
    assert other.summary["test_acc"] == pytest.approx(eager.summary["test_acc"], abs=0.02)
