"""SimVQ (Zhu et al. 2024, arXiv:2411.02038): the codebook is a frozen random basis through a learned
linear map, C = code_transform(frozen_codebook).

vector-quantize-pytorch sim_vq.py SimVQ: frozen_codebook ~ N(0, 1/D_f) (K, D_f) buffer, code_transform =
Linear(D_f, dim, bias=False), idx = argmin |x - C_k| (here `nearest_code` on C, never N x K), loss =
commitment_weight (mse(sg(x), q) + input_to_quantize_commit_loss_weight mse(x, sg(q))), output through the
rotation trick (default) or z + sg(q - z). Memory O(K D) for C.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vqfast.ops import nearest_code
from vqfast.quantize._implicit import rotate_to
from vqfast.quantize.base import Layout, QuantizerBase, ddp_active


class SimVQ(QuantizerBase):
    def __init__(self, dim: int, codebook_size: int, *, rotation_trick: bool = True,
                 input_to_quantize_commit_loss_weight: float = 0.25, commitment_weight: float = 1.0,
                 frozen_codebook_dim: int | None = None, backend: str = "auto", precision: str = "ieee",
                 layout: Layout = "channels_first", sane_index_shape: bool = False, dead_code_steps: int = 100,
                 usage_decay: float = 0.99, sync_ddp: bool = True):
        super().__init__(codebook_size, dim, float(input_to_quantize_commit_loss_weight), backend=backend,
                         precision=precision, layout=layout, sane_index_shape=sane_index_shape,
                         dead_code_steps=dead_code_steps, restart_dead_codes=False, kmeans_init=False,
                         kmeans_iters=1, usage_decay=usage_decay, sync_ddp=sync_ddp)
        df = int(dim if frozen_codebook_dim is None else frozen_codebook_dim)
        self.codebook_size = self.n_embed
        self.register_buffer("frozen_codebook", torch.randn(self.n_embed, df) * df ** -0.5)
        self.code_transform = nn.Linear(df, self.embed_dim, bias=False)
        self.rotation_trick = rotation_trick
        self.input_to_quantize_commit_loss_weight = float(input_to_quantize_commit_loss_weight)
        self.commitment_weight = float(commitment_weight)

    @property
    def codebook(self) -> torch.Tensor:
        return self.code_transform(self.frozen_codebook)                   # (K, D)

    def get_codebook_entry(self, indices: torch.Tensor, shape=None) -> torch.Tensor:
        z_q = self.code_transform(self.frozen_codebook.index_select(0, indices.reshape(-1).long()))
        if shape is not None:
            z_q = z_q.view(shape)
            if self.layout == "channels_first":
                z_q = z_q.movedim(-1, 1).contiguous()
        return z_q

    def forward(self, z: torch.Tensor):
        x = self._flatten(z)                                               # (N, D)
        C = self.codebook                                                  # (K, D), differentiable
        idx, _, counts = nearest_code(x.detach(), C.detach(), backend=self.backend, precision=self.precision,
                                      check_values=False, return_counts=True)
        if self.sync_ddp and self.training and ddp_active():
            dist.all_reduce(counts)
        q = C.index_select(0, idx)                                         # (N, D)
        loss = self.commitment_weight * (F.mse_loss(x.detach(), q)
                                         + self.input_to_quantize_commit_loss_weight * F.mse_loss(x, q.detach()))
        out = rotate_to(x, q) if self.rotation_trick else x + (q - x).detach()
        self._update_health(counts, self.training)
        return self._unflatten(out, z), loss, (self._last_metrics["perplexity"], None, self._index_shape(idx, z))
