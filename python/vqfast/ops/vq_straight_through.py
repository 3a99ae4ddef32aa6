"""vq_straight_through: quantiser output z + sg(q - z) and loss, with the analytic backward (SPEC §7.2).

    q = codebook[idx];  z_q = z + (q - z)  (forward value taming returns; backward identity to z)
    loss = c_commit * mean((sg(q) - z)^2) + c_book * mean((q - sg(z))^2)
taming VectorQuantizer2: (c_commit, c_book) = (1, beta) legacy, (beta, 1) otherwise; EMA: (beta, 0).
Gradients (M = N * D): dz = g_zq + g_loss c_commit 2 (z - q) / M; dE_j = sum_{i: idx_i = j} g_loss c_book 2 (q_i - z_i) / M.
"""
from __future__ import annotations

import torch

from vqfast.errors import InputError
from vqfast.ops._checks import check_same_device, check_tensor
from vqfast.ops._dispatch import resolve_backend


def _validate(z, codebook, idx):
    op = "vq_straight_through"
    check_tensor(op, "z", z, ndim=2)
    check_tensor(op, "codebook", codebook, ndim=2)
    check_tensor(op, "idx", idx, ndim=1, dtypes=(torch.int64,))
    if z.shape[1] != codebook.shape[1]:
        raise InputError(f"{op}: z has D={z.shape[1]} but codebook has D={codebook.shape[1]}")
    if idx.shape[0] != z.shape[0]:
        raise InputError(f"{op}: idx has {idx.shape[0]} entries but z has N={z.shape[0]} rows")
    if z.shape[0] == 0:
        raise InputError(f"{op}: z has no rows; the loss is a mean over N * D >= 1 elements")
    check_same_device(op, z=z, codebook=codebook, idx=idx)


class _ReferenceFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, codebook, idx, c_commit, c_book):
        q = codebook.index_select(0, idx)                            # (N, D)
        out_dtype = torch.promote_types(z.dtype, codebook.dtype)
        diff = q.float() - z.float()                                 # (N, D) fp32
        loss = (c_commit + c_book) * diff.square().mean()            # () fp32
        zo = z.to(out_dtype)
        z_q = zo + (q.to(out_dtype) - zo)
        ctx.save_for_backward(diff, idx)
        ctx.c = (c_commit, c_book)
        ctx.meta = (z.dtype, codebook.dtype, codebook.shape[0])
        return z_q, loss

    @staticmethod
    def backward(ctx, g_zq, g_loss):
        diff, idx = ctx.saved_tensors
        c_commit, c_book = ctx.c
        z_dtype, cb_dtype, K = ctx.meta
        M = diff.numel()
        dz = g_zq.float() if g_zq is not None else torch.zeros_like(diff)
        dcb = None
        if g_loss is not None:
            scale = g_loss.float() * (2.0 / M)
            if c_commit:
                dz = dz - (scale * c_commit) * diff
            if c_book and ctx.needs_input_grad[1]:
                dcb = torch.zeros(K, diff.shape[1], dtype=torch.float32, device=diff.device)
                dcb.index_add_(0, idx, (scale * c_book) * diff)
                dcb = dcb.to(cb_dtype)
        return dz.to(z_dtype), dcb, None, None, None


class _TritonFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, codebook, idx, c_commit, c_book):
        from vqfast.kernels.vq_straight_through import vq_st_fwd

        out_dtype = torch.promote_types(z.dtype, codebook.dtype)
        z_q, partial = vq_st_fwd(z, codebook, idx, out_dtype)
        loss = partial.sum() * ((c_commit + c_book) / z.numel())
        # A codebook without a gradient is an EMA codebook: ema_update_ (a kernel write, no version bump) and
        # dead-code expiry change it in place right after this forward, so the backward keeps this step's copy
        # (K×D, small) to recompute the same q as the forward used.
        ctx.save_for_backward(z, codebook if ctx.needs_input_grad[1] else codebook.detach().clone(), idx)
        ctx.c = (c_commit, c_book)
        return z_q, loss

    @staticmethod
    def backward(ctx, g_zq, g_loss):
        from vqfast.kernels.vq_straight_through import vq_st_bwd

        z, codebook, idx = ctx.saved_tensors
        c_commit, c_book = ctx.c
        M = z.numel()
        need_dcb = bool(c_book) and ctx.needs_input_grad[1] and g_loss is not None
        dz, dcb = vq_st_bwd(z, codebook, idx, None if g_zq is None else g_zq.contiguous(),
                            None if g_loss is None else g_loss.reshape(1).float(),
                            2.0 * c_commit / M, 2.0 * c_book / M, need_dcb)
        return dz, (dcb.to(codebook.dtype) if dcb is not None else None), None, None, None


def vq_straight_through_reference(z: torch.Tensor, codebook: torch.Tensor, idx: torch.Tensor, *,
                                  c_commit: float, c_book: float, backend: str = "auto"):
    """Pure-PyTorch vq_straight_through (taming VectorQuantizer2 / EMA loss + straight-through), one
    autograd node. Returns (z_q[N, D], loss fp32 scalar)."""
    _validate(z, codebook, idx)
    return _ReferenceFn.apply(z, codebook, idx, float(c_commit), float(c_book))


def vq_straight_through(z: torch.Tensor, codebook: torch.Tensor, idx: torch.Tensor, *, c_commit: float,
                        c_book: float, backend: str = "auto"):
    """z[N, D], codebook[K, D], idx int64[N] -> (z_q[N, D] in promote(z, codebook) dtype, loss fp32 scalar).

    Differentiable w.r.t. z and codebook (see module docstring); idx must be in [0, K) (not checked).
    """
    _validate(z, codebook, idx)
    be = resolve_backend(backend, z, codebook, op="vq_straight_through")
    if be == "torch":
        return _ReferenceFn.apply(z, codebook, idx, float(c_commit), float(c_book))
    if z.stride(1) != 1:
        z = z.contiguous()
    cb = codebook if codebook.stride(1) == 1 else codebook.contiguous()
    return _TritonFn.apply(z, cb, idx.contiguous(), float(c_commit), float(c_book))
