"""Shared pieces of the quantizers added for issue 15: implicit-codebook health, the rotation trick,
ST helpers. Health is the same as VectorQuantizer's (steps_unused, usage_ema, perplexity, active and dead
codes, no host sync); the counts are all-reduced under DDP (one (K,) buffer) so every rank reports global
figures."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from vqfast.quantize.base import Layout, QuantizerBase, ddp_active


class ImplicitCodebookBase(QuantizerBase):
    """Layout + health for quantizers without a learned codebook table (FSQ, LFQ, BSQ): K = codebook_size,
    embed_dim = the input channels. No k-means, no restarts (the codebook is fixed)."""

    def __init__(self, codebook_size: int, dim: int, *, backend: str, layout: Layout, sane_index_shape: bool,
                 dead_code_steps: int, usage_decay: float, sync_ddp: bool):
        super().__init__(codebook_size, dim, 0.0, backend=backend, precision="ieee", layout=layout,
                         sane_index_shape=sane_index_shape, dead_code_steps=dead_code_steps,
                         restart_dead_codes=False, kmeans_init=False, kmeans_iters=1, usage_decay=usage_decay,
                         sync_ddp=sync_ddp)
        self.codebook_size = int(codebook_size)

    def _health_from_indices(self, idx: torch.Tensor) -> None:
        self._update_health(code_counts(idx, self.n_embed, self.sync_ddp and self.training), self.training)


def code_counts(idx: torch.Tensor, K: int, sync: bool) -> torch.Tensor:
    """fp32 (K,) assignments of the int64 indices idx (>= 0 entries only), all-reduced under DDP when sync."""
    flat = idx.reshape(-1)
    keep = (flat >= 0).float()
    counts = torch.zeros(K, dtype=torch.float32, device=idx.device)
    counts.scatter_add_(0, flat.clamp_min(0), keep)
    if sync and ddp_active():
        dist.all_reduce(counts)
    return counts


def rotate_to(src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """The rotation trick (Fifty et al. 2024, arXiv:2410.06424 §4.2; vector-quantize-pytorch
    vector_quantize_pytorch.py rotate_to / efficient_rotation_trick_transform): returns a tensor whose value
    is tgt and whose gradient w.r.t. src is the rotation R (src direction -> tgt direction) scaled by
    |tgt| / |src|; no gradient reaches tgt. src, tgt: (N, D)."""
    eps = 1e-6
    ns = src.norm(dim=-1, keepdim=True)
    nt = tgt.norm(dim=-1, keepdim=True)
    u = (src / ns.clamp_min(eps)).detach()
    q = (tgt / nt.clamp_min(eps)).detach()
    w = F.normalize(u + q, dim=-1, eps=eps).detach()
    e = src
    out = e - 2 * (e * w).sum(-1, keepdim=True) * w + 2 * (e * u).sum(-1, keepdim=True) * q
    return out * (nt / ns.clamp_min(eps)).detach()
