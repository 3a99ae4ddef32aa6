"""binary_entropy: the LFQ / BSQ entropy terms over the implicit {±a}^d codebook without a (N, 2^d) table.

LFQ (vector-quantize-pytorch lookup_free_quantization.py LFQ.forward; Open-MAGVIT2) and BSQ (BSQ-ViT
transcoder/models/quantizer/bsq.py soft_entropy_loss) score every sample x_n (N, d) against every code
c in {±a}^d with p_n(c) = softmax_c(2 t x_n.c), t the inverse temperature. Written with the per-bit logit
L_nb = 4 a t x_nb this distribution is a product over bits:
    p_n(c) = prod_b sigma(s_b L_nb),  s_b = +1 where bit b of c is set (x_b > 0 side), -1 otherwise
so
    per-sample entropy  H_n = sum_b H_bin(sigma(L_nb))                     exact, O(N d)
    codebook entropy    H(A), A_c = mean_n p_n(c)                           exact, O(K) memory:
splitting the bits into a high half (h bits) and a low half (l bits), p_n(c) = P^hi[n, c_hi] P^lo[n, c_lo]
and A = (P^hi)^T P^lo / N is one (2^h x N) @ (N x 2^l) matmul, streamed over chunks of samples.
Backward, with W_c = -(log A_c + 1) g:  dP^hi = P^lo W^T / N,  dP^lo = P^hi W / N, and through
log P^hi[n, j] = sum_{b<h} (bit_b(j) L_nb - softplus(L_nb)):  dL_nb = sum_j dP_nj P_nj (bit_b(j) - sigma(L_nb)).
Only L (N, d) and A (K,) are saved; the P chunks are recomputed. Extra memory O(N d + K + chunk 2^(d/2))
on the torch path (chunked cuBLAS matmuls); the Triton kernels (vqfast.kernels.binary_entropy) build the P
tiles in registers from the code index: O(N d + K).

The entropies are exact (0 log 0 = 0); vector-quantize-pytorch clamps p at 1e-5 inside the log and BSQ-ViT
adds 1e-8, which differ from the exact value by at most K * 1e-5 resp. K * 1e-8.
Index order: bit 0 of x is the most significant bit of the code index (vector-quantize-pytorch's `mask`).
DDP: `reduce_hook(A)` (e.g. all-reduce mean) runs on the batch-mean distribution before its entropy, so every
rank scores the global distribution; each rank's gradient is then W times its own dA/dx (the global
objective's gradient after DDP's mean), as vector-quantize-pytorch's differentiable all-reduce gives.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from vqfast.errors import InputError
from vqfast.ops._checks import check_tensor
from vqfast.ops._dispatch import check_backend_name, resolve_backend

ReduceHook = Optional[Callable[[torch.Tensor], None]]
_CHUNK_ELEMENTS = 1 << 22          # P^hi / P^lo chunk budget (elements)
MAX_BITS = 30
_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _validate(logits):
    check_tensor("binary_entropy", "logits", logits, ndim=2, dtypes=_DTYPES)
    if logits.shape[1] < 1 or logits.shape[1] > MAX_BITS:
        raise InputError(f"binary_entropy: logits has d={logits.shape[1]} bits; allowed 1..{MAX_BITS}")
    if logits.shape[0] == 0:
        raise InputError("binary_entropy: logits has no rows; the entropies are means over N >= 1 samples")


def per_sample_entropy(logits: torch.Tensor) -> torch.Tensor:
    """mean_n sum_b H_bin(sigma(L_nb)) in nats, fp32, differentiable: p softplus(-L) + (1-p) softplus(L)."""
    L = logits if logits.dtype == torch.float64 else logits.float()
    p = torch.sigmoid(L)
    return (p * F.softplus(-L) + (1 - p) * F.softplus(L)).sum(1).mean()


def _bits(n: int, device) -> torch.Tensor:
    """(2^n, n) fp32 {0, 1}, row j = the n bits of j, most significant first."""
    j = torch.arange(1 << n, device=device)
    shifts = torch.arange(n - 1, -1, -1, device=device)
    return ((j[:, None] >> shifts) & 1).float()


def _half_probs(L: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """P[n, j] = prod_b sigma(+-L_nb) for the codes j of `bits` (2^n, n): exp(L @ bits^T - sum softplus(L))."""
    return torch.exp(L @ bits.t() - F.softplus(L).sum(1, keepdim=True))


def _rows_per_chunk(d: int) -> int:
    return max(1, _CHUNK_ELEMENTS // (1 << ((d + 1) // 2)))


class _CodebookEntropyFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, L, reduce_hook):
        N, d = L.shape
        h = (d + 1) // 2
        lo = d - h
        bh, bl = _bits(h, L.device).to(L.dtype), _bits(lo, L.device).to(L.dtype)
        A = torch.zeros(1 << h, 1 << lo, dtype=L.dtype, device=L.device)          # (2^h, 2^l)
        rows = _rows_per_chunk(d)
        for s in range(0, N, rows):
            Lc = L[s:s + rows]
            A.addmm_(_half_probs(Lc[:, :h], bh).t(), _half_probs(Lc[:, h:], bl))
        A.div_(N)
        if reduce_hook is not None:
            reduce_hook(A)
        ctx.save_for_backward(L, A)
        return -torch.special.xlogy(A, A).sum(), A.reshape(-1)

    @staticmethod
    def backward(ctx, g, _g_avg):
        L, A = ctx.saved_tensors
        N, d = L.shape
        h = (d + 1) // 2
        bh, bl = _bits(h, L.device).to(L.dtype), _bits(d - h, L.device).to(L.dtype)
        W = -(torch.log(A.clamp_min(torch.finfo(A.dtype).tiny)) + 1.0) * (g.to(A.dtype) / N)  # (2^h, 2^l)
        dL = torch.empty_like(L)
        rows = _rows_per_chunk(d)
        for s in range(0, N, rows):
            Lc = L[s:s + rows]
            Ph, Pl = _half_probs(Lc[:, :h], bh), _half_probs(Lc[:, h:], bl)   # (n, 2^h), (n, 2^l)
            Gh = (Pl @ W.t()) * Ph                                             # dP^hi P^hi
            Gl = (Ph @ W) * Pl
            dL[s:s + rows, :h] = Gh @ bh - Gh.sum(1, keepdim=True) * torch.sigmoid(Lc[:, :h])
            dL[s:s + rows, h:] = Gl @ bl - Gl.sum(1, keepdim=True) * torch.sigmoid(Lc[:, h:])
        return dL, None


class _TritonFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, L, reduce_hook):
        from vqfast.kernels.binary_entropy import be_fwd

        L = L.contiguous()
        A = be_fwd(L)                                                   # (2^h, 2^l)
        if reduce_hook is not None:
            reduce_hook(A)
        ctx.save_for_backward(L, A)
        return -torch.special.xlogy(A, A).sum(), A.reshape(-1)

    @staticmethod
    def backward(ctx, g, _g_avg):
        from vqfast.kernels.binary_entropy import be_bwd

        L, A = ctx.saved_tensors
        W = -(torch.log(A.clamp_min(torch.finfo(A.dtype).tiny)) + 1.0) * (g.float() / L.shape[0])
        return be_bwd(L, W.contiguous()), None


def codebook_entropy(logits: torch.Tensor, *, backend: str = "auto", reduce_hook: ReduceHook = None):
    """Exact entropy of the batch-mean code distribution A (2^d,), without a (N, 2^d) table (module docstring).

    logits: (N, d) per-bit logits L = 4 a t x. Returns (H(A) scalar, differentiable w.r.t. logits; A (2^d,)
    detached), fp32 (fp64 for fp64 logits on the torch path). Dispatch: backend='triton' -> the fused kernels
    (vqfast.kernels.binary_entropy; fp64 logits raise); 'auto' -> the kernels on CUDA for non-fp64 logits,
    otherwise the chunked torch path; 'torch' -> the chunked torch path.
    """
    _validate(logits)
    be = resolve_backend(backend, logits, op="codebook_entropy")
    if be == "triton" and logits.dtype == torch.float64:
        if check_backend_name(backend) == "triton":
            raise InputError("codebook_entropy: the Triton kernels take fp32/fp16/bf16 logits (computed in fp32), "
                             "got float64; use backend='torch'")
        be = "torch"                                                    # the documented 'auto' rule
    L = logits if logits.dtype == torch.float64 else logits.float()               # fp32 (fp64 kept for gradcheck)
    H, A = (_TritonFn if be == "triton" else _CodebookEntropyFn).apply(L, reduce_hook)
    return H, A.detach()


def codebook_entropy_reference(logits: torch.Tensor, *, backend: str = "auto", reduce_hook: ReduceHook = None):
    """The table formulation (vector-quantize-pytorch LFQ: distance = -2 x.C, prob = softmax, avg_prob =
    mean) with exact entropies, in the dtype of `logits` (fp64 for the parity tests). Same signature.
    Memory O(N 2^d): small d only."""
    _validate(logits)
    d = logits.shape[1]
    codes = _bits(d, logits.device).to(logits.dtype) * 2 - 1                      # (K, d) in {-1, 1}
    prob = torch.softmax(logits @ codes.t() / 2, dim=1)                           # (N, K): 2 t x.c = L.c / 2
    avg = prob.mean(0)
    if reduce_hook is not None:
        reduce_hook(avg)
    return -torch.special.xlogy(avg, avg).sum(), avg.detach()


def per_sample_entropy_reference(logits: torch.Tensor) -> torch.Tensor:
    """Table formulation of the per-sample entropy: mean_n H(softmax_c(L_n.c / 2)) (small d only)."""
    d = logits.shape[1]
    codes = _bits(d, logits.device).to(logits.dtype) * 2 - 1
    prob = torch.softmax(logits @ codes.t() / 2, dim=1)
    return -torch.special.xlogy(prob, prob).sum(1).mean()
