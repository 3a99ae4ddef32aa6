"""Small ViT building blocks for DinoVQ (SPEC §5.1): patch embedding, 2-D RoPE, pre-norm blocks with
LayerScale, and a patch-token encoder with optional register tokens.

RoPE follows the DINOv3 layout in spirit: the head dimension is split in two halves (y, x); each half
rotates with ``head_dim // 4`` frequencies ``base ** (-k / (head_dim // 4))`` over patch-centre
coordinates normalised to [-1, 1] separately per axis ("separate"). Train-time coordinate
augmentation as DINOv3 ``RopePositionEmbedding`` (``dinov3/layers/rope_position_encoding.py``), drawn once per
forward in training mode: ``shift_coords`` (coords += U(−s, s) per axis), ``jitter_coords`` (coords ×=
exp(U(−log j, log j)) per axis), ``rescale_coords`` (coords ×= exp(U(−log r, log r)), one factor for both
axes); None = off; eval mode uses the plain grid. Prefix tokens (cls, registers) are not rotated.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vqfast.errors import InputError

PosEmbed = Literal["rope", "learned"]
POS_EMBEDS = ("rope", "learned")


class Rope2D(nn.Module):
    """cos/sin tables for a (gh, gw) grid of patch tokens; ``head_dim`` must be divisible by 4."""

    def __init__(self, head_dim: int, base: float = 100.0, *, shift_coords: float | None = None,
                 jitter_coords: float | None = None, rescale_coords: float | None = None):
        super().__init__()
        if head_dim % 4:
            raise InputError(f"RoPE needs head_dim divisible by 4, got head_dim={head_dim}")
        for name, v, low in (("shift_coords", shift_coords, 0.0), ("jitter_coords", jitter_coords, 1.0),
                             ("rescale_coords", rescale_coords, 1.0)):
            if v is not None and not v >= low:
                raise InputError(f"RoPE {name}={v} must be >= {low} (or None)")
        self.shift_coords, self.jitter_coords, self.rescale_coords = shift_coords, jitter_coords, rescale_coords
        n = head_dim // 4
        periods = base ** (torch.arange(n, dtype=torch.float32) / n)  # (n,)
        self.register_buffer("periods", periods, persistent=False)
        self._cache: dict = {}

    @property
    def augments(self) -> bool:
        return self.training and any(v is not None for v in (self.shift_coords, self.jitter_coords,
                                                             self.rescale_coords))

    @staticmethod
    def grid_coords(gh: int, gw: int, device) -> torch.Tensor:
        """Patch centres normalised to [-1, 1] per axis ("separate"): (L, 2) as (y, x)."""
        ys = (torch.arange(gh, device=device, dtype=torch.float32) + 0.5) / gh * 2 - 1  # (gh,)
        xs = (torch.arange(gw, device=device, dtype=torch.float32) + 0.5) / gw * 2 - 1  # (gw,)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=-1)  # (L, 2)

    def augment(self, coords: torch.Tensor) -> torch.Tensor:
        """DINOv3's train-time shift → jitter → rescale on (L, 2) coords (device RNG: no host sync)."""
        dev = coords.device
        if self.shift_coords is not None:
            coords = coords + torch.empty(2, device=dev).uniform_(-self.shift_coords, self.shift_coords)[None, :]
        if self.jitter_coords is not None:
            j = math.log(self.jitter_coords)
            coords = coords * torch.empty(2, device=dev).uniform_(-j, j).exp()[None, :]
        if self.rescale_coords is not None:
            r = math.log(self.rescale_coords)
            coords = coords * torch.empty(1, device=dev).uniform_(-r, r).exp()
        return coords

    def tables(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = 2 * math.pi * coords[:, :, None] / self.periods.to(coords.device)[None, None, :]  # (L, 2, n)
        angles = angles.reshape(coords.shape[0], -1).repeat(1, 2)  # (L, head_dim)
        return angles.cos(), angles.sin()

    def forward(self, gh: int, gw: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.augments:
            return self.tables(self.augment(self.grid_coords(gh, gw, device)))
        key = (gh, gw, device)
        if key not in self._cache:
            self._cache[key] = self.tables(self.grid_coords(gh, gw, device))
        return self._cache[key]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """x: (B, heads, n_prefix + L, hd); rotates the last L tokens."""
    if n_prefix:
        prefix, patches = x[:, :, :n_prefix], x[:, :, n_prefix:]
        return torch.cat([prefix, patches * cos + _rotate_half(patches) * sin], dim=2)
    return x * cos + _rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise InputError(f"embed dim {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor, rope: tuple | None = None, n_prefix: int = 0) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, hd)
        if rope is not None:
            q = apply_rope(q, *rope, n_prefix)
            k = apply_rope(k, *rope, n_prefix)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, hd)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))  # (B, N, C)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float | None):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init))) if init else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma if self.gamma is not None else x


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)); x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, ffn_ratio: float = 4.0, layerscale_init: float | None = 1e-5,
                 bias: bool = True):
        super().__init__()
        hidden = int(dim * ffn_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, bias, bias)
        self.ls1 = LayerScale(dim, layerscale_init)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden, bias=bias), nn.GELU(), nn.Linear(hidden, dim, bias=bias))
        self.ls2 = LayerScale(dim, layerscale_init)

    def forward(self, x: torch.Tensor, rope: tuple | None = None, n_prefix: int = 0) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope, n_prefix))
        return x + self.ls2(self.mlp(self.norm2(x)))


class TokenTransformer(nn.Module):
    """Transformer over a (gh, gw) grid of tokens (B, L, dim) with RoPE or a learned position embedding,
    optional prefix (register) tokens that are dropped at the output. Used for the encoder trunk and both
    DinoVQ decoders."""

    def __init__(self, dim: int, depth: int, num_heads: int, grid: tuple[int, int], *, pos_embed: PosEmbed = "rope",
                 rope_base: float = 100.0, ffn_ratio: float = 4.0, layerscale_init: float | None = 1e-5,
                 num_register_tokens: int = 0, bias: bool = True, rope_augment: dict | None = None):
        super().__init__()
        if pos_embed not in POS_EMBEDS:
            raise InputError(f"pos_embed={pos_embed!r} is not one of {POS_EMBEDS}")
        self.grid = grid
        self.pos_embed_kind = pos_embed
        L = grid[0] * grid[1]
        self.pos_embed = nn.Parameter(torch.randn(1, L, dim) * 0.02) if pos_embed == "learned" else None
        self.rope = Rope2D(dim // num_heads, rope_base, **(rope_augment or {})) if pos_embed == "rope" else None
        self.registers = nn.Parameter(torch.randn(1, num_register_tokens, dim) * 0.02) if num_register_tokens else None
        self.blocks = nn.ModuleList(Block(dim, num_heads, ffn_ratio, layerscale_init, bias) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _L, _ = x.shape  # (B, L, dim)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        n_prefix = 0
        if self.registers is not None:
            n_prefix = self.registers.shape[1]
            x = torch.cat([self.registers.expand(B, -1, -1), x], dim=1)  # (B, R + L, dim)
        rope = self.rope(*self.grid, x.device) if self.rope is not None else None
        if rope is not None:
            rope = (rope[0].to(x.dtype), rope[1].to(x.dtype))
        for block in self.blocks:
            x = block(x, rope, n_prefix)
        return self.norm(x[:, n_prefix:])  # (B, L, dim)


class PatchEmbed(nn.Module):
    """(B, C, H, W) → (B, L, dim) with a stride-``patch_size`` convolution."""

    def __init__(self, img_size: tuple[int, int], patch_size: int, in_chans: int, dim: int):
        super().__init__()
        if img_size[0] % patch_size or img_size[1] % patch_size:
            raise InputError(f"img_size={tuple(img_size)} is not divisible by patch_size={patch_size}")
        self.img_size = tuple(img_size)
        self.grid = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.proj = nn.Conv2d(in_chans, dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[-2:]) != self.img_size:
            raise InputError(f"expected images (B, C, {self.img_size[0]}, {self.img_size[1]}), "
                             f"got shape {tuple(x.shape)}")
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, L, dim)


class ViTEncoder(nn.Module):
    """Patch embedding + TokenTransformer: images (B, C, H, W) → patch tokens (B, L, dim)."""

    def __init__(self, img_size: tuple[int, int], patch_size: int, in_chans: int, dim: int, depth: int,
                 num_heads: int, *, pos_embed: PosEmbed = "rope", rope_base: float = 100.0, ffn_ratio: float = 4.0,
                 layerscale_init: float | None = 1e-5, num_register_tokens: int = 0, bias: bool = True,
                 rope_augment: dict | None = None):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, dim)
        self.grid = self.patch_embed.grid
        self.trunk = TokenTransformer(dim, depth, num_heads, self.grid, pos_embed=pos_embed, rope_base=rope_base,
                                      ffn_ratio=ffn_ratio, layerscale_init=layerscale_init,
                                      num_register_tokens=num_register_tokens, bias=bias, rope_augment=rope_augment)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.patch_embed(x))  # (B, L, dim)
