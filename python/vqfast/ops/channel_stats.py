"""channel_stats: per-(sample, channel) mean and std with a fused backward (Triton + torch reference).

Reference semantics (SPEC §7.4):
- unbiased=True  -> QuantArt `calc_mean_std` (style loss): std = sqrt(var_unbiased + eps), divisor L-1.
- unbiased=False -> InstanceNorm/AdaIN statistics (StarGAN v2): divisor L.
Statistics are accumulated in fp32 (stable at mean 100 / std 0.01); outputs have x's dtype.
"""
from __future__ import annotations

import math

import torch

from vqfast.errors import InputError
from vqfast.ops._checks import check_finite as _check_finite
from vqfast.ops._checks import check_tensor
from vqfast.ops._dispatch import resolve_backend


def _validate(x, eps, unbiased, check_values):
    op = "channel_stats"
    check_tensor(op, "x", x, min_ndim=3)
    L = math.prod(x.shape[2:])
    need = 2 if unbiased else 1
    if L < need:
        raise InputError(f"channel_stats: x of shape {tuple(x.shape)} has {L} spatial position(s); "
                         f"unbiased={unbiased} needs at least {need}")
    if not float(eps) >= 0.0:
        raise InputError(f"channel_stats: eps={eps} must be >= 0")
    if check_values:
        _check_finite(op, x=x)
    return L


def channel_stats_reference(x: torch.Tensor, *, eps: float = 1e-5, unbiased: bool = True, backend: str = "auto",
                            check_values: bool = True):
    """Pure-PyTorch channel_stats (QuantArt calc_mean_std / AdaIN statistics via torch.var_mean in fp32).

    Same signature as `channel_stats`; `backend` is accepted for symmetry and ignored.
    """
    _validate(x, eps, unbiased, check_values)
    dims = tuple(range(2, x.dim()))
    var, mean = torch.var_mean(x.float(), dim=dims, correction=1 if unbiased else 0)  # (B, C) each
    std = torch.sqrt(var + eps)
    return mean.to(x.dtype), std.to(x.dtype)


class _ChannelStatsFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2d: torch.Tensor, eps: float, unbiased: bool):
        from vqfast.kernels.channel_stats import channel_stats_fwd

        mean, std = channel_stats_fwd(x2d, eps, unbiased)            # (R,), (R,) fp32
        ctx.save_for_backward(x2d, mean, std)
        ctx.unbiased = unbiased
        ctx.mark_non_differentiable()
        return mean, std

    @staticmethod
    def backward(ctx, g_mean, g_std):
        from vqfast.kernels.channel_stats import channel_stats_bwd

        x2d, mean, std = ctx.saved_tensors
        if g_mean is None:
            g_mean = torch.zeros_like(mean)
        if g_std is None:
            g_std = torch.zeros_like(std)
        dx = channel_stats_bwd(x2d, g_mean.float().contiguous(), g_std.float().contiguous(), mean, std,
                               ctx.unbiased)
        return dx, None, None


def channel_stats(x: torch.Tensor, *, eps: float = 1e-5, unbiased: bool = True, backend: str = "auto",
                  check_values: bool = True):
    """Mean and std over all dims after the first two of x[B, C, *S] -> (mean[B, C], std[B, C]).

    std = sqrt(var + eps), var unbiased (divisor L-1) or biased (divisor L), L = prod(S).
    Differentiable w.r.t. x (fused backward on the Triton path).
    check_values: reject non-finite x with an InputError (one host sync; hot paths turn it off).
    """
    L = _validate(x, eps, unbiased, check_values)
    be = resolve_backend(backend, x, op="channel_stats")
    if be == "torch":
        return channel_stats_reference(x, eps=eps, unbiased=unbiased, check_values=False)
    B, C = x.shape[:2]
    x2d = x.reshape(B * C, L)
    if not x2d.is_contiguous():
        x2d = x2d.contiguous()
    if B * C == 0:
        empty = x.new_empty(B, C)
        return empty, empty.clone()
    mean, std = _ChannelStatsFn.apply(x2d, float(eps), bool(unbiased))
    return mean.view(B, C).to(x.dtype), std.view(B, C).to(x.dtype)
