"""ibq_soft: IBQ's straight-through over the codebook softmax, streamed over codebook tiles (never N x K).

IBQ (SEED-Voken src/IBQ/modules/vqvae/quantize.py IndexPropagationQuantize.forward) computes
    logits = z E^T,  soft = softmax(logits),  hard = one_hot(argmax),  z_q = (hard - sg(soft) + soft) E
whose value is E[idx] and whose gradient, for g = dL/dz_q, is
    dz = dS E,  dE = hard^T g + dS^T z,  dS = soft * (g E^T - rowsum(soft * g E^T)) = P * (g E^T - D),
    D_n = g_n . O_n,  O = soft E.
That is attention with the codebook as keys and values: the forward keeps an online softmax (running max,
normaliser, O) over codebook tiles, the backward recomputes each tile's probabilities from the saved
log-normaliser. Saved: z, E, idx, O (N, D), lse (N,). Extra memory O(N D + K D + tile).
Two implementations: the Triton kernels (vqfast.kernels.ibq_soft: fp32, D <= 256) and a streamed torch path
(tiles of rows x codes bounded by _TILE_ELEMENTS, cuBLAS matmuls; any D, fp32/fp64).
Dispatch: backend='triton' -> the kernels (InputError outside their limits); 'auto' -> the kernels on CUDA
for fp32 with D <= 256, otherwise the streamed torch path; 'torch' -> the streamed torch path.
"""
from __future__ import annotations

import torch

from vqfast.errors import InputError
from vqfast.ops._checks import check_same_device, check_tensor
from vqfast.ops._dispatch import check_backend_name, resolve_backend

_TILE_ELEMENTS = 1 << 22
MAX_D = 256                       # vqfast.kernels.ibq_soft.MAX_D (not imported: kernels load lazily)
_DTYPES = (torch.float32, torch.float64)


def _validate(z, codebook, idx):
    op = "ibq_soft"
    check_tensor(op, "z", z, ndim=2, dtypes=_DTYPES)
    check_tensor(op, "codebook", codebook, ndim=2, dtypes=_DTYPES)
    check_tensor(op, "idx", idx, ndim=1, dtypes=(torch.int64,))
    if z.shape[1] != codebook.shape[1] or idx.shape[0] != z.shape[0] or codebook.shape[0] == 0:
        raise InputError(f"{op}: shapes z {tuple(z.shape)}, codebook {tuple(codebook.shape)}, idx "
                         f"{tuple(idx.shape)} do not fit (N, D), (K >= 1, D), (N,)")
    if z.dtype != codebook.dtype:
        raise InputError(f"{op}: z ({z.dtype}) and codebook ({codebook.dtype}) must share a dtype")
    check_same_device(op, z=z, codebook=codebook, idx=idx)


def _tiles(N: int, K: int) -> tuple[int, int]:
    kt = min(K, 4096)
    return max(1, min(N, _TILE_ELEMENTS // kt)), kt


class _TritonFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, E, idx):
        from vqfast.kernels.ibq_soft import ibq_fwd

        z, E = z.contiguous(), E.contiguous()
        O, lse = ibq_fwd(z, E)
        ctx.save_for_backward(z, E, idx, O, lse)
        return E.index_select(0, idx)

    @staticmethod
    def backward(ctx, g):
        from vqfast.kernels.ibq_soft import ibq_bwd

        z, E, idx, O, lse = ctx.saved_tensors
        g = g.float().contiguous()
        dz, dE = ibq_bwd(z, E, g, lse, (g * O).sum(1).contiguous())
        return dz, dE.index_add_(0, idx, g), None


class _StreamFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, E, idx):
        N, D = z.shape
        K = E.shape[0]
        nt, kt = _tiles(N, K)
        O = torch.empty_like(z)
        lse = torch.empty(N, dtype=z.dtype, device=z.device)
        for s in range(0, N, nt):
            zc = z[s:s + nt]                                           # (n, D)
            m = torch.full((zc.shape[0],), -torch.inf, dtype=z.dtype, device=z.device)
            l = torch.zeros_like(m)
            o = torch.zeros_like(zc)
            for k in range(0, K, kt):
                Et = E[k:k + kt]                                       # (t, D)
                sc = zc @ Et.t()                                       # (n, t)
                m_new = torch.maximum(m, sc.max(1).values)
                alpha = torch.exp(m - m_new)
                p = torch.exp(sc - m_new[:, None])
                l = l * alpha + p.sum(1)
                o = o * alpha[:, None] + p @ Et
                m = m_new
            O[s:s + nt] = o / l[:, None]
            lse[s:s + nt] = m + torch.log(l)
        ctx.save_for_backward(z, E, idx, O, lse)
        return E.index_select(0, idx)

    @staticmethod
    def backward(ctx, g):
        z, E, idx, O, lse = ctx.saved_tensors
        N, K = z.shape[0], E.shape[0]
        nt, kt = _tiles(N, K)
        g = g.to(z.dtype)
        Dv = (g * O).sum(1)                                            # (N,)
        dz = torch.zeros_like(z)
        dE = torch.zeros_like(E).index_add_(0, idx, g)                 # hard^T g
        for s in range(0, N, nt):
            zc, gc = z[s:s + nt], g[s:s + nt]
            for k in range(0, K, kt):
                Et = E[k:k + kt]
                P = torch.exp(zc @ Et.t() - lse[s:s + nt, None])       # (n, t)
                dS = P * (gc @ Et.t() - Dv[s:s + nt, None])
                dz[s:s + nt] += dS @ Et
                dE[k:k + kt] += dS.t() @ zc
        return dz, dE, None


def ibq_soft(z: torch.Tensor, codebook: torch.Tensor, idx: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """z (N, D), codebook (K, D) fp32/fp64, idx int64 (N,) = argmax_k z.E_k -> z_q = E[idx] (N, D) with IBQ's
    soft-one-hot gradient (module docstring), streamed: O(N D + K D) extra memory. Dispatch: module docstring."""
    _validate(z, codebook, idx)
    be = resolve_backend(backend, z, codebook, op="ibq_soft")
    fits = z.dtype == torch.float32 and z.shape[1] <= MAX_D
    if be == "triton" and not fits:
        if check_backend_name(backend) == "triton":
            raise InputError(f"ibq_soft: the Triton kernels take fp32 with D <= {MAX_D}, got {z.dtype} D="
                             f"{z.shape[1]}; use backend='torch'")
        be = "torch"                                                   # the documented 'auto' rule
    if be == "triton":
        return _TritonFn.apply(z, codebook, idx)
    return _StreamFn.apply(z, codebook, idx)


def ibq_soft_reference(z: torch.Tensor, codebook: torch.Tensor, idx: torch.Tensor, *,
                       backend: str = "auto") -> torch.Tensor:
    """The eager SEED-Voken formula (N x K logits, softmax, one-hot, dense one_hot @ E). Same signature."""
    _validate(z, codebook, idx)
    soft = torch.softmax(z @ codebook.t(), dim=1)                      # (N, K)
    hard = torch.zeros_like(soft).scatter_(1, idx[:, None], 1.0)
    return (hard - soft.detach() + soft) @ codebook
