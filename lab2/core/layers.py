"""Hand-written BatchNorm and Dropout: the math as functions, the modules as thin wrappers.

They behave as their torch.nn twins do (outputs, gradients, running statistics), but are
built from tensor operations. Training-mode BatchNorm uses a custom autograd Function with
the closed-form backward, which makes two passes over memory where autograd through the
plain formula makes about ten; that is what keeps it close to torch's fused kernel.

BatchNorm also has two variants (config.BATCHNORM_VARIANTS), ways a student's hand-written
layer can differ from torch.nn's, which "Why the numbers differ" tests as explanations.
"""

import torch
from torch import nn

from lab2.core.config import BATCHNORM_VARIANTS, DROPOUT_RATES, is_dropout_rate

BATCHNORM_EPS = 1e-5  # torch.nn's default, added to the variance before the square root
BATCHNORM_MOMENTUM = 0.1  # weight of the newest batch in the running statistics


def _channel_view(vector: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-channel (C,) vector to broadcast over (N, C, ...)."""
    return vector.view((1, -1) + (1,) * (ndim - 2))


class _BatchNormTrain(torch.autograd.Function):
    """Training-mode batch normalisation with the closed-form backward.

    It keeps the centred input xc = x - mean for the backward pass (no more memory than
    keeping x) and reuses one buffer per pass, because on a CPU allocating and faulting in
    fresh large tensors costs as much as the arithmetic.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # statistics in fp32 under autocast
    def forward(ctx, x, weight, bias, eps):
        reduce_dims = [0] + list(range(2, x.dim()))
        # Two passes (mean, then the mean of squared deviations): torch.var_mean is several
        # times slower on a CPU, and E[x^2] - E[x]^2 loses precision when |mean| >> std.
        mean = x.mean(reduce_dims)
        x_centred = x - _channel_view(mean, x.dim())
        y = torch.mul(x_centred, x_centred)
        var = y.mean(reduce_dims)
        invstd = torch.rsqrt(var + eps)
        # y = x_centred * invstd * weight + bias, written over the squares' buffer.
        torch.addcmul(_channel_view(bias, x.dim()), x_centred, _channel_view(invstd * weight, x.dim()), out=y)
        ctx.save_for_backward(x_centred, weight, invstd)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_y, _grad_mean, _grad_var):
        x_centred, weight, invstd = ctx.saved_tensors
        ndim, reduce_dims = x_centred.dim(), [0] + list(range(2, x_centred.dim()))
        count = x_centred.numel() // x_centred.shape[1]
        sum_dy = grad_y.sum(reduce_dims)
        grad_x = torch.mul(grad_y, x_centred)
        sum_dy_xhat = invstd * grad_x.sum(reduce_dims)  # sum(dy * x_hat), x_hat = x_centred * invstd
        # dx = k * (dy - sum(dy) / M - x_hat * sum(dy * x_hat) / M) with k = weight * invstd,
        # rewritten as k * dy + a * x_centred + b: two multiply-add passes into one buffer.
        k = weight * invstd
        a = -k * invstd * sum_dy_xhat / count
        b = -k * sum_dy / count
        torch.addcmul(_channel_view(b, ndim), x_centred, _channel_view(a, ndim), out=grad_x)
        grad_x.addcmul_(grad_y, _channel_view(k, ndim))
        return grad_x, sum_dy_xhat, sum_dy, None


def _normalise_with(x, weight, bias, mean, var, eps):
    """gamma * (x - mean) / sqrt(var + eps) + beta with given statistics, folded into one scale and shift."""
    scale = weight * torch.rsqrt(var + eps)
    shift = bias - mean * scale
    return torch.addcmul(_channel_view(shift, x.dim()), x, _channel_view(scale, x.dim()))


def batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, variant="standard"):
    """Normalise x per channel (dim 1) with batch statistics in training, running ones in eval.

    Each training step moves the running statistics a fraction `momentum` towards the batch's. The
    variants change one thing each: `momentum_swapped` moves them 1 - momentum instead (they keep
    mostly the newest batch, which eval then uses); `running_in_training` updates them first and
    then normalises the training batch with them, as constants of the gradient.
    """
    if not training:
        return _normalise_with(x, weight, bias, running_mean, running_var, eps)
    count = x.numel() // x.shape[1]
    if count < 2:
        raise ValueError(f"BatchNorm needs more than 1 value per channel when training, got input {tuple(x.shape)}")
    if variant == "running_in_training":
        with torch.no_grad():
            reduce_dims = [0] + list(range(2, x.dim()))
            var, mean = torch.var_mean(x, reduce_dims, correction=1)
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var, momentum)
        # Copies: the buffers change in place at the next step, and autograd keeps what it multiplied.
        return _normalise_with(x, weight, bias, running_mean.clone(), running_var.clone(), eps)
    y, mean, var = _BatchNormTrain.apply(x, weight, bias, eps)
    newest = 1.0 - momentum if variant == "momentum_swapped" else momentum
    with torch.no_grad():
        # The running variance is the unbiased estimate, as in torch.nn.
        running_mean.lerp_(mean, newest)
        running_var.lerp_(var * (count / (count - 1)), newest)
    return y


class _BatchNorm(nn.Module):
    expected_dims: int

    def __init__(self, num_features: int, eps: float = BATCHNORM_EPS, momentum: float = BATCHNORM_MOMENTUM,
                 variant: str = "standard"):
        super().__init__()
        if variant not in BATCHNORM_VARIANTS:
            raise ValueError(f"BatchNorm variant must be one of {', '.join(BATCHNORM_VARIANTS)}, got {variant!r}")
        self.num_features, self.eps, self.momentum, self.variant = num_features, eps, momentum, variant
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        # Buffers, not parameters: saved in state_dict, moved by .to(), never seen by the optimiser.
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.expected_dims:
            raise ValueError(f"{type(self).__name__} expects {self.expected_dims}-D input, got {tuple(x.shape)}")
        if self.training:
            self.num_batches_tracked.add_(1)
        return batch_norm(
            x, self.weight, self.bias, self.running_mean, self.running_var,
            self.training, self.momentum, self.eps, self.variant,
        )

    def extra_repr(self) -> str:
        variant = "" if self.variant == "standard" else f", variant={self.variant}"
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}{variant}"


class BatchNorm1d(_BatchNorm):
    """BatchNorm over the batch of (N, C) inputs."""

    expected_dims = 2


class BatchNorm2d(_BatchNorm):
    """BatchNorm over the batch and spatial positions of (N, C, H, W) inputs."""

    expected_dims = 4


def _check_rate(p: float) -> float:
    if not is_dropout_rate(p):
        raise ValueError(f"dropout probability must be in {DROPOUT_RATES}, got {p}")
    return float(p)


def dropout(x: torch.Tensor, p: float, training: bool, mask_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Inverted dropout: zero units with probability p (in DROPOUT_RATES) and scale the kept ones by 1/(1-p).

    mask_shape lets whole channels share one draw (Dropout2d); by default every element
    is drawn independently.
    """
    _check_rate(p)
    if not training or p == 0.0:
        return x
    shape = x.shape if mask_shape is None else mask_shape
    # Drawn on x's device and dtype, and holding 1/(1-p) where a unit is kept, 0 where it
    # is dropped, so the forward and the backward each cost one multiply. Thresholding
    # uniform draws measured about 4x faster on a CPU than Tensor.bernoulli_.
    keep = torch.rand(shape, device=x.device, dtype=x.dtype).ge_(p).mul_(1.0 / (1.0 - p))
    return x * keep


class Dropout(nn.Module):
    """Element-wise inverted dropout."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_rate(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Channel-wise inverted dropout: each (sample, channel) map is kept or zeroed whole."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"Dropout2d expects (N, C, H, W) input, got {tuple(x.shape)}")
        return dropout(x, self.p, self.training, mask_shape=(x.shape[0], x.shape[1], 1, 1))
