"""EMA codebook update (Sonnet / taming EMAVectorQuantizer form) as segment sums + one fused EMA pass.

Matches `vqfast.ops.reference.ema_update_`:
    counts_j = #{i: idx_i = j},  sums_j = sum_{i: idx_i = j} z_i        (segment sums, no N x K one-hot)
    c <- decay c + (1 - decay) counts ;  A <- decay A + (1 - decay) sums
    n = sum_j c_j ;  c~_j = (c_j + eps) / (n + K eps) * n ;  W_j = A_j / c~_j

Statistics layout: ONE flat fp32 buffer (what a DDP reduce_hook all-reduces), see `stats_layout`:
    stats[: K * Dp]          sums, row j at j * Dp, Dp = D rounded up to a multiple of 16 (64-B rows: the
                             scatter's atomics and the apply's loads are 128-bit; padding columns stay 0)
    stats[K * Dp : K * Dp + K]  counts (contiguous)

Kernels (all fp32 accumulation; EMA state fp32; W written in its own dtype):
  _ema_scatter_kernel   grid (cdiv(N, BLOCK_N), cdiv(D, BLOCK_D)): relaxed (unfenced), vectorised atomic adds
                        of z rows into the sums and of 1.0 into the counts. Float atomics make the low bits
                        order-dependent; relaxed ordering suffices because the kernel boundary orders the
                        scatter before the apply.
  _ema_segment_kernel   grid (K, cdiv(D, BLOCK_D)): deterministic mode; rows pre-sorted by code
                        (stable sort), each program sums its code's segment in a fixed order.
  _ema_total_kernel     grid (P <= 64,): partial_p = decay * sum(c) + (1 - decay) * sum(counts) over chunk p
                        (fixed order, no atomics, no single-program walk over K).
  _ema_apply_kernel     grid (cdiv(K, BLOCK_K),): n = sum of the P partials (same order in every program),
                        then the EMA of c and A, smoothing and W (rows own all of D).
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
    sums_ptr,    # (K, stride_s) fp32 zero-initialised sums, stride_s = round_up(D, 16)
    counts_ptr,  # (K,) fp32 zero-initialised counts
    N, D, stride_zn, stride_s,
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
    row = sums_ptr + code * stride_s                                  # (BN,) 64-B aligned row pointers
    tl.atomic_add(row[:, None] + rd[None, :], zt.to(tl.float32), mask=mask, sem="relaxed")
    if pid_d == 0:
        tl.atomic_add(counts_ptr + code, tl.full((BLOCK_N,), 1.0, tl.float32), mask=mask_n, sem="relaxed")


@triton.jit
def _ema_segment_kernel(
    z_ptr,       # (N, D) rows, row stride stride_zn
    order_ptr,   # (N,) int64 row ids sorted by code (stable)
    start_ptr,   # (K+1,) int64 segment starts into order
    sums_ptr,    # (K, stride_s) fp32 out (columns < D fully written)
    counts_ptr,  # (K,) fp32 out
    D, stride_zn, stride_s,
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
    tl.store(sums_ptr + code.to(tl.int64) * stride_s + rd, tl.sum(acc, axis=0), mask=md)
    if pid_d == 0:
        tl.store(counts_ptr + code, (end - start).to(tl.float32))


@triton.jit
def _ema_total_kernel(
    cluster_ptr,  # (K,) fp32 EMA counts before the update
    counts_ptr,   # (K,) fp32 batch counts
    partial_ptr,  # (P,) fp32 out: this program's share of n = sum of the updated EMA counts
    K, decay,
    CHUNK: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # Program p owns codes [p * CHUNK, (p + 1) * CHUNK): CHUNK / BLOCK_K iterations (1 for K <= 65536).
    pid = tl.program_id(0)
    acc_c = tl.zeros((BLOCK_K,), dtype=tl.float32)
    acc_n = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for k0 in range(0, CHUNK, BLOCK_K):
        rk = pid * CHUNK + k0 + tl.arange(0, BLOCK_K)
        mk = rk < K
        acc_c += tl.load(cluster_ptr + rk, mask=mk, other=0.0)
        acc_n += tl.load(counts_ptr + rk, mask=mk, other=0.0)
    tl.store(partial_ptr + pid, decay * tl.sum(acc_c, axis=0) + (1.0 - decay) * tl.sum(acc_n, axis=0))


@triton.jit
def _ema_apply_kernel(
    cluster_ptr,  # (K,) fp32 in/out EMA counts c
    avg_ptr,      # (K, D) fp32 in/out EMA sums A, row stride stride_a
    weight_ptr,   # (K, D) out codebook W (fp32/fp16/bf16), row stride stride_w
    sums_ptr,     # (K, stride_s) fp32 batch sums
    counts_ptr,   # (K,) fp32 batch counts
    partial_ptr,  # (P,) fp32 shares of n from _ema_total_kernel
    K, D, stride_a, stride_w, stride_s, P, decay, eps,
    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # One program owns BLOCK_K whole codebook rows (all of D), so reading c and writing it back
    # cannot race with another program.
    pid_k = tl.program_id(0)
    rp = tl.arange(0, BLOCK_P)
    n = tl.sum(tl.load(partial_ptr + rp, mask=rp < P, other=0.0), axis=0)  # same order in every program
    rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)                     # (BK,)
    mk = rk < K
    rk64 = rk.to(tl.int64)
    c_old = tl.load(cluster_ptr + rk, mask=mk, other=0.0)
    counts = tl.load(counts_ptr + rk, mask=mk, other=0.0)
    c_new = decay * c_old + (1.0 - decay) * counts                   # (BK,)
    smoothed = (c_new + eps) / (n + K * eps) * n                     # (BK,) Laplace smoothing
    for d0 in range(0, D, BLOCK_D):
        rd = d0 + tl.arange(0, BLOCK_D)                              # (BD,)
        mask = mk[:, None] & (rd < D)[None, :]
        a_old = tl.load(avg_ptr + rk64[:, None] * stride_a + rd[None, :], mask=mask, other=0.0)
        sums = tl.load(sums_ptr + rk64[:, None] * stride_s + rd[None, :], mask=mask, other=0.0)
        a_new = decay * a_old + (1.0 - decay) * sums                 # (BK, BD)
        tl.store(avg_ptr + rk64[:, None] * stride_a + rd[None, :], a_new, mask=mask)
        w = a_new / smoothed[:, None]
        tl.store(weight_ptr + rk64[:, None] * stride_w + rd[None, :], w.to(weight_ptr.dtype.element_ty),
                 mask=mask)
    tl.store(cluster_ptr + rk, c_new, mask=mk)


def _block_d(D: int) -> int:
    return max(16, min(128, triton.next_power_of_2(D)))


def _total_launch(K: int) -> tuple[int, int, int]:
    """(P, CHUNK, BLOCK_K) of the n reduction: at most 64 programs, one load per program up to K = 65536."""
    bk = 256 if _INTERPRET else 1024
    chunk = max(bk, triton.next_power_of_2(triton.cdiv(K, 64)))
    return triton.cdiv(K, chunk), chunk, bk


def ema_stats(z: torch.Tensor, idx: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor,
              deterministic: bool) -> None:
    """Per-code sums and counts of z into views of the caller's flat stats buffer.

    sums: fp32 (K, Dp) view (row stride Dp, a multiple of 16), counts: fp32 (K,) contiguous view; both zeroed
    for the atomic path; in deterministic mode columns < D and all counts are overwritten."""
    N, D = z.shape
    K, Dp = sums.shape
    bd = _block_d(D)
    if not deterministic:
        bn = 16 if _INTERPRET else 64
        _ema_scatter_kernel[(triton.cdiv(N, bn), triton.cdiv(D, bd))](
            z, idx, sums, counts, N, D, z.stride(0), Dp, BLOCK_N=bn, BLOCK_D=bd, num_warps=4)
        return
    sorted_idx, order = torch.sort(idx, stable=True)                 # (N,), (N,)
    starts = torch.searchsorted(sorted_idx, torch.arange(K + 1, device=z.device, dtype=sorted_idx.dtype))
    br = 8 if _INTERPRET else 32
    _ema_segment_kernel[(K, triton.cdiv(D, bd))](
        z, order, starts, sums, counts, D, z.stride(0), Dp, BLOCK_R=br, BLOCK_D=bd, num_warps=4)


def ema_apply(cluster_size, embed_avg, weight, sums, counts, decay: float, eps: float) -> None:
    """EMA of (cluster_size, embed_avg), smoothing and weight from the batch statistics (views as in ema_stats)."""
    K, D = embed_avg.shape
    P, chunk, bk = _total_launch(K)
    partial = torch.empty(P, dtype=torch.float32, device=sums.device)
    _ema_total_kernel[(P,)](cluster_size, counts, partial, K, decay, CHUNK=chunk, BLOCK_K=bk, num_warps=4)
    bk = 16 if _INTERPRET else 8
    bd = _block_d(D)
    _ema_apply_kernel[(triton.cdiv(K, bk),)](
        cluster_size, embed_avg, weight, sums, counts, partial, K, D, embed_avg.stride(0), weight.stride(0),
        sums.stride(0), P, decay, eps, BLOCK_K=bk, BLOCK_D=bd, BLOCK_P=max(16, triton.next_power_of_2(P)),
        num_warps=4)
