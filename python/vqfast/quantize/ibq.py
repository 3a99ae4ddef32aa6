"""IBQ: index backpropagation quantization (Shi et al. 2025, arXiv:2412.02692).

SEED-Voken src/IBQ/modules/vqvae/quantize.py IndexPropagationQuantize.forward (training branch):
    logits = z E^T; idx = argmax; z_q = (hard - sg(soft) + soft) E   (value E[idx], gradient through the
    softmax to every code); loss = mean((z_q - z)^2) + mean((sg(z_q2) - z)^2) + beta mean((z_q2 - sg(z))^2)
    with z_q2 = hard E. Eval: z_q = E[idx], loss 0.
Here idx comes from `nearest_code` with a zero codebook-norm vector (argmin -2 z.E = argmax z.E, never N x K)
and the soft path from `vqfast.ops.ibq_soft` (online softmax over codebook tiles, O(N D + K D)).
`backend` selects the kernels of nearest_code and of the soft path (vqfast.ops.ibq_soft dispatch rule).
use_entropy_loss adds entropy_loss_weight * SEED-Voken's compute_entropy_loss (w_s H_sample - w_b H_codebook of
softmax(z E^T / entropy_temperature), this batch) from `vqfast.ops.ibq_soft.ibq_entropy_loss`, streamed
(never N x K); SEED-Voken applies its weight in the model's loss, here it is entropy_loss_weight.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from vqfast.ops import nearest_code
from vqfast.ops.ibq_soft import ibq_entropy_loss, ibq_soft
from vqfast.quantize.base import Layout, QuantizerBase, ddp_active


class IBQ(QuantizerBase):
    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, backend: str = "auto", *,
                 layout: Layout = "channels_first", sane_index_shape: bool = False, dead_code_steps: int = 100,
                 restart_dead_codes: bool = False, kmeans_init: bool = False, kmeans_iters: int = 10,
                 kmeans_init_method: str = "random",
                 usage_decay: float = 0.99, sync_ddp: bool = True, use_entropy_loss: bool = False,
                 entropy_temperature: float = 0.01, sample_minimization_weight: float = 1.0,
                 batch_maximization_weight: float = 1.0, entropy_loss_weight: float = 1.0):
        super().__init__(n_embed, embed_dim, beta, backend=backend, precision="ieee", layout=layout,
                         sane_index_shape=sane_index_shape, dead_code_steps=dead_code_steps,
                         restart_dead_codes=restart_dead_codes, kmeans_init=kmeans_init,
                         kmeans_iters=kmeans_iters, usage_decay=usage_decay, sync_ddp=sync_ddp,
                         kmeans_init_method=kmeans_init_method)
        self.embedding = nn.Embedding(self.n_embed, self.embed_dim)   # N(0, 1) as SEED-Voken's nn.Embedding
        self.use_entropy_loss = use_entropy_loss
        self.entropy_temperature = float(entropy_temperature)
        self.sample_minimization_weight = float(sample_minimization_weight)
        self.batch_maximization_weight = float(batch_maximization_weight)
        self.entropy_loss_weight = float(entropy_loss_weight)
        self._last_entropy: dict[str, torch.Tensor] = {}

    def _lookup(self, z_flat):
        w = self.embedding.weight.detach()
        idx, _, counts = nearest_code(z_flat.detach(), w, backend=self.backend,
                                      codebook_sqnorm=torch.zeros(w.shape[0], dtype=torch.float32, device=w.device),
                                      check_values=False, return_counts=True)  # argmax z.E
        if self.sync_ddp and self.training and ddp_active():
            dist.all_reduce(counts)
        return idx, counts

    def forward(self, z: torch.Tensor):
        z_flat = self._flatten(z)                                       # (N, D)
        self._maybe_kmeans_init(z_flat)
        idx, counts = self._lookup(z_flat)
        w = self.embedding.weight
        if self.training:
            zf = z_flat.float()
            wf = w.float()
            z_q = ibq_soft(zf, wf, idx, backend=self.backend)
            z_q2 = wf.index_select(0, idx)
            loss = ((z_q - zf) ** 2).mean() + ((z_q2.detach() - zf) ** 2).mean() \
                + self.beta * ((z_q2 - zf.detach()) ** 2).mean()
            if self.use_entropy_loss:
                ent, h_sample, h_book = ibq_entropy_loss(
                    zf, wf, temperature=self.entropy_temperature,
                    sample_minimization_weight=self.sample_minimization_weight,
                    batch_maximization_weight=self.batch_maximization_weight)
                loss = loss + self.entropy_loss_weight * ent
                self._last_entropy = {"per_sample_entropy": h_sample, "codebook_entropy": h_book}
            z_q = z_q.to(z_flat.dtype)
        else:
            z_q = w.index_select(0, idx).to(z_flat.dtype)
            loss = torch.zeros((), dtype=torch.float32, device=z.device)
        self._update_health(counts, self.training)
        if self.training and self.restart_dead_codes:
            self._restart_dead(z_flat)
        return self._unflatten(z_q, z), loss, (self._last_metrics["perplexity"], None, self._index_shape(idx, z))

    def codebook_metrics(self) -> dict[str, torch.Tensor]:
        return {**self._last_metrics, **self._last_entropy}

    @torch.no_grad()
    def _reset_codes(self, dead, sample):
        w = self.embedding.weight
        w.copy_(torch.where(dead[:, None], sample.to(w.dtype), w))

    @torch.no_grad()
    def _set_from_kmeans(self, centroids, counts):
        self.embedding.weight.copy_(centroids)
