"""IBQ's soft path as flash-attention-style kernels: the codebook is both keys and values.

Matches `vqfast.ops.reference`'s eager SEED-Voken formula (ops/ibq_soft.py ibq_soft_reference) through
    forward   O = softmax(z E^T) E, lse = logsumexp(z E^T)   (online softmax over codebook tiles)
    backward  D = rowsum(g * O) (caller); P = exp(z E^T - lse); dS = P * (g E^T - D)
              dz = dS E          (_ibq_bwd_dz_kernel: one program per BLOCK_N rows, walks the codebook)
              dE = dS^T z        (_ibq_bwd_de_kernel: one program per BLOCK_K codes, walks the rows)
              (+ hard^T g, added by the caller with index_add_)
Never materialises N x K: extra memory O(N D + K D). Limits: fp32 inputs, D <= 128 (the z / O tiles stay
in registers: BLOCK_D = next_power_of_2(D)), any N, K >= 1. Products in fp32 (input_precision="ieee"),
accumulation fp32. Two backward kernels instead of atomics keep the result deterministic.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
MAX_D = 128  # D = 256 spilled in the backward (python -m vqfast.tools.compile_report --kernel _ibq_)


@triton.jit
def _ibq_fwd_kernel(
    z_ptr,      # (N, D) fp32 contiguous
    e_ptr,      # (K, D) fp32 contiguous
    o_ptr,      # (N, D) fp32 out: softmax(z E^T) E
    lse_ptr,    # (N,) fp32 out: logsumexp_k z.E_k
    N, K, D,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rn = (pid * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    rd = tl.arange(0, BLOCK_D)
    mn = rn < N
    md = rd < D
    z = tl.load(z_ptr + rn[:, None] * D + rd[None, :], mask=mn[:, None] & md[None, :], other=0.0)
    m = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    l = tl.zeros((BLOCK_N,), tl.float32)
    acc = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = (k0 + tl.arange(0, BLOCK_K)).to(tl.int64)
        mk = rk < K
        e = tl.load(e_ptr + rk[:, None] * D + rd[None, :], mask=mk[:, None] & md[None, :], other=0.0)
        s = tl.dot(z, tl.trans(e), input_precision="ieee")               # (BN, BK)
        s = tl.where(mk[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p, e, input_precision="ieee")
        m = m_new
    tl.store(o_ptr + rn[:, None] * D + rd[None, :], acc / l[:, None], mask=mn[:, None] & md[None, :])
    tl.store(lse_ptr + rn, m + tl.log(l), mask=mn)


@triton.jit
def _ibq_bwd_dz_kernel(
    z_ptr, e_ptr,   # (N, D), (K, D) fp32
    g_ptr,          # (N, D) fp32 grad of the output
    lse_ptr,        # (N,) fp32
    dv_ptr,         # (N,) fp32 rowsum(g * O)
    dz_ptr,         # (N, D) fp32 out
    N, K, D,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rn = (pid * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    rd = tl.arange(0, BLOCK_D)
    mn = rn < N
    m2 = mn[:, None] & (rd < D)[None, :]
    z = tl.load(z_ptr + rn[:, None] * D + rd[None, :], mask=m2, other=0.0)
    g = tl.load(g_ptr + rn[:, None] * D + rd[None, :], mask=m2, other=0.0)
    lse = tl.load(lse_ptr + rn, mask=mn, other=0.0)
    dv = tl.load(dv_ptr + rn, mask=mn, other=0.0)
    acc = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = (k0 + tl.arange(0, BLOCK_K)).to(tl.int64)
        mk = rk < K
        e = tl.load(e_ptr + rk[:, None] * D + rd[None, :], mask=mk[:, None] & (rd < D)[None, :], other=0.0)
        p = tl.exp(tl.dot(z, tl.trans(e), input_precision="ieee") - lse[:, None])
        p = tl.where(mk[None, :], p, 0.0)
        dp = tl.dot(g, tl.trans(e), input_precision="ieee")
        ds = p * (dp - dv[:, None])
        acc += tl.dot(ds, e, input_precision="ieee")
    tl.store(dz_ptr + rn[:, None] * D + rd[None, :], acc, mask=m2)


@triton.jit
def _ibq_bwd_de_kernel(
    z_ptr, e_ptr, g_ptr, lse_ptr, dv_ptr,   # as _ibq_bwd_dz_kernel
    de_ptr,                                 # (K, D) fp32 out: dS^T z
    N, K, D,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rk = (pid * BLOCK_K + tl.arange(0, BLOCK_K)).to(tl.int64)
    rd = tl.arange(0, BLOCK_D)
    mk = rk < K
    md = rd < D
    e = tl.load(e_ptr + rk[:, None] * D + rd[None, :], mask=mk[:, None] & md[None, :], other=0.0)
    acc = tl.zeros((BLOCK_K, BLOCK_D), tl.float32)
    for n0 in range(0, N, BLOCK_N):
        rn = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        mn = rn < N
        m2 = mn[:, None] & md[None, :]
        z = tl.load(z_ptr + rn[:, None] * D + rd[None, :], mask=m2, other=0.0)
        g = tl.load(g_ptr + rn[:, None] * D + rd[None, :], mask=m2, other=0.0)
        lse = tl.load(lse_ptr + rn, mask=mn, other=0.0)
        dv = tl.load(dv_ptr + rn, mask=mn, other=0.0)
        pt = tl.exp(tl.dot(e, tl.trans(z), input_precision="ieee") - lse[None, :])   # (BK, BN)
        pt = tl.where(mn[None, :], pt, 0.0)
        dpt = tl.dot(e, tl.trans(g), input_precision="ieee")
        dst = pt * (dpt - dv[None, :])
        acc += tl.dot(dst, z, input_precision="ieee")
    tl.store(de_ptr + rk[:, None] * D + rd[None, :], acc, mask=mk[:, None] & md[None, :])


def _blocks(D: int):
    bd = max(16, triton.next_power_of_2(D))
    if _INTERPRET:
        return 16, 16, bd, 1
    # tiles sized so no launch spills (python -m vqfast.tools.compile_report --kernel _ibq_): the backward keeps
    # an (BK, D) accumulator and (BN, D) operand tiles live at once
    return (32, 32, bd, 8) if bd <= 64 else (16, 16, bd, 8)


def ibq_fwd(z: torch.Tensor, e: torch.Tensor):
    """z (N, D), e (K, D) fp32 contiguous -> (O (N, D), lse (N,))."""
    N, D = z.shape
    K = e.shape[0]
    bn, bk, bd, w = _blocks(D)
    o = torch.empty_like(z)
    lse = torch.empty(N, dtype=torch.float32, device=z.device)
    if N:
        _ibq_fwd_kernel[(triton.cdiv(N, bn),)](z, e, o, lse, N, K, D, BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=bd,
                                               num_warps=w)
    return o, lse


def ibq_bwd(z, e, g, lse, dv):
    """-> (dz (N, D), dE (K, D)) of the softmax path only (fp32)."""
    N, D = z.shape
    K = e.shape[0]
    bn, bk, bd, w = _blocks(D)
    dz = torch.empty_like(z)
    de = torch.empty_like(e)
    if N == 0:
        return dz, de.zero_()
    _ibq_bwd_dz_kernel[(triton.cdiv(N, bn),)](z, e, g, lse, dv, dz, N, K, D, BLOCK_N=bn, BLOCK_K=bk,
                                                BLOCK_D=bd, num_warps=w)
    _ibq_bwd_de_kernel[(triton.cdiv(K, bk),)](z, e, g, lse, dv, de, N, K, D, BLOCK_N=bn, BLOCK_K=bk,
                                                BLOCK_D=bd, num_warps=w)
    return dz, de
