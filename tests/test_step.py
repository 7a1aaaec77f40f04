"""The training step and evaluation: eager on a CPU; on a GPU, the captured graphs against eager.

The CUDA tests are what `gpu-check` runs before its sweep: a capture that does not
reproduce the eager step makes the sweep fall back to eager steps.
"""

import pytest
import torch

from lab2.config import RunConfig
from lab2.models import build_model
from lab2.step import STEP_MODE_ENV, WARMUP_STEPS, TrainStep, choose_step_mode, make_optimizer, model_input
from lab2.train import evaluate, fit

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


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
    with pytest.raises(ValueError, match="must be auto, eager or cuda_graph, got 'graph'"):
        choose_step_mode(CPU, "graph")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        choose_step_mode(CPU, "cuda_graph")


def test_a_run_records_its_step_mode(splits, monkeypatch):
    monkeypatch.delenv(STEP_MODE_ENV, raising=False)
    assert fit(small(num_epochs=1), splits, CPU, progress=False).environment["numerics"]["step_mode"] == "eager"


def test_evaluation_in_batches_equals_one_pass(splits):
    torch.manual_seed(0)
    model = build_model(small()).eval()
    images, labels = splits.val_images[:1030], splits.val_labels[:1030]  # one full batch and a remainder
    with torch.no_grad():
        logits = model(model_input(images))
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert evaluate(model, images, labels) == pytest.approx((loss, accuracy), rel=1e-5)


def _steps(config, splits, mode, count, layers="lab2", index=None):
    """Losses of the first `count` steps, and the model afterwards."""
    device = torch.device("cuda")
    torch.manual_seed(config.seed)
    model = build_model(config, layers).to(device).train()
    images, labels = splits.train_images.to(device), splits.train_labels.to(device)
    train_step = TrainStep(model, make_optimizer(model, config.learning_rate, device, mode), images, labels,
                           config.batch_size, mode)
    losses = []
    for step in range(count):
        before = train_step.loss_sum.item()
        batch = index if index is not None else torch.arange(step * config.batch_size, (step + 1) * config.batch_size)
        train_step(batch.to(device))
        losses.append(train_step.loss_sum.item() - before)
    return losses, model, train_step


@pytest.fixture
def exact_cuda():
    """fp32 arithmetic and deterministic cuDNN algorithms, so that two loops can agree to rounding.

    cuDNN's default choice for a convolution's backward may add with atomics in any order;
    Adam then turns those last-bit differences of tiny gradients into visible ones within a
    few steps (the first H200 check failed this way for the CNN while the MLP agreed).
    """
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


@needs_cuda
@pytest.mark.parametrize("layers", ["lab2", "torch"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_captured_steps_reproduce_eager_steps(splits, model, layers, exact_cuda):
    count = WARMUP_STEPS + 5  # warm-up, capture, then replays
    eager, eager_model, _ = _steps(small(model=model), splits, "eager", count, layers)
    captured, captured_model, train_step = _steps(small(model=model), splits, "cuda_graph", count, layers)
    assert train_step.graph is not None
    torch.testing.assert_close(captured, eager, rtol=1e-4, atol=1e-5)
    # BatchNorm's running statistics moved once per step, as in eager mode.
    for ours, theirs in zip(captured_model.buffers(), eager_model.buffers()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@needs_cuda
def test_captured_dropout_draws_new_masks_every_replay(splits):
    # Adam at a tiny rate barely moves the weights, so on one fixed batch a change of loss
    # between replays comes from new dropout masks.
    config = small(model="mlp", dropout_rate=0.5, learning_rate=1e-9)
    losses, _, train_step = _steps(config, splits, "cuda_graph", WARMUP_STEPS + 4,
                                   index=torch.arange(config.batch_size))
    replays = losses[WARMUP_STEPS:]
    assert train_step.graph is not None
    assert len(set(round(loss, 6) for loss in replays)) == len(replays)


@needs_cuda
def test_captured_fit_matches_eager_fit(splits):
    config = small(precision="fp32")
    eager = fit(config, splits, torch.device("cuda"), progress=False, step_mode="eager")
    captured = fit(config, splits, torch.device("cuda"), progress=False, step_mode="cuda_graph")
    assert captured.environment["numerics"]["step_mode"] == "cuda_graph"
    for ours, theirs in zip(captured.history, eager.history):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-3)
        assert ours["val_acc"] == pytest.approx(theirs["val_acc"], abs=0.02)
