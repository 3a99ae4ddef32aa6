"""Per-(sample, channel) mean and std over the spatial positions, forward and backward.

Matches `vqfast.ops.reference.channel_stats` (QuantArt calc_mean_std when unbiased, AdaIN /
InstanceNorm statistics when biased), SPEC §7.4:
    mean_r = (1/L) sum_l x_rl ;  var_r = sum_l (x_rl - mean_r)^2 / (L - 1 if unbiased else L)
    std_r  = sqrt(var_r + eps)
    dx_rl  = g_mean_r / L + g_std_r * (x_rl - mean_r) / (std_r * (L - 1 if unbiased else L))
over rows r = (b, c) of x viewed as (R = B*C, L = prod(spatial)).

Forward: one program per row walks L in BLOCK_L chunks and merges each chunk's (count, mean, M2)
into the running triple with Chan's parallel update -- one read of x, fp32 throughout, stable at
mean 100 / std 0.01 where E[x^2] - E[x]^2 cancels catastrophically.
Backward: grid (R, cdiv(L, BLOCK_L)) -- fully parallel elementwise pass, one read of x, one write of dx.
Limits: L >= 1 (>= 2 when unbiased); R and L < 2^31; x rows contiguous.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _channel_stats_fwd_kernel(
    x_ptr,      # (R, L) fp32/fp16/bf16, contiguous rows
    mean_ptr,   # (R,) fp32 out
    std_ptr,    # (R,) fp32 out
    L, eps, denom,  # denom = L - 1 (unbiased) or L
    BLOCK_L: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = x_ptr + row * L
    offs = tl.arange(0, BLOCK_L)
    zero = tl.sum(tl.zeros((BLOCK_L,), dtype=tl.float32), axis=0)  # fp32 scalar tensors as loop carries
    n = zero
    mean = zero
    m2 = zero
    for l0 in range(0, L, BLOCK_L):
        mask = (l0 + offs) < L
        x = tl.load(base + l0 + offs, mask=mask, other=0.0).to(tl.float32)   # (BL,)
        nb = tl.minimum(L - l0, BLOCK_L).to(tl.float32)
        mb = tl.sum(x, axis=0) / nb
        dev = tl.where(mask, x - mb, 0.0)
        m2b = tl.sum(dev * dev, axis=0)
        nt = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / nt)
        m2 = m2 + m2b + delta * delta * (n * nb / nt)
        n = nt
    tl.store(mean_ptr + row, mean)
    tl.store(std_ptr + row, tl.sqrt(m2 / denom + eps))


@triton.jit
def _channel_stats_bwd_kernel(
    x_ptr,      # (R, L) input of the forward
    gmean_ptr,  # (R,) fp32 dLoss/dmean
    gstd_ptr,   # (R,) fp32 dLoss/dstd
    mean_ptr,   # (R,) fp32 saved
    std_ptr,    # (R,) fp32 saved
    dx_ptr,     # (R, L) out, dtype of x
    L, denom,
    BLOCK_L: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    mask = offs < L
    x = tl.load(x_ptr + row * L + offs, mask=mask, other=0.0).to(tl.float32)
    gm = tl.load(gmean_ptr + row)
    gs = tl.load(gstd_ptr + row)
    mu = tl.load(mean_ptr + row)
    sd = tl.load(std_ptr + row)
    dx = gm / L + (gs / (sd * denom)) * (x - mu)
    tl.store(dx_ptr + row * L + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _block(L: int, cap: int) -> int:
    return max(16, min(cap, triton.next_power_of_2(L)))


def channel_stats_fwd(x2d: torch.Tensor, eps: float, unbiased: bool):
    """x2d: (R, L) contiguous. Returns fp32 (mean[R], std[R])."""
    R, L = x2d.shape
    mean = torch.empty(R, dtype=torch.float32, device=x2d.device)
    std = torch.empty(R, dtype=torch.float32, device=x2d.device)
    bl = _block(L, 64 if _INTERPRET else 2048)
    _channel_stats_fwd_kernel[(R,)](x2d, mean, std, L, eps, float(L - 1 if unbiased else L),
                                    BLOCK_L=bl, num_warps=4 if bl <= 1024 else 8)
    return mean, std


def channel_stats_bwd(x2d, gmean, gstd, mean, std, unbiased: bool):
    R, L = x2d.shape
    dx = torch.empty_like(x2d)
    bl = _block(L, 64 if _INTERPRET else 1024)
    _channel_stats_bwd_kernel[(R, triton.cdiv(L, bl))](
        x2d, gmean, gstd, mean, std, dx, L, float(L - 1 if unbiased else L), BLOCK_L=bl, num_warps=4)
    return dx
