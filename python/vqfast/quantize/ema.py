"""EMAVectorQuantizer: taming's EMA-VQ (EmbeddingEMA) with the intended semantics of SPEC §1.2c.

taming's own class raises NameError on construction (CompVis/taming-transformers#218); this one works.
State (buffers, never in an optimizer): embedding.weight W (K, D) ~ N(0, 1), embedding.cluster_size c = 0,
embedding.embed_avg A = W. Training forward: pick codes with the pre-update W, then
`vqfast.ops.ema_update_` (counts/sums EMA, Laplace smoothing, W = A / c~). Loss = beta * mean((sg(q) - z)^2).
Under DDP the batch statistics are all-reduced in ONE flat buffer (K sums rows of stride round_up(D, 16), then K counts: ops.ema_update.stats_layout) before the EMA.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from vqfast.errors import InputError
from vqfast.ops import ema_update_, vq_straight_through
from vqfast.quantize._implicit import rotate_to
from vqfast.quantize.base import Layout, QuantizerBase, ddp_active


class EmbeddingEMA(nn.Module):
    """Holds the EMA codebook state under taming's names: weight, cluster_size, embed_avg (fp32 buffers)."""

    def __init__(self, num_tokens: int, codebook_dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.decay = float(decay)
        self.eps = float(eps)
        self.update = True
        weight = torch.randn(num_tokens, codebook_dim)
        self.register_buffer("weight", weight)
        self.register_buffer("cluster_size", torch.zeros(num_tokens))
        self.register_buffer("embed_avg", weight.clone())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.weight.index_select(0, idx)


class EMAVectorQuantizer(QuantizerBase):
    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, decay: float = 0.99, eps: float = 1e-5,
                 backend: str = "auto", *, precision: str = "ieee", layout: Layout = "channels_first",
                 sane_index_shape: bool = False, deterministic: bool = False, dead_code_steps: int = 100,
                 restart_dead_codes: bool = False, kmeans_init: bool = False, kmeans_iters: int = 10,
                 kmeans_init_method: str = "random",
                 usage_decay: float = 0.99, sync_ddp: bool = True, rotation_trick: bool = False):
        if not 0.0 <= decay <= 1.0:
            raise InputError(f"EMAVectorQuantizer: decay={decay} must be in [0, 1]")
        if not eps > 0.0:
            raise InputError(f"EMAVectorQuantizer: eps={eps} must be > 0")
        super().__init__(n_embed, embed_dim, beta, backend=backend, precision=precision, layout=layout,
                         sane_index_shape=sane_index_shape, dead_code_steps=dead_code_steps,
                         restart_dead_codes=restart_dead_codes, kmeans_init=kmeans_init,
                         kmeans_iters=kmeans_iters, usage_decay=usage_decay, sync_ddp=sync_ddp,
                         kmeans_init_method=kmeans_init_method)
        self.decay = float(decay)
        self.eps = float(eps)
        self.deterministic = deterministic
        self.rotation_trick = rotation_trick
        self.embedding = EmbeddingEMA(self.n_embed, self.embed_dim, decay, eps)

    def forward(self, z: torch.Tensor):
        z_flat = self._flatten(z)                                    # (N, D)
        self._maybe_kmeans_init(z_flat)
        idx, counts = self._lookup(z_flat)                           # (N,), (K,) with the pre-update codebook
        z_q, loss = vq_straight_through(z_flat, self.embedding.weight, idx, c_commit=self.beta, c_book=0.0,
                                        backend=self.backend)        # q gathered before the EMA update
        if self.training and self.embedding.update:
            self._ema_step(z_flat, idx)
        if self.rotation_trick:                                       # arXiv:2410.06424 instead of identity ST
            z_q = rotate_to(z_flat, self.embedding.weight.detach().index_select(0, idx).to(z_q.dtype))
        self._update_health(counts, self.training)
        if self.training and self.restart_dead_codes:
            self._restart_dead(z_flat)
        perplexity = self._last_metrics["perplexity"]
        return self._unflatten(z_q, z), loss, (perplexity, None, self._index_shape(idx, z))

    def _ema_step(self, z_flat: torch.Tensor, idx: torch.Tensor) -> None:
        """EMA update; under DDP the flat sums+counts buffer is all-reduced once before it."""
        def hook(stats: torch.Tensor) -> None:                      # stats: flat fp32 (stats_layout)
            dist.all_reduce(stats)

        emb = self.embedding
        ema_update_(emb.cluster_size, emb.embed_avg, emb.weight, z_flat.detach(), idx, decay=self.decay,
                    eps=self.eps, backend=self.backend, deterministic=self.deterministic,
                    reduce_hook=hook if self.sync_ddp and ddp_active() else None, check_values=False)

    @torch.no_grad()
    def _reset_codes(self, dead, sample):
        emb = self.embedding
        w = emb.weight.data       # untracked write: see VectorQuantizer._reset_codes (dead rows are unused here)
        w.copy_(torch.where(dead[:, None], sample.to(w.dtype), w))
        emb.embed_avg.copy_(torch.where(dead[:, None], sample, emb.embed_avg))
        emb.cluster_size.copy_(torch.where(dead, torch.ones_like(emb.cluster_size), emb.cluster_size))

    @torch.no_grad()
    def _set_from_kmeans(self, centroids, counts):
        emb = self.embedding
        c = counts.clamp_min(1.0)
        emb.weight.copy_(centroids)
        emb.cluster_size.copy_(c)
        emb.embed_avg.copy_(centroids * c[:, None])
