"""Quantiser loss + straight-through output in one autograd node (SPEC §7.2).

Forward: q = E[idx]; z_q = z + (q - z) (the value taming returns); loss = (c_commit + c_book) * mean((q - z)^2).
Backward (M = N * D elements):
    dz = g_zq + g_loss * c_commit * 2 (z - q) / M               (straight-through + commitment)
    dE = segment_sum_idx(g_loss * c_book * 2 (q - z) / M)         (codebook term; none for EMA)
Equal to taming's `mse(sg(q), z) * c_commit + mse(q, sg(z)) * c_book` and `z + sg(q - z)`, with one
saved diff instead of two loss graphs.
"""
from __future__ import annotations

import torch


class VQStraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, codebook: torch.Tensor, idx: torch.Tensor, c_commit: float, c_book: float):
        q = codebook.index_select(0, idx)                            # (N, D) codebook dtype
        out_dtype = torch.promote_types(z.dtype, codebook.dtype)
        diff = q.float() - z.float()                                 # (N, D) fp32
        loss = (c_commit + c_book) * diff.square().mean()            # () fp32
        z_q = (z.to(out_dtype) + (q.to(out_dtype) - z.to(out_dtype)))  # value of z + sg(q - z)
        ctx.save_for_backward(diff, idx)
        ctx.c = (c_commit, c_book)
        ctx.meta = (z.dtype, codebook.dtype, codebook.shape[0], codebook.requires_grad)
        return z_q, loss

    @staticmethod
    def backward(ctx, g_zq, g_loss):
        diff, idx = ctx.saved_tensors
        c_commit, c_book = ctx.c
        z_dtype, cb_dtype, K, cb_grad = ctx.meta
        M = diff.numel()
        dz = g_zq.float() if g_zq is not None else torch.zeros_like(diff)
        dcb = None
        if g_loss is not None:
            scale = g_loss.float() * (2.0 / M)                       # ()
            if c_commit:
                dz = dz - (scale * c_commit) * diff                  # d/dz of c_commit * mean((sg(q) - z)^2)
            if c_book and cb_grad and ctx.needs_input_grad[1]:
                dcb = torch.zeros(K, diff.shape[1], dtype=torch.float32, device=diff.device)  # (K, D)
                dcb.index_add_(0, idx, (scale * c_book) * diff)
                dcb = dcb.to(cb_dtype)
        return dz.to(z_dtype), dcb, None, None, None
