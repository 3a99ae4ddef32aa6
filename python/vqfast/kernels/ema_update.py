"""EMA codebook update (Sonnet / taming EMAVectorQuantizer form) as segment sums + one fused EMA pass.

Matches `vqfast.ops.reference.ema_update_`:
    counts_j = #{i: idx_i = j},  sums_j = sum_{i: idx_i = j} z_i        (segment sums, no N x K one-hot)
    c <- decay c + (1 - decay) counts ;  A <- decay A + (1 - decay) sums
    n = sum_j c_j ;  c~_j = (c_j + eps) / (n + K eps) * n ;  W_j = A_j / c~_j

Kernels (all fp32 accumulation; EMA state fp32; W written in its own dtype):
  _ema_scatter_kernel   grid (cdiv(N, BLOCK_N), cdiv(D, BLOCK_D)): atomic adds of z rows and of 1.0
                        into stats[K, D+1] (column D holds the counts). Fast, float atomics make
                        the low bits order-dependent.
  _ema_segment_kernel   grid (K, cdiv(D, BLOCK_D)): deterministic mode; rows pre-sorted by code
                        (stable sort), each program sums its code's segment in a fixed order.
  _ema_total_kernel     grid (1,): n = decay * sum(c) + (1 - decay) * sum(counts) into a 1-element buffer.
  _ema_apply_kernel     grid (cdiv(K, BLOCK_K),): the EMA of c and A, smoothing and W (rows own all of D).
Between scatter and total the caller may all-reduce `stats` (ONE buffer: sums and counts) for DDP.
Limits: N < 2^31, K < 2^31, counts exact below 2^24 per code per call.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _ema_scatter_kernel(
    z_ptr,       # (N, D) fp32/fp16/bf16, row stride stride_zn
    idx_ptr,     # (N,) int64 code per row
    stats_ptr,   # (K, D+1) fp32 zero-initialised: [:, :D] sums, [:, D] counts
    N, D, stride_zn,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_d = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)                     # (BN,)
    rd = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)                     # (BD,)
    mask_n = rn < N
    mask = mask_n[:, None] & (rd < D)[None, :]
    code = tl.load(idx_ptr + rn, mask=mask_n, other=0).to(tl.int64)  # (BN,)
    zt = tl.load(z_ptr + rn.to(tl.int64)[:, None] * stride_zn + rd[None, :], mask=mask, other=0.0)
    row = stats_ptr + code * (D + 1)                                  # (BN,) row pointers
    tl.atomic_add(row[:, None] + rd[None, :], zt.to(tl.float32), mask=mask)
    if pid_d == 0:
        tl.atomic_add(row + D, tl.full((BLOCK_N,), 1.0, tl.float32), mask=mask_n)


@triton.jit
def _ema_segment_kernel(
    z_ptr,       # (N, D) rows, row stride stride_zn
    order_ptr,   # (N,) int64 row ids sorted by code (stable)
    start_ptr,   # (K+1,) int64 segment starts into order
    stats_ptr,   # (K, D+1) fp32 out (fully written)
    D, stride_zn,
    BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    code = tl.program_id(0)
    pid_d = tl.program_id(1)
    rd = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)                     # (BD,)
    md = rd < D
    start = tl.load(start_ptr + code)
    end = tl.load(start_ptr + code + 1)
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for r0 in range(start, end, BLOCK_R):
        rr = r0 + tl.arange(0, BLOCK_R)                               # (BR,)
        mr = rr < end
        rows = tl.load(order_ptr + rr, mask=mr, other=0)
        acc += tl.load(z_ptr + rows[:, None] * stride_zn + rd[None, :],
                       mask=mr[:, None] & md[None, :], other=0.0).to(tl.float32)
    out = stats_ptr + code.to(tl.int64) * (D + 1)
    tl.store(out + rd, tl.sum(acc, axis=0), mask=md)
    if pid_d == 0:
        tl.store(out + D, (end - start).to(tl.float32))


@triton.jit
def _ema_total_kernel(
    cluster_ptr,  # (K,) fp32 EMA counts before the update
    stats_ptr,    # (K, D+1) fp32
    total_ptr,    # (1,) fp32 out: n = sum of the updated EMA counts
    K, D, decay,
    BLOCK_K: tl.constexpr,
):
    acc_c = tl.zeros((BLOCK_K,), dtype=tl.float32)
    acc_n = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        mk = rk < K
        acc_c += tl.load(cluster_ptr + rk, mask=mk, other=0.0)
        acc_n += tl.load(stats_ptr + rk.to(tl.int64) * (D + 1) + D, mask=mk, other=0.0)
    total = decay * tl.sum(acc_c, axis=0) + (1.0 - decay) * tl.sum(acc_n, axis=0)
    tl.store(total_ptr, total)


@triton.jit
def _ema_apply_kernel(
    cluster_ptr,  # (K,) fp32 in/out EMA counts c
    avg_ptr,      # (K, D) fp32 in/out EMA sums A, row stride stride_a
    weight_ptr,   # (K, D) out codebook W (fp32/fp16/bf16), row stride stride_w
    stats_ptr,    # (K, D+1) fp32 batch counts and sums
    total_ptr,    # (1,) fp32 n
    K, D, stride_a, stride_w, decay, eps,
    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # One program owns BLOCK_K whole codebook rows (all of D), so reading c and writing it back
    # cannot race with another program.
    pid_k = tl.program_id(0)
    rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)                     # (BK,)
    mk = rk < K
    rk64 = rk.to(tl.int64)
    c_old = tl.load(cluster_ptr + rk, mask=mk, other=0.0)
    counts = tl.load(stats_ptr + rk64 * (D + 1) + D, mask=mk, other=0.0)
    c_new = decay * c_old + (1.0 - decay) * counts                   # (BK,)
    n = tl.load(total_ptr)
    smoothed = (c_new + eps) / (n + K * eps) * n                     # (BK,) Laplace smoothing
    for d0 in range(0, D, BLOCK_D):
        rd = d0 + tl.arange(0, BLOCK_D)                              # (BD,)
        mask = mk[:, None] & (rd < D)[None, :]
        a_old = tl.load(avg_ptr + rk64[:, None] * stride_a + rd[None, :], mask=mask, other=0.0)
        sums = tl.load(stats_ptr + rk64[:, None] * (D + 1) + rd[None, :], mask=mask, other=0.0)
        a_new = decay * a_old + (1.0 - decay) * sums                 # (BK, BD)
        tl.store(avg_ptr + rk64[:, None] * stride_a + rd[None, :], a_new, mask=mask)
        w = a_new / smoothed[:, None]
        tl.store(weight_ptr + rk64[:, None] * stride_w + rd[None, :], w.to(weight_ptr.dtype.element_ty),
                 mask=mask)
    tl.store(cluster_ptr + rk, c_new, mask=mk)


def _block_d(D: int) -> int:
    return max(16, min(128, triton.next_power_of_2(D)))


def ema_stats(z: torch.Tensor, idx: torch.Tensor, K: int, deterministic: bool) -> torch.Tensor:
    """Per-code sums and counts of z: fp32 (K, D+1), column D = counts."""
    N, D = z.shape
    bd = _block_d(D)
    if not deterministic:
        stats = torch.zeros(K, D + 1, dtype=torch.float32, device=z.device)
        bn = 16 if _INTERPRET else 64
        _ema_scatter_kernel[(triton.cdiv(N, bn), triton.cdiv(D, bd))](
            z, idx, stats, N, D, z.stride(0), BLOCK_N=bn, BLOCK_D=bd, num_warps=4)
        return stats
    stats = torch.empty(K, D + 1, dtype=torch.float32, device=z.device)
    sorted_idx, order = torch.sort(idx, stable=True)                 # (N,), (N,)
    starts = torch.searchsorted(sorted_idx, torch.arange(K + 1, device=z.device, dtype=sorted_idx.dtype))
    br = 8 if _INTERPRET else 32
    _ema_segment_kernel[(K, triton.cdiv(D, bd))](
        z, order, starts, stats, D, z.stride(0), BLOCK_R=br, BLOCK_D=bd, num_warps=4)
    return stats


def ema_apply(cluster_size, embed_avg, weight, stats, decay: float, eps: float) -> None:
    K, D = embed_avg.shape
    total = torch.empty(1, dtype=torch.float32, device=stats.device)
    _ema_total_kernel[(1,)](cluster_size, stats, total, K, D, decay,
                            BLOCK_K=256 if _INTERPRET else 1024, num_warps=4)
    bk = 16 if _INTERPRET else 8
    bd = _block_d(D)
    _ema_apply_kernel[(triton.cdiv(K, bk),)](
        cluster_size, embed_avg, weight, stats, total, K, D, embed_avg.stride(0), weight.stride(0),
        decay, eps, BLOCK_K=bk, BLOCK_D=bd, num_warps=4)
