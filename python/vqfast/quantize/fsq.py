"""FSQ and ResidualFSQ (Mentzer et al. 2023, arXiv:2309.15505; residual: Algorithm 1 of arXiv:2107.03312).

Transcribes vector-quantize-pytorch finite_scalar_quantization.py FSQ (bound, symmetry_preserving_bound,
codes_to_indices, indices_to_codes) and residual_fsq.py ResidualFSQ, with vqfast's return convention
(z_q, loss, (perplexity, None, indices)), layouts and on-device health. The loss is 0 (FSQ has none).
Indices: sum_i level_index_i * prod_{j<i} L_j (vector-quantize-pytorch's `_basis`).
"""
from __future__ import annotations

import math
import random

import torch
from torch import nn

from vqfast.errors import InputError
from vqfast.quantize._implicit import ImplicitCodebookBase, code_counts
from vqfast.quantize._residual import ResidualOutputs
from vqfast.quantize.base import Layout, QuantizerBase


def _round_ste(z):
    return z + (z.round() - z).detach()


def _floor_ste(z):
    return z + (z.floor() - z).detach()


class FSQ(ImplicitCodebookBase):
    def __init__(self, levels, dim: int | None = None, *, preserve_symmetry: bool = False,
                 bound_hard_clamp: bool = False, projection_has_bias: bool = True, backend: str = "auto",
                 layout: Layout = "channels_first", sane_index_shape: bool = False, dead_code_steps: int = 100,
                 usage_decay: float = 0.99, sync_ddp: bool = True):
        levels = [int(v) for v in levels]
        if not levels or any(v < 2 for v in levels):
            raise InputError(f"FSQ: levels={levels} must be a non-empty list of integers >= 2")
        if any(v == 2 for v in levels) and not preserve_symmetry:
            raise InputError(f"FSQ: levels={levels} holds a 2; that needs preserve_symmetry=True "
                             "(vector-quantize-pytorch asserts the same)")
        codebook_size = math.prod(levels)
        if codebook_size >= 2**62:
            raise InputError(f"FSQ: prod(levels)={codebook_size} does not fit int64 indices")
        d = len(levels)
        dim = d if dim is None else int(dim)
        super().__init__(codebook_size, dim, backend=backend, layout=layout, sane_index_shape=sane_index_shape,
                         dead_code_steps=dead_code_steps, usage_decay=usage_decay, sync_ddp=sync_ddp)
        self.levels = levels
        self.codebook_dim = d
        self.preserve_symmetry = preserve_symmetry
        self.bound_hard_clamp = bound_hard_clamp
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.int64), persistent=False)
        self.register_buffer("_basis", torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.int64), 0),
                             persistent=False)
        self.has_projections = dim != d
        self.project_in = nn.Linear(dim, d, bias=projection_has_bias) if self.has_projections else nn.Identity()
        self.project_out = nn.Linear(d, dim, bias=projection_has_bias) if self.has_projections else nn.Identity()

    # ---- vector-quantize-pytorch FSQ.bound / symmetry_preserving_bound ----------------------------------
    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """(N, d) fp32 -> codes in [-1, 1] (N, d) with straight-through rounding."""
        L = self._levels.to(z.dtype)
        if self.preserve_symmetry:
            t = z.clamp(-1.0, 1.0) if self.bound_hard_clamp else torch.tanh(z)
            return 2.0 / (L - 1) * _floor_ste((L - 1) * (t + 1) / 2.0 + 0.5) - 1.0
        eps = 1e-3
        half_l = (L - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        if self.bound_hard_clamp:
            bounded = (z + offset / half_l).clamp(-1.0, 1.0) * half_l - offset
        else:
            bounded = torch.tanh(z + torch.atanh(offset / half_l)) * half_l - offset
        return _round_ste(bounded) / (self._levels // 2).to(z.dtype)

    def _scale_and_shift(self, codes):
        L = self._levels.to(codes.dtype)
        if self.preserve_symmetry:
            return (codes + 1.0) / (2.0 / (L - 1))
        hw = (self._levels // 2).to(codes.dtype)
        return codes * hw + hw

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        digits = self._scale_and_shift(codes).round().long()
        return (digits * self._basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """int64 (...,) -> codes (..., d) fp32 in [-1, 1] (before project_out)."""
        level = (indices.long()[..., None] // self._basis) % self._levels
        L = self._levels.float()
        if self.preserve_symmetry:
            return level.float() * (2.0 / (L - 1)) - 1.0
        hw = (self._levels // 2).float()
        return (level.float() - hw) / hw

    def get_codebook_entry(self, indices: torch.Tensor, shape=None) -> torch.Tensor:
        z_q = self.project_out(self.indices_to_codes(indices.reshape(-1)))    # (N, dim)
        if shape is not None:
            z_q = z_q.view(shape)
            if self.layout == "channels_first":
                z_q = z_q.movedim(-1, 1).contiguous()
        return z_q

    def forward(self, z: torch.Tensor):
        z_flat = self._flatten(z)                                          # (N, dim)
        h = self.project_in(z_flat)                                        # (N, d)
        with torch.autocast(device_type=h.device.type, enabled=False):
            codes = self.quantize(h.float())                               # (N, d) fp32
            idx = self.codes_to_indices(codes.detach())                    # (N,)
        out = self.project_out(codes.to(h.dtype))                          # (N, dim)
        self._health_from_indices(idx)
        loss = torch.zeros((), dtype=torch.float32, device=z.device)
        return self._unflatten(out, z), loss, (self._last_metrics["perplexity"], None, self._index_shape(idx, z))


class ResidualFSQ(ResidualOutputs, QuantizerBase):
    """vector-quantize-pytorch ResidualFSQ: num_quantizers FSQ layers (preserve_symmetry) on the residual,
    layer i at scale levels^-i; quantize dropout keeps the first r+1 layers, r drawn per step in
    [quantize_dropout_cutoff_index, num_quantizers) from a step-seeded generator (identical on every DDP
    rank without communication); dropped layers give index -1. Indices (N, num_quantizers)."""

    def __init__(self, levels, num_quantizers: int, dim: int | None = None, *, quantize_dropout: bool = False,
                 quantize_dropout_cutoff_index: int = 0, quantize_dropout_multiple_of: int = 1,
                 bound_hard_clamp: bool = True, backend: str = "auto", layout: Layout = "channels_first",
                 sane_index_shape: bool = False, dead_code_steps: int = 100, usage_decay: float = 0.99,
                 sync_ddp: bool = True, seed: int = 0):
        levels = [int(v) for v in levels]
        if int(num_quantizers) < 1:
            raise InputError(f"ResidualFSQ: num_quantizers={num_quantizers} must be >= 1")
        if not 0 <= quantize_dropout_cutoff_index < num_quantizers:
            raise InputError(f"ResidualFSQ: quantize_dropout_cutoff_index={quantize_dropout_cutoff_index} must be "
                             f"in [0, num_quantizers={num_quantizers})")
        d = len(levels)
        dim = d if dim is None else int(dim)
        super().__init__(math.prod(levels), dim, 0.0, backend=backend, precision="ieee", layout=layout,
                         sane_index_shape=sane_index_shape, dead_code_steps=dead_code_steps,
                         restart_dead_codes=False, kmeans_init=False, kmeans_iters=1, usage_decay=usage_decay,
                         sync_ddp=sync_ddp)
        self.num_quantizers = int(num_quantizers)
        self.codebook_size = math.prod(levels)
        self.has_projections = dim != d
        self.project_in = nn.Linear(dim, d) if self.has_projections else nn.Identity()
        self.project_out = nn.Linear(d, dim) if self.has_projections else nn.Identity()
        self.layers = nn.ModuleList([
            FSQ(levels, preserve_symmetry=True, bound_hard_clamp=bound_hard_clamp, backend=backend,
                layout="channels_last", dead_code_steps=dead_code_steps, usage_decay=usage_decay, sync_ddp=sync_ddp)
            for _ in range(self.num_quantizers)])
        lv = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("scales", torch.stack([lv ** -i for i in range(self.num_quantizers)]), persistent=False)
        self.register_buffer("soft_clamp_input_value", 1 + 1 / (lv - 1) if bound_hard_clamp else None,
                             persistent=False)
        self.quantize_dropout = bool(quantize_dropout) and self.num_quantizers > 1
        self.quantize_dropout_cutoff_index = int(quantize_dropout_cutoff_index)
        self.quantize_dropout_multiple_of = int(quantize_dropout_multiple_of)
        self.seed = int(seed)
        self._step = 0

    def _dropout_index(self) -> int:
        self._step += 1
        r = random.Random(self.seed * 1_000_003 + self._step).randrange(self.quantize_dropout_cutoff_index,
                                                                        self.num_quantizers)
        m = self.quantize_dropout_multiple_of
        return (-(-(r + 1) // m) * m) - 1 if m != 1 else r

    def forward(self, z: torch.Tensor):
        z_flat = self._flatten(z)
        x = self.project_in(z_flat).float()
        if self.soft_clamp_input_value is not None:
            c = self.soft_clamp_input_value
            x = torch.tanh(x / c) * c
        drop = self._dropout_index() if self.training and self.quantize_dropout and torch.is_grad_enabled() else None
        out = torch.zeros_like(x)
        residual = x
        all_idx = []
        for i, (layer, scale) in enumerate(zip(self.layers, self.scales, strict=True)):
            if drop is not None and i > drop:
                all_idx.append(torch.full((x.shape[0],), -1, dtype=torch.int64, device=x.device))
                continue
            q, _, (_, _, idx) = layer(residual / scale)
            q = q * scale
            residual = residual - q.detach()
            out = out + q
            all_idx.append(idx)
        idx = torch.stack(all_idx, dim=-1)                                  # (N, Q)
        self._update_health(code_counts(idx[:, 0], self.n_embed, self.sync_ddp and self.training), self.training)
        out = self.project_out(out.to(z_flat.dtype))
        loss = torch.zeros((), dtype=torch.float32, device=z.device)
        return self._residual_return(out, z, loss, idx)

    def get_codebook_entry(self, indices: torch.Tensor, shape=None) -> torch.Tensor:
        """indices (..., Q) (-1 = dropped) -> the summed, scaled codes, projected out."""
        idx = indices.reshape(-1, self.num_quantizers)
        codes = self.layers[0].indices_to_codes(idx.clamp_min(0))          # (N, Q, d)
        codes = codes.masked_fill((idx < 0)[..., None], 0.0) * self.scales[None]
        z_q = self.project_out(codes.sum(1))
        if shape is not None:
            z_q = z_q.view(shape)
            if self.layout == "channels_first":
                z_q = z_q.movedim(-1, 1).contiguous()
        return z_q
