"""taming-transformers building blocks (``taming/modules/diffusionmodules/model.py``), SPEC.md §1.1.

Written from the spec, not copied. Parameter names match taming so its checkpoints load:
``norm1/conv1/norm2/conv2/nin_shortcut`` in ResnetBlock, ``norm/q/k/v/proj_out`` in AttnBlock,
``conv`` in Downsample/Upsample.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def normalize(channels: int) -> nn.GroupNorm:
    """taming ``Normalize``: GroupNorm(32 groups, eps 1e-6, affine); one group if C < 32 (QuantArt fork)."""
    groups = 32 if channels >= 32 and channels % 32 == 0 else 1
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    """h = conv(drop(swish(GN(conv(swish(GN(x))))))); out = skip(x) + h (no timestep embedding)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))  # (B, Cout, H, W)
        h = self.conv2(self.dropout(swish(self.norm2(h))))  # (B, Cout, H, W)
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head full spatial self-attention with a residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        q = self.q(hn).reshape(b, c, h * w).transpose(1, 2)  # (B, HW, C)
        k = self.k(hn).reshape(b, c, h * w).transpose(1, 2)  # (B, HW, C)
        v = self.v(hn).reshape(b, c, h * w).transpose(1, 2)  # (B, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C), softmax(q k^T / sqrt(C)) v
        out = out.transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Pad (0,1,0,1) then conv3x3 stride 2 (taming's asymmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Nearest x2 then conv3x3."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)
