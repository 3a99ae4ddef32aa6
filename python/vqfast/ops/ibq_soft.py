"""ibq_soft: IBQ's straight-through over the codebook softmax, streamed over codebook tiles (never N x K).

IBQ (SEED-Voken src/IBQ/modules/vqvae/quantize.py IndexPropagationQuantize.forward) computes
    logits = z E^T,  soft = softmax(logits),  hard = one_hot(argmax),  z_q = (hard - sg(soft) + soft) E
whose value is E[idx] and whose gradient, for g = dL/dz_q, is
    dz = dS E,  dE = hard^T g + dS^T z,  dS = soft * (g E^T - rowsum(soft * g E^T)) = P * (g E^T - D),
    D_n = g_n . O_n,  O = soft E.
That is attention with the codebook as keys and values: the forward keeps an online softmax (running max,
normaliser, O) over codebook tiles, the backward recomputes each tile's probabilities from the saved
log-normaliser. Saved: z, E, idx, O (N, D), lse (N,). Extra memory O(N D + K D + tile).
Two implementations: the Triton kernels (vqfast.kernels.ibq_soft: fp32, D <= 128) and a streamed torch path
(tiles of rows x codes bounded by _TILE_ELEMENTS, cuBLAS matmuls; any D, fp32/fp64).
Dispatch: backend='triton' -> the kernels (InputError outside their limits); 'auto' -> the kernels on CUDA
for fp32 with D <= 128, otherwise the streamed torch path; 'torch' -> the streamed torch path.
"""
from __future__ import annotations

import torch

from vqfast.errors import InputError
from vqfast.ops._checks import check_same_device, check_tensor
from vqfast.ops._dispatch import check_backend_name, resolve_backend

_TILE_ELEMENTS = 1 << 22
MAX_D = 128                       # vqfast.kernels.ibq_soft.MAX_D (not imported: kernels load lazily)
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


# ---- IBQ's entropy loss over the codebook softmax, streamed ---------------------------------------------
class _EntropyStreamFn(torch.autograd.Function):
    """s = z E^T / T.  H_n = lse_n - sum_k p_nk s_nk;  A_k = mean_n p_nk;  G = -sum_k A_k log(A_k + eps).
    loss = w_s mean_n H_n - w_b G.  Backward, with c_k = dG/dA_k = -(log(A_k + eps) + A_k / (A_k + eps)) and
    r_n = sum_k p_nk c_k:  dL/ds_nk = (w_s / N)(-p_nk (log p_nk + H_n)) - (w_b / N) p_nk (c_k - r_n)."""

    @staticmethod
    def forward(ctx, z, E, T, ws, wb, eps):
        N, K = z.shape[0], E.shape[0]
        nt, kt = _tiles(N, K)
        lse = torch.empty(N, dtype=z.dtype, device=z.device)
        H = torch.empty(N, dtype=z.dtype, device=z.device)
        for s in range(0, N, nt):                                     # pass 1: lse and per-sample entropy
            zc = z[s:s + nt] / T
            m = torch.full((zc.shape[0],), -torch.inf, dtype=z.dtype, device=z.device)
            l = torch.zeros_like(m)
            t = torch.zeros_like(m)
            for k in range(0, K, kt):
                sc = zc @ E[k:k + kt].t()
                m_new = torch.maximum(m, sc.max(1).values)
                a = torch.exp(m - m_new)
                p = torch.exp(sc - m_new[:, None])
                l, t, m = l * a + p.sum(1), t * a + (p * sc).sum(1), m_new
            lse[s:s + nt] = m + torch.log(l)
            H[s:s + nt] = lse[s:s + nt] - t / l
        A = torch.zeros(K, dtype=z.dtype, device=z.device)
        for s in range(0, N, nt):                                     # pass 2: batch-mean distribution
            zc = z[s:s + nt] / T
            for k in range(0, K, kt):
                A[k:k + kt] += torch.exp(zc @ E[k:k + kt].t() - lse[s:s + nt, None]).sum(0)
        A /= N
        G = -(A * torch.log(A + eps)).sum()
        ctx.save_for_backward(z, E, lse, H, A)
        ctx.c = (T, ws, wb, eps)
        return ws * H.mean() - wb * G, H.mean().detach(), G.detach()

    @staticmethod
    def backward(ctx, g, _gh, _gg):
        z, E, lse, H, A = ctx.saved_tensors
        T, ws, wb, eps = ctx.c
        N, K = z.shape[0], E.shape[0]
        nt, kt = _tiles(N, K)
        c = -(torch.log(A + eps) + A / (A + eps))                     # (K,)
        g = g.to(z.dtype)
        dz = torch.zeros_like(z)
        dE = torch.zeros_like(E)
        for s in range(0, N, nt):
            zc = z[s:s + nt] / T
            r = torch.zeros(zc.shape[0], dtype=z.dtype, device=z.device)
            for k in range(0, K, kt):                                 # r_n = sum_k p c
                r += torch.exp(zc @ E[k:k + kt].t() - lse[s:s + nt, None]) @ c[k:k + kt]
            for k in range(0, K, kt):
                Et = E[k:k + kt]
                logp = zc @ Et.t() - lse[s:s + nt, None]
                p = torch.exp(logp)
                dS = (g / N) * (ws * (-p * (logp + H[s:s + nt, None])) - wb * p * (c[k:k + kt][None, :] - r[:, None]))
                dz[s:s + nt] += dS @ Et / T
                dE[k:k + kt] += dS.t() @ zc                            # zc already holds z / T
        return dz, dE, None, None, None, None


def ibq_entropy_loss(z: torch.Tensor, codebook: torch.Tensor, *, temperature: float = 0.01,
                     sample_minimization_weight: float = 1.0, batch_maximization_weight: float = 1.0,
                     eps: float = 1e-5, backend: str = "auto"):
    """SEED-Voken compute_entropy_loss on logits = z E^T without the N x K table: returns (loss, per-sample
    entropy, codebook entropy), the loss differentiable w.r.t. z and the codebook; streamed torch tiles
    (O(N D + K D) extra; there is no Triton kernel for this op, backend='triton' raises)."""
    _validate(z, codebook, torch.zeros(z.shape[0], dtype=torch.int64, device=z.device))
    if check_backend_name(backend) == "triton":
        raise InputError("ibq_entropy_loss: there is no Triton kernel for this op; use backend='auto' or 'torch'")
    if not temperature > 0:
        raise InputError(f"ibq_entropy_loss: temperature={temperature} must be > 0")
    return _EntropyStreamFn.apply(z, codebook, float(temperature), float(sample_minimization_weight),
                                  float(batch_maximization_weight), float(eps))


def ibq_entropy_loss_reference(z: torch.Tensor, codebook: torch.Tensor, *, temperature: float = 0.01,
                               sample_minimization_weight: float = 1.0, batch_maximization_weight: float = 1.0,
                               eps: float = 1e-5, backend: str = "auto"):
    """SEED-Voken src/IBQ/modules/vqvae/quantize.py compute_entropy_loss as written (N x K table). Same signature."""
    logits = z @ codebook.t()
    probs = torch.softmax(logits / temperature, -1)
    log_probs = torch.log_softmax(logits / temperature + eps, -1)
    avg = probs.mean(0)
    avg_entropy = -torch.sum(avg * torch.log(avg + eps))
    sample_entropy = torch.mean(-torch.sum(probs * log_probs, -1))
    loss = sample_minimization_weight * sample_entropy - batch_maximization_weight * avg_entropy
    return loss, sample_entropy.detach(), avg_entropy.detach()
