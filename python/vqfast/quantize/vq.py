"""VectorQuantizer: taming-transformers VectorQuantizer2 semantics on the fused nearest_code lookup.

Loss (SPEC §1.2b): legacy=True (taming default)  -> mean((sg(q) - z)^2) + beta * mean((q - sg(z))^2)
                   legacy=False (VQ-VAE paper)    -> beta * mean((sg(q) - z)^2) + mean((q - sg(z))^2)
Output z + sg(q - z) (or, with rotation_trick=True, the rotation trick of arXiv:2410.06424 as in
vector-quantize-pytorch rotate_to); returns (z_q, loss, (perplexity, None, indices)); parameter `embedding.weight`
initialised U(-1/K, 1/K) as taming does.
"""
from __future__ import annotations

import torch
from torch import nn

from vqfast.ops import vq_straight_through
from vqfast.quantize._implicit import rotate_to
from vqfast.quantize.base import Layout, QuantizerBase


class VectorQuantizer(QuantizerBase):
    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, legacy: bool = True,
                 backend: str = "auto", *, precision: str = "ieee", layout: Layout = "channels_first",
                 sane_index_shape: bool = False, dead_code_steps: int = 100, restart_dead_codes: bool = False,
                 kmeans_init: bool = False, kmeans_iters: int = 10, kmeans_init_method: str = "random",
                 usage_decay: float = 0.99, sync_ddp: bool = True, rotation_trick: bool = False):
        super().__init__(n_embed, embed_dim, beta, backend=backend, precision=precision, layout=layout,
                         sane_index_shape=sane_index_shape, dead_code_steps=dead_code_steps,
                         restart_dead_codes=restart_dead_codes, kmeans_init=kmeans_init,
                         kmeans_iters=kmeans_iters, usage_decay=usage_decay, sync_ddp=sync_ddp,
                         kmeans_init_method=kmeans_init_method)
        self.legacy = legacy
        self.rotation_trick = rotation_trick
        self.embedding = nn.Embedding(self.n_embed, self.embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / self.n_embed, 1.0 / self.n_embed)

    def forward(self, z: torch.Tensor):
        z_flat = self._flatten(z)                                    # (N, D)
        self._maybe_kmeans_init(z_flat)
        idx, counts = self._lookup(z_flat)                           # (N,), (K,)
        c_commit, c_book = (1.0, self.beta) if self.legacy else (self.beta, 1.0)
        z_q, loss = vq_straight_through(z_flat, self.embedding.weight, idx, c_commit=c_commit, c_book=c_book,
                                        backend=self.backend)        # (N, D), ()
        if self.rotation_trick:                                       # arXiv:2410.06424 instead of identity ST
            z_q = rotate_to(z_flat, self.embedding.weight.detach().index_select(0, idx).to(z_q.dtype))
        self._update_health(counts, self.training)
        if self.training and self.restart_dead_codes:
            self._restart_dead(z_flat)
        perplexity = self._last_metrics["perplexity"]
        return self._unflatten(z_q, z), loss, (perplexity, None, self._index_shape(idx, z))

    @torch.no_grad()
    def _reset_codes(self, dead, sample):
        # Through .data: the Triton straight-through node saved this codebook for its backward, and a tracked
        # in-place write would fail that backward. Exact: a dead code has count 0 this step, so no idx of
        # this step points at a replaced row and the backward reads only rows that did not change.
        w = self.embedding.weight.data
        w.copy_(torch.where(dead[:, None], sample.to(w.dtype), w))

    @torch.no_grad()
    def _set_from_kmeans(self, centroids, counts):
        self.embedding.weight.copy_(centroids)
