"""ResidualVQ (Zeghidour et al. 2021, arXiv:2107.03312 Algorithm 1; vector-quantize-pytorch residual_vq.py).

Stage i quantizes the residual r_i = x - sum_{j<i} q_j with its own codebook (or one shared codebook),
each stage a vqfast VectorQuantizer (learned, loss beta commitment + codebook) or EMAVectorQuantizer
(ema_update=True, vector-quantize-pytorch's default) on the fused `nearest_code` lookup; the output is
sum_i q_i with each stage's straight-through (gradient to x through every stage, as there: residuals use
sg(q)). Loss = sum of stage losses. Quantize dropout (training) keeps the first r+1 stages, r drawn from
a step-seeded generator, identical on every DDP rank without communication; dropped stages have index -1.
Indices (N, num_quantizers). Health: stage 0 under the plain names, every stage under stage<i>/<name>;
with a shared codebook the one codebook's health counts every stage's assignments.

beam_size > 1: the codes of all stages are chosen together by beam search over residual paths (RQ-VAE /
vector-quantize-pytorch's beam search): each of the beam_size partial paths is extended by its beam_size
nearest codes (chunked distances, never N x K) and the beam_size paths with the smallest residual error are
kept; the best final path is used. beam_size = 1 is the greedy per-stage argmin. Losses, EMA updates and
health then use the chosen codes exactly as the greedy path does.
"""
from __future__ import annotations

import random

import torch
from torch import nn

from vqfast.errors import InputError
from vqfast.ops import vq_straight_through
from vqfast.quantize._implicit import code_counts, rotate_to
from vqfast.quantize._residual import ResidualOutputs
from vqfast.quantize.base import Layout, QuantizerBase
from vqfast.quantize.ema import EMAVectorQuantizer
from vqfast.quantize.vq import VectorQuantizer


class ResidualVQ(ResidualOutputs, QuantizerBase):
    def __init__(self, num_quantizers: int, codebook_size: int, dim: int, *, shared_codebook: bool = False,
                 quantize_dropout: bool = False, quantize_dropout_cutoff_index: int = 0,
                 quantize_dropout_multiple_of: int = 1, ema_update: bool = True, decay: float = 0.8,
                 eps: float = 1e-5, commitment_weight: float = 1.0, rotation_trick: bool = False,
                 kmeans_init: bool = False, kmeans_iters: int = 10, restart_dead_codes: bool = False,
                 dead_code_steps: int = 100, backend: str = "auto", precision: str = "ieee",
                 layout: Layout = "channels_first", sane_index_shape: bool = False, usage_decay: float = 0.99,
                 sync_ddp: bool = True, seed: int = 0, beam_size: int = 1):
        if int(num_quantizers) < 1:
            raise InputError(f"ResidualVQ: num_quantizers={num_quantizers} must be >= 1")
        if not 0 <= quantize_dropout_cutoff_index < num_quantizers:
            raise InputError(f"ResidualVQ: quantize_dropout_cutoff_index={quantize_dropout_cutoff_index} must be "
                             f"in [0, num_quantizers={num_quantizers})")
        super().__init__(codebook_size, dim, commitment_weight, backend=backend, precision=precision, layout=layout,
                         sane_index_shape=sane_index_shape, dead_code_steps=dead_code_steps,
                         restart_dead_codes=False, kmeans_init=False, kmeans_iters=1, usage_decay=usage_decay,
                         sync_ddp=sync_ddp)
        if int(beam_size) < 1:
            raise InputError(f"ResidualVQ: beam_size={beam_size} must be >= 1")
        if int(beam_size) > 1 and (kmeans_init or restart_dead_codes):
            raise InputError("ResidualVQ: beam_size > 1 does not support kmeans_init or restart_dead_codes yet; "
                             "use beam_size=1 with them")
        self.beam_size = int(beam_size)
        self.num_quantizers = int(num_quantizers)
        self.codebook_size = self.n_embed
        self.shared_codebook = shared_codebook
        common = dict(backend=backend, precision=precision, layout="channels_last", dead_code_steps=dead_code_steps,
                      restart_dead_codes=restart_dead_codes, kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
                      usage_decay=usage_decay, sync_ddp=sync_ddp, rotation_trick=rotation_trick)

        def make():
            if ema_update:
                return EMAVectorQuantizer(self.n_embed, self.embed_dim, beta=commitment_weight, decay=decay, eps=eps,
                                          **common)
            return VectorQuantizer(self.n_embed, self.embed_dim, beta=commitment_weight, legacy=False, **common)

        self.layers = nn.ModuleList([make() for _ in range(1 if shared_codebook else self.num_quantizers)])
        self.quantize_dropout = bool(quantize_dropout) and self.num_quantizers > 1
        self.quantize_dropout_cutoff_index = int(quantize_dropout_cutoff_index)
        self.quantize_dropout_multiple_of = int(quantize_dropout_multiple_of)
        self.seed = int(seed)
        self._step = 0

    def stage(self, i: int) -> QuantizerBase:
        return self.layers[0 if self.shared_codebook else i]

    def _dropout_index(self) -> int:
        self._step += 1
        r = random.Random(self.seed * 1_000_003 + self._step).randrange(self.quantize_dropout_cutoff_index,
                                                                        self.num_quantizers)
        m = self.quantize_dropout_multiple_of
        return (-(-(r + 1) // m) * m) - 1 if m != 1 else r

    @torch.no_grad()
    def beam_search(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """(N, D) -> int64 (N, depth) codes of the best residual path found with beam_size beams."""
        depth = self.num_quantizers if depth is None else depth
        B, (N, D) = self.beam_size, x.shape
        res = x.detach().float()[:, None, :]                              # (N, beams, D)
        paths = torch.zeros(N, 1, 0, dtype=torch.int64, device=x.device)
        for i in range(depth):
            E = self.stage(i).embedding.weight.detach().float()           # (K, D)
            nb = res.shape[1]
            d, k = _topk_nearest(res.reshape(-1, D), E, min(B, E.shape[0]))   # (N nb, b)
            b = d.shape[1]
            top = d.view(N, nb * b).topk(min(B, nb * b), dim=1, largest=False)  # sorted: best first
            src = torch.div(top.indices, b, rounding_mode="floor")         # (N, B') beam each came from
            code = k.view(N, nb * b).gather(1, top.indices)
            paths = torch.cat([paths.gather(1, src[..., None].expand(-1, -1, i)), code[..., None]], dim=2)
            res = res.gather(1, src[..., None].expand(-1, -1, D)) - E.index_select(0, code.reshape(-1)).view(N, -1, D)
        return paths[:, 0, :]

    def _stage_with_codes(self, i: int, residual: torch.Tensor, idx: torch.Tensor):
        """Stage i's output and loss for given codes (the greedy forward's semantics)."""
        st = self.stage(i)
        ema = isinstance(st, EMAVectorQuantizer)
        c_commit, c_book = (st.beta, 0.0) if ema else ((1.0, st.beta) if st.legacy else (st.beta, 1.0))
        q, loss = vq_straight_through(residual, st.embedding.weight, idx, c_commit=c_commit, c_book=c_book,
                                      backend=st.backend)
        if st.rotation_trick:
            q = rotate_to(residual, st.embedding.weight.detach().index_select(0, idx).to(q.dtype))
        if ema and self.training and st.embedding.update:
            st._ema_step(residual, idx)
        st._update_health(code_counts(idx, st.n_embed, st.sync_ddp and self.training), self.training)
        return q, loss

    def forward(self, z: torch.Tensor):
        x = self._flatten(z)                                                 # (N, D)
        drop = self._dropout_index() if self.training and self.quantize_dropout and torch.is_grad_enabled() else None
        depth = self.num_quantizers if drop is None else drop + 1
        codes = self.beam_search(x, depth) if self.beam_size > 1 else None
        out = torch.zeros_like(x)
        residual = x
        loss = torch.zeros((), dtype=torch.float32, device=x.device)
        all_idx = []
        for i in range(self.num_quantizers):
            if drop is not None and i > drop:
                all_idx.append(torch.full((x.shape[0],), -1, dtype=torch.int64, device=x.device))
                continue
            if codes is None:
                q, l, (_, _, idx) = self.stage(i)(residual)
            else:
                idx = codes[:, i]
                q, l = self._stage_with_codes(i, residual, idx)
            residual = residual - q.detach()
            out = out + q
            loss = loss + l
            all_idx.append(idx)
        idx = torch.stack(all_idx, dim=-1)                                   # (N, Q)
        self._last_metrics = dict(self.stage(0).codebook_metrics())
        return self._residual_return(out, z, loss, idx)

    def get_codebook_entry(self, indices: torch.Tensor, shape=None) -> torch.Tensor:
        """indices (..., Q) (-1 = dropped) -> sum of the stages' codes."""
        idx = indices.reshape(-1, self.num_quantizers).long()
        z_q = torch.zeros(idx.shape[0], self.embed_dim, device=idx.device, dtype=self.stage(0).embedding.weight.dtype)
        for i in range(self.num_quantizers):
            w = self.stage(i).embedding.weight
            keep = (idx[:, i] >= 0)[:, None]
            z_q = z_q + torch.where(keep, w.index_select(0, idx[:, i].clamp_min(0)), 0.0)
        if shape is not None:
            z_q = z_q.view(shape)
            if self.layout == "channels_first":
                z_q = z_q.movedim(-1, 1).contiguous()
        return z_q


_CHUNK_ELEMENTS = 1 << 24


def _topk_nearest(r: torch.Tensor, E: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, D), (K, D) -> the b smallest squared distances (M, b) and their codes (M, b), in row chunks
    of at most _CHUNK_ELEMENTS distances (never M x K at once)."""
    esq = (E * E).sum(1)
    rows = max(1, _CHUNK_ELEMENTS // E.shape[0])
    ds, ks = [], []
    for s in range(0, r.shape[0], rows):
        rc = r[s:s + rows]
        d = ((rc * rc).sum(1, keepdim=True) + esq[None, :] - 2.0 * rc @ E.t()).clamp_min(0.0)
        top = d.topk(b, dim=1, largest=False)
        ds.append(top.values)
        ks.append(top.indices)
    return torch.cat(ds), torch.cat(ks)
