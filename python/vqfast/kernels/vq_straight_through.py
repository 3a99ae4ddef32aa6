"""Quantiser straight-through output + loss, forward and backward, as two row-blocked kernels.

Matches `vqfast.ops.reference.vq_straight_through` (taming's `z + sg(q - z)` and
`c_commit * mse(sg(q), z) + c_book * mse(q, sg(z))`), SPEC §7.2, with q = codebook[idx]:
  forward   z_q = z + (q - z) (taming's value, not q itself); partial_b = sum over the block of (q - z)^2
  backward  dz  = g_zq + g_loss * c_commit * 2 (z - q) / M
            dE += g_loss * c_book * 2 (q - z) / M  scattered to rows idx (relaxed fp32 atomics), M = N * D
Grid (cdiv(N, BLOCK_N),), D walked in BLOCK_D chunks; the loss is the sum of per-block partials
(summed by the caller in a fixed order: deterministic). g_loss is read from device memory: no host sync.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _vq_st_fwd_kernel(
    z_ptr,        # (N, D) fp32/fp16/bf16, row stride stride_z, unit column stride
    cb_ptr,       # (K, D) codebook, row stride stride_c
    idx_ptr,      # (N,) int64
    zq_ptr,       # (N, D) out, contiguous, dtype = promote(z, codebook)
    partial_ptr,  # (cdiv(N, BLOCK_N),) fp32 out: per-block sum of (q - z)^2
    N, D, stride_z, stride_c,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    mn = rn < N
    rn64 = rn.to(tl.int64)
    code = tl.load(idx_ptr + rn64, mask=mn, other=0)
    acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        rd = d0 + tl.arange(0, BLOCK_D)
        m = mn[:, None] & (rd < D)[None, :]
        z = tl.load(z_ptr + rn64[:, None] * stride_z + rd[None, :], mask=m, other=0.0)
        q = tl.load(cb_ptr + code[:, None] * stride_c + rd[None, :], mask=m, other=0.0)
        zo = z.to(zq_ptr.dtype.element_ty)
        qo = q.to(zq_ptr.dtype.element_ty)
        tl.store(zq_ptr + rn64[:, None] * D + rd[None, :], zo + (qo - zo), mask=m)
        diff = q.to(tl.float32) - z.to(tl.float32)
        acc += diff * diff
    tl.store(partial_ptr + pid, tl.sum(tl.sum(acc, axis=1), axis=0))


@triton.jit
def _vq_st_bwd_kernel(
    z_ptr, cb_ptr, idx_ptr,
    gzq_ptr,      # (N, D) contiguous grad of z_q (ignored unless HAS_GZQ)
    gloss_ptr,    # (1,) grad of the loss (ignored unless HAS_GLOSS)
    dz_ptr,       # (N, D) out, contiguous, dtype of z
    dcb_ptr,      # (K, D) fp32 zero-initialised, accumulated when NEED_DCB
    N, D, stride_z, stride_c, commit_scale, book_scale,  # scales = c * 2 / M
    HAS_GZQ: tl.constexpr, HAS_GLOSS: tl.constexpr, NEED_DCB: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    mn = rn < N
    rn64 = rn.to(tl.int64)
    code = tl.load(idx_ptr + rn64, mask=mn, other=0)
    g = 0.0
    if HAS_GLOSS:
        g = tl.load(gloss_ptr).to(tl.float32)
    for d0 in range(0, D, BLOCK_D):
        rd = d0 + tl.arange(0, BLOCK_D)
        m = mn[:, None] & (rd < D)[None, :]
        z = tl.load(z_ptr + rn64[:, None] * stride_z + rd[None, :], mask=m, other=0.0).to(tl.float32)
        q = tl.load(cb_ptr + code[:, None] * stride_c + rd[None, :], mask=m, other=0.0).to(tl.float32)
        dz = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        if HAS_GZQ:
            dz += tl.load(gzq_ptr + rn64[:, None] * D + rd[None, :], mask=m, other=0.0).to(tl.float32)
        if HAS_GLOSS:
            dz += (g * commit_scale) * (z - q)
            if NEED_DCB:
                tl.atomic_add(dcb_ptr + code[:, None] * D + rd[None, :], (g * book_scale) * (q - z), mask=m,
                              sem="relaxed")  # unfenced: the kernel boundary orders it
        tl.store(dz_ptr + rn64[:, None] * D + rd[None, :], dz.to(dz_ptr.dtype.element_ty), mask=m)


def _blocks(D: int):
    bn = 16 if _INTERPRET else 32
    bd = max(16, min(128, triton.next_power_of_2(D)))
    return bn, bd


def vq_st_fwd(z, codebook, idx, out_dtype):
    N, D = z.shape
    bn, bd = _blocks(D)
    grid = triton.cdiv(N, bn)
    z_q = torch.empty(N, D, dtype=out_dtype, device=z.device)
    partial = torch.empty(grid, dtype=torch.float32, device=z.device)
    _vq_st_fwd_kernel[(grid,)](z, codebook, idx, z_q, partial, N, D, z.stride(0), codebook.stride(0),
                               BLOCK_N=bn, BLOCK_D=bd, num_warps=4)
    return z_q, partial


def vq_st_bwd(z, codebook, idx, g_zq, g_loss, commit_scale, book_scale, need_dcb):
    N, D = z.shape
    bn, bd = _blocks(D)
    dz = torch.empty(N, D, dtype=z.dtype, device=z.device)
    dcb = torch.zeros(codebook.shape[0], D, dtype=torch.float32, device=z.device) if need_dcb else dz
    _vq_st_bwd_kernel[(triton.cdiv(N, bn),)](
        z, codebook, idx, g_zq if g_zq is not None else dz, g_loss if g_loss is not None else dz, dz, dcb,
        N, D, z.stride(0), codebook.stride(0), float(commit_scale), float(book_scale),
        HAS_GZQ=g_zq is not None, HAS_GLOSS=g_loss is not None, NEED_DCB=need_dcb,
        BLOCK_N=bn, BLOCK_D=bd, num_warps=4)
    return dz, (dcb if need_dcb else None)
