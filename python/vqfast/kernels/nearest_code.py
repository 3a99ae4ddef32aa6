"""Fused nearest-codebook lookup: squared-L2 distance + running argmin, never materialising N x K.

Computes, for every row z_i of z[N, D] and the codebook E[K, D]:
    k_i    = argmin_j ( ||E_j||^2 - 2 z_i . E_j )         (ties -> lowest j, as torch.argmin)
    dist_i = max(||z_i||^2 + ||E_{k_i}||^2 - 2 z_i . E_{k_i}, 0)
Matches `vqfast.ops.reference.nearest_code` (taming VectorQuantizer2's expanded distance + argmin).

Tiling: one program owns BLOCK_N rows of z and walks the codebook in BLOCK_K tiles; each tile's
(BLOCK_N, BLOCK_K) dot product is accumulated over D in BLOCK_D chunks on tensor cores (or FMA for
precision="ieee"), ||E_j||^2 is folded into the tile epilogue (loaded when precomputed, else
accumulated from the same codebook tiles), and a running (min, argmin) per row replaces the N x K
matrix. For D <= 128 the z tile is loaded once and stays resident across the codebook walk; larger D
is walked in 64-wide chunks. Extra memory: O(N) outputs only. Limits: any N, K >= 1, D >= 1, K < 2^31.

Precision (accumulation is always fp32; ||z||^2 and ||E||^2 always in fp32 from the input values):
    PRECISION=0 "ieee": tiles cast to fp32, tl.dot(input_precision="ieee") -> exact fp32 products.
    PRECISION=1 "tf32": fp32 tiles on TF32 tensor cores (10-bit mantissa inputs).
    PRECISION=2 "bf16": tiles cast to bf16 (8-bit mantissa) on bf16 tensor cores.
    PRECISION=3 (internal): fp16/bf16 inputs in "tf32"/"bf16" mode go to the tensor cores in their own
    dtype; their products are exact in fp32, so the result is as good as "ieee" up to summation order.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

PRECISIONS = {"ieee": 0, "tf32": 1, "bf16": 2}


def _configs():
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        # The interpreter runs on numpy: one small config keeps CPU tests quick and exercises masking.
        return [triton.Config({"BLOCK_N": 16, "BLOCK_K": 16}, num_warps=1)]
    return [
        triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
        for bn, bk, w, s in [
            (128, 128, 8, 3), (128, 64, 4, 4), (64, 128, 4, 4), (64, 64, 4, 3),
            (128, 128, 4, 3), (256, 64, 8, 3), (32, 64, 2, 3),
        ]
    ]


@triton.jit
def _tile_dot(zt, et, acc, PRECISION: tl.constexpr, INTERPRET: tl.constexpr):
    """acc += zt (BN, BD) @ et (BK, BD)^T in the requested precision, fp32 accumulation."""
    if PRECISION == 0:
        acc = tl.dot(zt.to(tl.float32), tl.trans(et.to(tl.float32)), acc, input_precision="ieee")
    elif PRECISION == 1:
        acc = tl.dot(zt, tl.trans(et), acc, input_precision="tf32")
    elif INTERPRET:
        # Triton's CPU interpreter mis-multiplies bf16 operands: emulate the tensor-core math
        # (bf16-rounded inputs, exact products, fp32 accumulation) with fp32 operands instead.
        if PRECISION == 2:
            zt = zt.to(tl.bfloat16)
            et = et.to(tl.bfloat16)
        acc = tl.dot(zt.to(tl.float32), tl.trans(et.to(tl.float32)), acc, input_precision="ieee")
    elif PRECISION == 2:
        acc = tl.dot(zt.to(tl.bfloat16), tl.trans(et.to(tl.bfloat16)), acc)
    else:  # fp16/bf16 inputs in a fast mode: their own tensor-core dtype, exact products
        acc = tl.dot(zt, tl.trans(et), acc)
    return acc


@triton.autotune(configs=_configs(), key=["K", "D", "PRECISION", "HAS_SQNORM"],
                 reset_to_zero=["counts_ptr"])
@triton.heuristics({
    # D <= 128: one chunk, the z tile is loaded once and reused for every codebook tile (ONE_D);
    # larger D: 64-wide chunks re-read from L1/L2 per codebook tile.
    "BLOCK_D": lambda a: max(16, triton.next_power_of_2(a["D"])) if a["D"] <= 128 else 64,
    "ONE_D": lambda a: a["D"] <= 128,
})
@triton.jit
def _nearest_code_fwd_kernel(
    z_ptr,        # (N, D) fp32/fp16/bf16, row stride stride_zn, unit column stride
    cb_ptr,       # (K, D) same dtype as z, row stride stride_ck, unit column stride
    sqnorm_ptr,   # (K,) fp32 ||E_j||^2, read only when HAS_SQNORM
    idx_ptr,      # (N,) int64 out
    dist_ptr,     # (N,) fp32 out
    counts_ptr,   # (K,) fp32 zero-initialised out: rows assigned to each code, when HAS_COUNTS
    N, K, D,
    stride_zn, stride_ck,
    HAS_SQNORM: tl.constexpr,
    HAS_COUNTS: tl.constexpr,
    PRECISION: tl.constexpr,
    INTERPRET: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ONE_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)                      # (BN,)
    mask_n = rn < N
    rn64 = rn.to(tl.int64)
    rd = tl.arange(0, BLOCK_D)                                     # (BD,)

    # ||z_i||^2 in fp32 (only needed for the returned distance)
    zsq = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        md = (d0 + rd) < D
        zt = tl.load(z_ptr + rn64[:, None] * stride_zn + (d0 + rd)[None, :],
                     mask=mask_n[:, None] & md[None, :], other=0.0).to(tl.float32)  # (BN, BD)
        zsq += tl.sum(zt * zt, axis=1)

    if ONE_D:
        z_one = tl.load(z_ptr + rn64[:, None] * stride_zn + rd[None, :],
                        mask=mask_n[:, None] & (rd < D)[None, :], other=0.0)       # (BN, BD) kept
    else:
        z_one = tl.zeros((BLOCK_N, BLOCK_D), dtype=z_ptr.dtype.element_ty)        # unused
    best = tl.full((BLOCK_N,), float("inf"), dtype=tl.float32)     # running min of ||E||^2 - 2 z.E
    best_idx = tl.zeros((BLOCK_N,), dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)                             # (BK,)
        mask_k = rk < K
        rk64 = rk.to(tl.int64)
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)        # z . E^T for this tile
        esq = tl.zeros((BLOCK_K,), dtype=tl.float32)
        if ONE_D:
            et = tl.load(cb_ptr + rk64[:, None] * stride_ck + rd[None, :],
                         mask=mask_k[:, None] & (rd < D)[None, :], other=0.0)          # (BK, BD)
            if not HAS_SQNORM:
                ef = et.to(tl.float32)
                esq += tl.sum(ef * ef, axis=1)
            acc = _tile_dot(z_one, et, acc, PRECISION, INTERPRET)
        else:
            for d0 in range(0, D, BLOCK_D):
                md = (d0 + rd) < D
                zt = tl.load(z_ptr + rn64[:, None] * stride_zn + (d0 + rd)[None, :],
                             mask=mask_n[:, None] & md[None, :], other=0.0)         # (BN, BD)
                et = tl.load(cb_ptr + rk64[:, None] * stride_ck + (d0 + rd)[None, :],
                             mask=mask_k[:, None] & md[None, :], other=0.0)         # (BK, BD)
                if not HAS_SQNORM:
                    ef = et.to(tl.float32)
                    esq += tl.sum(ef * ef, axis=1)
                acc = _tile_dot(zt, et, acc, PRECISION, INTERPRET)
        if HAS_SQNORM:
            esq = tl.load(sqnorm_ptr + rk, mask=mask_k, other=0.0)
        d = esq[None, :] - 2.0 * acc                                  # (BN, BK)
        d = tl.where(mask_k[None, :], d, float("inf"))
        tile_min, tile_arg = tl.min(d, axis=1, return_indices=True)  # first index on ties
        better = tile_min < best                                      # strict: earlier tile wins ties
        best = tl.where(better, tile_min, best)
        best_idx = tl.where(better, tile_arg + k0, best_idx)

    dist = tl.maximum(zsq + best, 0.0)
    tl.store(idx_ptr + rn64, best_idx.to(tl.int64), mask=mask_n)
    tl.store(dist_ptr + rn64, dist, mask=mask_n)
    if HAS_COUNTS:  # code-usage histogram for perplexity / codebook health, no extra pass
        tl.atomic_add(counts_ptr + best_idx, tl.full((BLOCK_N,), 1.0, tl.float32), mask=mask_n)


def nearest_code_fwd(z: torch.Tensor, codebook: torch.Tensor, precision: str,
                     codebook_sqnorm: torch.Tensor | None = None, counts: torch.Tensor | None = None):
    """Launch the kernel. z (N, D) and codebook (K, D) share a dtype and have unit column stride;
    counts, when given, is a zeroed contiguous fp32 (K,) buffer that receives the assignments per code."""
    N, D = z.shape
    K = codebook.shape[0]
    idx = torch.empty(N, dtype=torch.int64, device=z.device)
    dist = torch.empty(N, dtype=torch.float32, device=z.device)
    if N == 0:
        return idx, dist
    prec = PRECISIONS[precision]
    if prec != 0 and z.dtype != torch.float32:
        prec = 3  # half inputs in a fast mode: their own tensor-core dtype (products exact in fp32)
    has_sq = codebook_sqnorm is not None
    sq = codebook_sqnorm if has_sq else dist  # dummy pointer, never read
    has_counts = counts is not None

    def grid(meta):
        return (triton.cdiv(N, meta["BLOCK_N"]),)

    _nearest_code_fwd_kernel[grid](
        z, codebook, sq, idx, dist, counts if has_counts else dist, N, K, D, z.stride(0), codebook.stride(0),
        HAS_SQNORM=has_sq, HAS_COUNTS=has_counts, PRECISION=prec, INTERPRET=os.environ.get("TRITON_INTERPRET", "0") == "1",
    )
    return idx, dist
