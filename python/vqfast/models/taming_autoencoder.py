"""taming ``Encoder`` / ``Decoder`` driven by ``ddconfig`` (SPEC.md §1.1).

State-dict names follow taming (``conv_in``, ``down.{i}.block.{j}``, ``down.{i}.attn.{j}``,
``down.{i}.downsample``, ``mid.block_1``, ``mid.attn_1``, ``mid.block_2``, ``up.{i}...``,
``norm_out``, ``conv_out``) so taming checkpoints load unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from vqfast.models.taming_blocks import AttnBlock, Downsample, ResnetBlock, Upsample, normalize, swish


def _attn_or_res(channels: int, use_attn: bool, dropout: float) -> nn.Module:
    # QuantArt's use_attn=False replaces every attention block by a ResnetBlock.
    return AttnBlock(channels) if use_attn else ResnetBlock(channels, channels, dropout)


def _check_ddconfig(ch: int, ch_mult: Sequence[int], num_res_blocks: int, resolution: int) -> None:
    if ch < 1 or num_res_blocks < 0 or len(ch_mult) < 1 or any(m < 1 for m in ch_mult):
        raise ValueError(
            f"ddconfig: ch={ch}, ch_mult={list(ch_mult)}, num_res_blocks={num_res_blocks} — "
            "need ch >= 1, a non-empty ch_mult of positive ints and num_res_blocks >= 0")
    factor = 2 ** (len(ch_mult) - 1)
    if resolution % factor:
        raise ValueError(f"ddconfig.resolution={resolution} is not divisible by the downsampling "
                         f"factor 2**(len(ch_mult)-1)={factor}")


class Encoder(nn.Module):
    def __init__(self, *, ch: int, ch_mult: Sequence[int] = (1, 2, 4, 8), num_res_blocks: int,
                 attn_resolutions: Sequence[int], in_channels: int, resolution: int, z_channels: int,
                 dropout: float = 0.0, resamp_with_conv: bool = True, double_z: bool = True,
                 use_attn: bool = True, out_ch: int | None = None, **ignored):
        super().__init__()
        _check_ddconfig(ch, ch_mult, num_res_blocks, resolution)
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        in_ch_mult = (1,) + tuple(ch_mult)
        curr_res = resolution
        self.down = nn.ModuleList()
        block_in = ch
        for i_level in range(self.num_resolutions):
            block_in = ch * in_ch_mult[i_level]
            block_out = ch * ch_mult[i_level]
            level = nn.Module()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    level.attn.append(_attn_or_res(block_in, use_attn, dropout))
            if i_level != self.num_resolutions - 1:
                level.downsample = Downsample(block_in)
                curr_res //= 2
            self.down.append(level)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout)
        self.mid.attn_1 = _attn_or_res(block_in, use_attn, dropout)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, ch, H, W)
        for i_level, level in enumerate(self.down):
            for i_block in range(self.num_res_blocks):
                h = level.block[i_block](h)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                h = level.downsample(h)  # (B, C, H/2, W/2)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))  # (B, z_channels[*2], H/f, W/f)


class Decoder(nn.Module):
    def __init__(self, *, ch: int, out_ch: int, ch_mult: Sequence[int] = (1, 2, 4, 8), num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, dropout: float = 0.0,
                 resamp_with_conv: bool = True, give_pre_end: bool = False, tanh_out: bool = False,
                 use_attn: bool = True, in_channels: int | None = None, **ignored):
        super().__init__()
        _check_ddconfig(ch, ch_mult, num_res_blocks, resolution)
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.give_pre_end, self.tanh_out = give_pre_end, tanh_out
        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.z_shape = (1, z_channels, curr_res, curr_res)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout)
        self.mid.attn_1 = _attn_or_res(block_in, use_attn, dropout)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout)
        levels: list[nn.Module] = []
        for i_level in reversed(range(self.num_resolutions)):
            block_out = ch * ch_mult[i_level]
            level = nn.Module()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    level.attn.append(_attn_or_res(block_in, use_attn, dropout))
            if i_level != 0:
                level.upsample = Upsample(block_in)
                curr_res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, 1, 1)

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight the adaptive GAN weight differentiates against (taming: conv_out.weight)."""
        return self.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)  # (B, C_top, h, w)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i_level in reversed(range(self.num_resolutions)):
            level = self.up[i_level]
            for i_block in range(self.num_res_blocks + 1):
                h = level.block[i_block](h)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
            if i_level != 0:
                h = level.upsample(h)  # (B, C, 2h, 2w)
        if self.give_pre_end:
            return h
        h = self.conv_out(swish(self.norm_out(h)))  # (B, out_ch, H, W)
        return torch.tanh(h) if self.tanh_out else h
