"""LFQ/BSQ codebook entropy statistics without a (N, 2^d) table, fused: P tiles built in registers.

Matches `vqfast.ops.binary_entropy.codebook_entropy_reference` (vector-quantize-pytorch LFQ's softmax table,
exact entropies) through the factorisation of ops/binary_entropy.py: with h = ceil(d/2) high bits and
l = d - h low bits, P^hi[n, j] = exp(L_n,:h . bits(j) - sum_b<h softplus(L_nb)) (likewise P^lo) and
    forward   A = (P^hi)^T P^lo / N                (2^h, 2^l)   _be_fwd_kernel: one program per (BH, BL) tile
                                                                of A, walking the rows in BLOCK_N chunks
    backward  dL[:, :h] = G^hi bits_h - rowsum(G^hi) sigma(L_:h),  G^hi = (P^lo W^T) * P^hi   (and lo alike)
              with W = -(log A + 1) g / N given   _be_bwd_kernel: one program per BLOCK_N rows
The code bits are generated from the code index inside the kernel; no table of P, bits or codes exists in
memory. Extra memory O(N d + 2^d). Limits: fp32, 1 <= d <= 30 (each half <= 15 bits, padded to 16 for
tl.dot). Products in fp32 (input_precision="ieee").
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _softplus(x):
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _half_probs(l_ptr, rn, mn, d, col0, nbits, j0, BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr,
                HB: tl.constexpr):
    """(BLOCK_N, BLOCK_J) P[n, j] for codes j0 + [0, BLOCK_J) of the `nbits` bits starting at column col0."""
    rb = tl.arange(0, HB)
    mb = rb < nbits
    L = tl.load(l_ptr + rn[:, None] * d + col0 + rb[None, :], mask=mn[:, None] & mb[None, :], other=0.0)
    sp = tl.sum(tl.where(mb[None, :], _softplus(L), 0.0), axis=1)                     # (BN,)
    rj = j0 + tl.arange(0, BLOCK_J)
    shift = tl.where(mb, nbits - 1 - rb, 0)
    bits = tl.where(mb[None, :], (rj[:, None] >> shift[None, :]) & 1, 0).to(tl.float32)  # (BJ, HB)
    logp = tl.dot(L, tl.trans(bits), input_precision="ieee") - sp[:, None]
    return tl.where(mn[:, None], tl.exp(logp), 0.0), bits, L


@triton.jit
def _be_fwd_kernel(
    l_ptr,     # (N, d) fp32 contiguous per-bit logits
    a_ptr,     # (2^h, 2^l) fp32 out: mean_n P^hi[n, :]^T P^lo[n, :]
    N, d, h, lo, KH, KL, inv_n,
    BLOCK_N: tl.constexpr, BH: tl.constexpr, BL: tl.constexpr, HB: tl.constexpr,
):
    jh0 = tl.program_id(0) * BH
    jl0 = tl.program_id(1) * BL
    acc = tl.zeros((BH, BL), tl.float32)
    for n0 in range(0, N, BLOCK_N):
        rn = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        mn = rn < N
        ph, _, _ = _half_probs(l_ptr, rn, mn, d, 0, h, jh0, BLOCK_N, BH, HB)
        pl, _, _ = _half_probs(l_ptr, rn, mn, d, h, lo, jl0, BLOCK_N, BL, HB)
        acc += tl.dot(tl.trans(ph), pl, input_precision="ieee")
    rh = jh0 + tl.arange(0, BH)
    rl = jl0 + tl.arange(0, BL)
    tl.store(a_ptr + rh[:, None] * KL + rl[None, :], acc * inv_n, mask=(rh < KH)[:, None] & (rl < KL)[None, :])


@triton.jit
def _be_bwd_kernel(
    l_ptr,     # (N, d) fp32
    w_ptr,     # (2^h, 2^l) fp32: -(log A + 1) g / N
    dl_ptr,    # (N, d) fp32 out
    N, d, h, lo, KH, KL,
    BLOCK_N: tl.constexpr, BH: tl.constexpr, BL: tl.constexpr, HB: tl.constexpr,
):
    rn = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    mn = rn < N
    rb = tl.arange(0, HB)
    # high half: G^hi = (P^lo W^T) * P^hi
    dh = tl.zeros((BLOCK_N, HB), tl.float32)
    sh = tl.zeros((BLOCK_N,), tl.float32)
    for jh0 in range(0, KH, BH):
        ph, bits_h, Lh = _half_probs(l_ptr, rn, mn, d, 0, h, jh0, BLOCK_N, BH, HB)
        pre = tl.zeros((BLOCK_N, BH), tl.float32)
        rh = jh0 + tl.arange(0, BH)
        for jl0 in range(0, KL, BL):
            pl, _, _ = _half_probs(l_ptr, rn, mn, d, h, lo, jl0, BLOCK_N, BL, HB)
            rl = jl0 + tl.arange(0, BL)
            w = tl.load(w_ptr + rh[:, None] * KL + rl[None, :], mask=(rh < KH)[:, None] & (rl < KL)[None, :],
                        other=0.0)                                                     # (BH, BL)
            pre += tl.dot(pl, tl.trans(w), input_precision="ieee")
        g = tl.where((rh < KH)[None, :], pre * ph, 0.0)
        dh += tl.dot(g, bits_h, input_precision="ieee")
        sh += tl.sum(g, axis=1)
    Lh = tl.load(l_ptr + rn[:, None] * d + rb[None, :], mask=mn[:, None] & (rb < h)[None, :], other=0.0)
    dh -= sh[:, None] * tl.sigmoid(Lh)
    tl.store(dl_ptr + rn[:, None] * d + rb[None, :], dh, mask=mn[:, None] & (rb < h)[None, :])
    # low half: G^lo = (P^hi W) * P^lo
    dlo = tl.zeros((BLOCK_N, HB), tl.float32)
    sl = tl.zeros((BLOCK_N,), tl.float32)
    for jl0 in range(0, KL, BL):
        pl, bits_l, _ = _half_probs(l_ptr, rn, mn, d, h, lo, jl0, BLOCK_N, BL, HB)
        pre = tl.zeros((BLOCK_N, BL), tl.float32)
        rl = jl0 + tl.arange(0, BL)
        for jh0 in range(0, KH, BH):
            ph, _, _ = _half_probs(l_ptr, rn, mn, d, 0, h, jh0, BLOCK_N, BH, HB)
            rh = jh0 + tl.arange(0, BH)
            w = tl.load(w_ptr + rh[:, None] * KL + rl[None, :], mask=(rh < KH)[:, None] & (rl < KL)[None, :],
                        other=0.0)
            pre += tl.dot(ph, w, input_precision="ieee")
        g = tl.where((rl < KL)[None, :], pre * pl, 0.0)
        dlo += tl.dot(g, bits_l, input_precision="ieee")
        sl += tl.sum(g, axis=1)
    Ll = tl.load(l_ptr + rn[:, None] * d + h + rb[None, :], mask=mn[:, None] & (rb < lo)[None, :], other=0.0)
    dlo -= sl[:, None] * tl.sigmoid(Ll)
    tl.store(dl_ptr + rn[:, None] * d + h + rb[None, :], dlo, mask=mn[:, None] & (rb < lo)[None, :])


BWD_WARPS, BWD_BLOCK_N = 8, 16
"""The backward holds both halves' gradient tiles: 16 rows × 8 warps keep it unspilled on sm_80 (32 rows × 4
warps spilled 24 B; python -m vqfast.tools.compile_report --kernel _be_)."""


def _blocks(KH: int, KL: int):
    if _INTERPRET:
        return 16, 16, 16
    # 32×32 probability tiles: 64×64 spilled on sm_90a/sm_80 (python -m vqfast.tools.compile_report --kernel _be_)
    return 32, min(32, max(16, KH)), min(32, max(16, KL))


def be_fwd(L: torch.Tensor) -> torch.Tensor:
    """L (N, d) fp32 contiguous -> A (2^h, 2^l) fp32."""
    N, d = L.shape
    h = (d + 1) // 2
    lo = d - h
    KH, KL = 1 << h, 1 << lo
    bn, bh, bl = _blocks(KH, KL)
    A = torch.empty(KH, KL, dtype=torch.float32, device=L.device)
    _be_fwd_kernel[(triton.cdiv(KH, bh), triton.cdiv(KL, bl))](L, A, N, d, h, lo, KH, KL, 1.0 / N, BLOCK_N=bn,
                                                               BH=bh, BL=bl, HB=16, num_warps=4)
    return A


def be_bwd(L: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """dL (N, d) fp32 of sum_c W_c A_c, W (2^h, 2^l) fp32 contiguous already holding -(log A + 1) g / N."""
    N, d = L.shape
    h = (d + 1) // 2
    lo = d - h
    KH, KL = 1 << h, 1 << lo
    bn, bh, bl = _blocks(KH, KL)
    bn = min(bn, BWD_BLOCK_N)
    dL = torch.empty_like(L)
    _be_bwd_kernel[(triton.cdiv(N, bn),)](L, W, dL, N, d, h, lo, KH, KL, BLOCK_N=bn, BH=bh, BL=bl, HB=16,
                                          num_warps=BWD_WARPS)
    return dL
