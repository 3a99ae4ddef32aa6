"""LFQ (MAGVIT-v2, arXiv:2310.05737) and BSQ (BSQ-ViT, arXiv:2406.07548): sign quantizers over the implicit
{±a}^d codebook with entropy losses computed without the (N, 2^d) table (vqfast.ops.binary_entropy).

LFQ follows vector-quantize-pytorch lookup_free_quantization.py LFQ (argument names, quantisation, index
order, loss = entropy_loss_weight (H_sample - diversity_gamma H_codebook) + commitment_loss_weight
mse(x, sg(q)), training only; `spherical=True` l2-normalises input and codes). BSQ follows BSQ-ViT
transcoder/models/quantizer/bsq.py BinarySphericalQuantizer (soft entropy, analytical per-sample term):
u = z / |z|, q = sign(u) / sqrt(d), output u + sg(q - u) scaled as there, loss =
beta mean(|sg(q) - u|^2) + zeta (gamma0 H_sample - gamma H_codebook) / inv_temperature, with the codebook
entropy exact (group_size = d) or BSQ-ViT's group approximation (sum over groups of group_size bits).
Both use the exact entropies (see binary_entropy's docstring for the eps differences).
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vqfast.errors import InputError
from vqfast.ops.binary_entropy import codebook_entropy, per_sample_entropy
from vqfast.quantize._implicit import ImplicitCodebookBase
from vqfast.quantize.base import Layout, ddp_active


def _mean_all_reduce(avg: torch.Tensor) -> None:
    dist.all_reduce(avg)
    avg.div_(dist.get_world_size())


class _BinaryBase(ImplicitCodebookBase):
    def __init__(self, codebook_size, dim, **kw):
        super().__init__(codebook_size, dim, **kw)
        self.codebook_dim = int(round(math.log2(codebook_size)))
        self.register_buffer("mask", 2 ** torch.arange(self.codebook_dim - 1, -1, -1), persistent=False)
        self._last_entropy: dict[str, torch.Tensor] = {}

    def _indices(self, q: torch.Tensor) -> torch.Tensor:
        return ((q > 0).long() * self.mask).sum(-1)                       # (N,) int64, bit 0 = MSB

    def _bits_to_signs(self, indices: torch.Tensor) -> torch.Tensor:
        return ((indices.long()[..., None] & self.mask) != 0).float() * 2 - 1  # (..., d) in {-1, 1}

    def _entropies(self, L: torch.Tensor, group: int):
        hook = _mean_all_reduce if self.sync_ddp and ddp_active() else None
        h_sample = per_sample_entropy(L)
        h_book = sum(codebook_entropy(L[:, s:s + group], backend=self.backend, reduce_hook=hook)[0]
                     for s in range(0, L.shape[1], group))
        self._last_entropy = {"per_sample_entropy": h_sample.detach(), "codebook_entropy": h_book.detach()}
        return h_sample, h_book

    def codebook_metrics(self) -> dict[str, torch.Tensor]:
        return {**self._last_metrics, **self._last_entropy}

    def _finish(self, out, loss, idx, z):
        self._health_from_indices(idx)
        return self._unflatten(out, z), loss, (self._last_metrics["perplexity"], None, self._index_shape(idx, z))


class LFQ(_BinaryBase):
    def __init__(self, dim: int | None = None, codebook_size: int | None = None, entropy_loss_weight: float = 0.1,
                 commitment_loss_weight: float = 0.25, diversity_gamma: float = 1.0, *, codebook_scale: float = 1.0,
                 inv_temperature: float = 100.0, has_projections: bool | None = None,
                 projection_has_bias: bool = True, soft_clamp_input_value: float | None = None,
                 spherical: bool = False, backend: str = "auto", layout: Layout = "channels_first",
                 sane_index_shape: bool = False, dead_code_steps: int = 100, usage_decay: float = 0.99,
                 sync_ddp: bool = True):
        if dim is None and codebook_size is None:
            raise InputError("LFQ: give dim or codebook_size")
        codebook_size = 2 ** int(dim) if codebook_size is None else int(codebook_size)
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise InputError(f"LFQ: codebook_size={codebook_size} must be a power of two >= 2")
        bits = codebook_size.bit_length() - 1
        dim = bits if dim is None else int(dim)
        if soft_clamp_input_value is not None and soft_clamp_input_value < codebook_scale:
            raise InputError(f"LFQ: soft_clamp_input_value={soft_clamp_input_value} must be >= "
                             f"codebook_scale={codebook_scale}")
        if not inv_temperature > 0:
            raise InputError(f"LFQ: inv_temperature={inv_temperature} must be > 0")
        super().__init__(codebook_size, dim, backend=backend, layout=layout, sane_index_shape=sane_index_shape,
                         dead_code_steps=dead_code_steps, usage_decay=usage_decay, sync_ddp=sync_ddp)
        self.has_projections = dim != bits if has_projections is None else bool(has_projections)
        self.project_in = nn.Linear(dim, bits, bias=projection_has_bias) if self.has_projections else nn.Identity()
        self.project_out = nn.Linear(bits, dim, bias=projection_has_bias) if self.has_projections else nn.Identity()
        self.entropy_loss_weight = float(entropy_loss_weight)
        self.commitment_loss_weight = float(commitment_loss_weight)
        self.diversity_gamma = float(diversity_gamma)
        self.codebook_scale = float(codebook_scale)
        self.inv_temperature = float(inv_temperature)
        self.soft_clamp_input_value = soft_clamp_input_value
        self.spherical = spherical

    def _l2(self, t):
        return F.normalize(t, dim=-1) * self.codebook_scale if self.spherical else t

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self._l2(self._bits_to_signs(indices) * self.codebook_scale)

    def get_codebook_entry(self, indices: torch.Tensor, shape=None) -> torch.Tensor:
        z_q = self.project_out(self.indices_to_codes(indices.reshape(-1)))
        if shape is not None:
            z_q = z_q.view(shape)
            if self.layout == "channels_first":
                z_q = z_q.movedim(-1, 1).contiguous()
        return z_q

    def forward(self, z: torch.Tensor):
        z_flat = self._flatten(z)
        x = self.project_in(z_flat)
        if self.soft_clamp_input_value is not None:
            x = torch.tanh(x / self.soft_clamp_input_value) * self.soft_clamp_input_value
        dtype = x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = self._l2(x.float())                                          # (N, d)
            s = self.codebook_scale
            q = torch.where(x > 0, s, -s)
            idx = self._indices(q)
            q = self._l2(q)
            out = x + (q - x).detach() if self.training else q
            loss = torch.zeros((), dtype=torch.float32, device=z.device)
            if self.training:
                a = s / math.sqrt(x.shape[1]) if self.spherical else s      # code magnitude per bit
                h_sample, h_book = self._entropies(4.0 * a * self.inv_temperature * x, x.shape[1])
                loss = self.entropy_loss_weight * (h_sample - self.diversity_gamma * h_book)
                if self.commitment_loss_weight > 0:
                    loss = loss + self.commitment_loss_weight * F.mse_loss(x, q.detach())
        return self._finish(self.project_out(out.to(dtype)), loss, idx, z)


class BSQ(_BinaryBase):
    def __init__(self, dim: int, beta: float = 0.25, gamma0: float = 1.0, gamma: float = 1.0, zeta: float = 1.0, *,
                 inv_temperature: float = 1.0, group_size: int | None = None, backend: str = "auto",
                 layout: Layout = "channels_first", sane_index_shape: bool = False, dead_code_steps: int = 100,
                 usage_decay: float = 0.99, sync_ddp: bool = True):
        dim = int(dim)
        group_size = dim if group_size is None else int(group_size)
        if dim < 1 or group_size < 1 or dim % group_size:
            raise InputError(f"BSQ: dim={dim} must be >= 1 and a multiple of group_size={group_size}")
        if dim > 62:
            raise InputError(f"BSQ: dim={dim} bits do not fit int64 indices (max 62)")
        if not inv_temperature > 0:
            raise InputError(f"BSQ: inv_temperature={inv_temperature} must be > 0")
        super().__init__(2 ** dim, dim, backend=backend, layout=layout, sane_index_shape=sane_index_shape,
                         dead_code_steps=dead_code_steps, usage_decay=usage_decay, sync_ddp=sync_ddp)
        self.beta, self.gamma0, self.gamma, self.zeta = float(beta), float(gamma0), float(gamma), float(zeta)
        self.inv_temperature = float(inv_temperature)
        self.group_size = group_size

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self._bits_to_signs(indices) / math.sqrt(self.embed_dim)

    def get_codebook_entry(self, indices: torch.Tensor, shape=None) -> torch.Tensor:
        z_q = self.indices_to_codes(indices.reshape(-1))
        if shape is not None:
            z_q = z_q.view(shape)
            if self.layout == "channels_first":
                z_q = z_q.movedim(-1, 1).contiguous()
        return z_q

    def forward(self, z: torch.Tensor):
        z_flat = self._flatten(z)
        dtype = z_flat.dtype
        with torch.autocast(device_type=z_flat.device.type, enabled=False):
            u = F.normalize(z_flat.float(), dim=-1)                           # (N, d) on the sphere
            d = u.shape[1]
            sign = torch.where(u > 0, 1.0, -1.0)
            idx = self._indices(sign)
            out = (u + (sign - u).detach()) / math.sqrt(d)                   # BSQ-ViT: zq * q_scale
            q = sign / math.sqrt(d)
            loss = self.beta * ((q - u) ** 2).sum(-1).mean()                 # sg(q) - u: q carries no grad
            if self.training:
                L = 4.0 / math.sqrt(d) * self.inv_temperature * u
                h_sample, h_book = self._entropies(L, self.group_size)
                loss = loss + self.zeta * (self.gamma0 * h_sample - self.gamma * h_book) / self.inv_temperature
        return self._finish(out.to(dtype), loss, idx, z)
