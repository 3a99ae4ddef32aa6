"""VQ-VAE models of the video pipeline (SPEC.md §3.5-3.6).

- ``VQVAE2``: multi-level VQ-VAE-2 (rosinality / vvvm23 generalisation, SPEC §3.5, §3.6.2) with EMA
  codebooks per level. ``nb_levels=2, scaling_rates=(4, 2)`` is rosinality's top/bottom model.
  This is what seed 002's ``model_type: VQVAE2`` means in vqfast (a user expects VQVAE2 = VQ-VAE-2).
- ``VqVae``: single-level VQ-VAE (seed 002's ``model_type: VqVae``, the pipeline's ``VqVae2`` class)
  with a taming-style GN/swish encoder/decoder; EMA quantizer when ``decay > 0``.

Both answer the adapter contract via ``vq_forward(x) -> (vq_loss, reconstruction, perplexity, indices)``.
EMA state lives in quantizer buffers, so ``parameters()`` can be handed to Adam as a whole.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from vqfast.models.taming_autoencoder import Decoder, Encoder

__all__ = ["VQVAE2", "VqVae"]


def _log2_exact(rate: int, what: str) -> int:
    n = int(round(math.log2(rate))) if rate > 0 else -1
    if rate < 2 or 2 ** n != rate:
        raise ValueError(f"{what}={rate}: scaling rates must be powers of two >= 2")
    return n


class ReZeroBlock(nn.Module):
    """x + α·(conv3x3 → BN → ReLU → conv3x3 → BN → ReLU)(x), α initialised to 0 (vvvm23)."""

    def __init__(self, channels: int, res_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, res_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(res_channels), nn.ReLU(True),
            nn.Conv2d(res_channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True))
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.layers(x)


class _LevelEncoder(nn.Module):
    """log2(rate) × [conv4x4 s2 + BN + ReLU] → conv3x3 + BN → ReZero stack."""

    def __init__(self, in_channels: int, hidden: int, res_channels: int, nb_res_layers: int, rate: int):
        super().__init__()
        n_down = _log2_exact(rate, "scaling_rate")
        layers: list[nn.Module] = []
        ch = in_channels
        for i in range(n_down):
            out = hidden // 2 if (i == 0 and n_down > 1) else hidden
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.BatchNorm2d(out), nn.ReLU(True)]
            ch = out
        layers += [nn.Conv2d(ch, hidden, 3, 1, 1), nn.BatchNorm2d(hidden)]
        layers += [ReZeroBlock(hidden, res_channels) for _ in range(nb_res_layers)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, hidden, H/rate, W/rate)


class _LevelDecoder(nn.Module):
    """conv3x3 + BN + ReLU → ReZero stack → log2(rate) × ConvT4x4 s2 (BN + ReLU except the last)."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, res_channels: int,
                 nb_res_layers: int, rate: int):
        super().__init__()
        n_up = _log2_exact(rate, "scaling_rate")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden, 3, 1, 1), nn.BatchNorm2d(hidden), nn.ReLU(True)]
        layers += [ReZeroBlock(hidden, res_channels) for _ in range(nb_res_layers)]
        ch = hidden
        for i in range(n_up):
            last = i == n_up - 1
            out = out_channels if last else hidden // 2
            layers.append(nn.ConvTranspose2d(ch, out, 4, 2, 1))
            if not last:
                layers += [nn.BatchNorm2d(out), nn.ReLU(True)]
            ch = out
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, out, H*rate, W*rate)


def _upscaler(channels: int, factor: int) -> nn.Module:
    if factor == 1:
        return nn.Identity()
    stages: list[nn.Module] = []
    for _ in range(_log2_exact(factor, "upscale factor")):
        stages += [nn.ConvTranspose2d(channels, channels, 4, 2, 1), nn.BatchNorm2d(channels), nn.ReLU(True)]
    return nn.Sequential(*stages)


class VQVAE2(nn.Module):
    """Multi-level VQ-VAE-2. Level 0 is the finest (bottom); ``scaling_rates[l]`` is level l's stride.

    forward(x) → ``(reconstruction, diffs[top…bottom], encoder_outputs, decoder_outputs, ids[top…bottom])``.
    """

    def __init__(self, in_channels: int = 3, hidden_channels: int = 128, res_channels: int = 64,
                 nb_res_layers: int = 2, nb_levels: int = 2, embed_dim: int = 64, nb_entries: int = 512,
                 scaling_rates: Sequence[int] = (4, 2), decay: float = 0.99, eps: float = 1e-5,
                 backend: str = "auto"):
        super().__init__()
        from vqfast.quantize import EMAVectorQuantizer

        rates = [int(r) for r in scaling_rates]
        if nb_levels < 1 or len(rates) != nb_levels:
            raise ValueError(f"VQVAE2: nb_levels={nb_levels} needs exactly nb_levels scaling_rates, got {rates}")
        for r in rates:
            _log2_exact(r, "scaling_rates entry")
        self.nb_levels, self.nb_entries, self.embed_dim = nb_levels, int(nb_entries), int(embed_dim)
        self.in_channels = in_channels
        self._bottom_perplexity: torch.Tensor | None = None
        self.encoders = nn.ModuleList(
            _LevelEncoder(in_channels if l == 0 else hidden_channels, hidden_channels, res_channels,
                          nb_res_layers, rates[l]) for l in range(nb_levels))
        top = nb_levels - 1
        self.code_convs = nn.ModuleList(
            nn.Conv2d(hidden_channels if l == top else 2 * hidden_channels, embed_dim, 1) for l in range(nb_levels))
        # beta=1: each level's diff is the unweighted commitment mse (rosinality); the loss weights it.
        self.quantizers = nn.ModuleList(
            EMAVectorQuantizer(nb_entries, embed_dim, beta=1.0, decay=decay, eps=eps, backend=backend)
            for _ in range(nb_levels))
        self.decoders = nn.ModuleList(
            _LevelDecoder(embed_dim * (nb_levels - l), hidden_channels,
                          in_channels if l == 0 else hidden_channels, res_channels, nb_res_layers, rates[l])
            for l in range(nb_levels))
        # upscalers[l][j - l - 1] maps q_j (j > l) to level l's resolution.
        self.upscalers = nn.ModuleList(
            nn.ModuleList(_upscaler(embed_dim, math.prod(rates[l + 1:j + 1])) for j in range(l + 1, nb_levels))
            for l in range(nb_levels))

    @property
    def encoder(self) -> nn.Module:
        return self.encoders[0]

    @property
    def decoder(self) -> nn.Module:
        return self.decoders[0]

    @property
    def last_layer(self) -> torch.Tensor:
        return self.decoders[0].layers[-1].weight

    @property
    def output_channels(self) -> int:
        return self.in_channels

    @property
    def vocab_size(self) -> int:
        return self.nb_entries

    def forward(self, x: torch.Tensor):
        enc_outs = []
        h = x
        for enc in self.encoders:
            h = enc(h)  # (B, hidden, H_l, W_l)
            enc_outs.append(h)
        quants: list[torch.Tensor | None] = [None] * self.nb_levels
        diffs, ids, dec_outs = [], [], []
        above = None
        for l in reversed(range(self.nb_levels)):
            code_in = enc_outs[l] if above is None else torch.cat([enc_outs[l], above], dim=1)
            q, diff, (perplexity, _, idx) = self.quantizers[l](self.code_convs[l](code_in))  # (B, D, H_l, W_l)
            if l == 0:
                self._bottom_perplexity = perplexity
            quants[l] = q
            diffs.append(diff)
            ids.append(idx.reshape(q.shape[0], q.shape[2], q.shape[3]))  # (B, H_l, W_l)
            parts = [q] + [self.upscalers[l][j - l - 1](quants[j]) for j in range(l + 1, self.nb_levels)]
            above = self.decoders[l](torch.cat(parts, dim=1))  # (B, hidden|C, H_{l-1}, W_{l-1})
            dec_outs.append(above)
        return above, diffs, enc_outs, dec_outs, ids

    def vq_forward(self, x: torch.Tensor):
        recon, diffs, _, _, ids = self(x)
        vq_loss = torch.stack([d.reshape(()) for d in diffs]).sum()
        perplexity = self._bottom_perplexity
        if perplexity is None:
            perplexity = torch.ones((), device=x.device)
        return vq_loss, recon, perplexity, ids[-1]

    def ae_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)


class VqVae(nn.Module):
    """Single-level VQ-VAE (seed 002 ``VqVae``): GN/swish encoder → 1 codebook → decoder.

    forward(x) → ``(vq_loss, reconstruction, perplexity, indices[B, h, w])`` (the pipeline's own order).
    Quantizer: EMA (commitment-only loss, β = commitment_cost) if ``decay > 0``, else the paper-form
    VectorQuantizer (``legacy=False``: β on the commitment term).
    """

    def __init__(self, input_channels: int = 3, output_channels: int = 3, vocab_size: int = 8192,
                 n_init: int = 128, commitment_cost: float = 0.25, decay: float = 0.99, ch: int = 128,
                 ch_mult: Sequence[int] = (1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), resolution: int = 256, dropout: float = 0.0,
                 backend: str = "auto"):
        super().__init__()
        from vqfast.quantize import EMAVectorQuantizer, VectorQuantizer

        dd = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks,
                  attn_resolutions=tuple(attn_resolutions), resolution=resolution, z_channels=n_init,
                  dropout=dropout, double_z=False)
        self.encoder = Encoder(in_channels=input_channels, **dd)
        self.decoder = Decoder(out_ch=output_channels, **dd)
        self.vocab_size_, self.embed_dim = int(vocab_size), int(n_init)
        if decay > 0:
            self.quantizer = EMAVectorQuantizer(vocab_size, n_init, beta=commitment_cost, decay=decay,
                                                backend=backend)
        else:
            self.quantizer = VectorQuantizer(vocab_size, n_init, beta=commitment_cost, legacy=False,
                                             backend=backend)

    @property
    def quantizers(self) -> list[nn.Module]:
        return [self.quantizer]

    @property
    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    @property
    def output_channels(self) -> int:
        return self.decoder.conv_out.out_channels

    @property
    def vocab_size(self) -> int:
        return self.vocab_size_

    def forward(self, x: torch.Tensor):
        z = self.encoder(x)  # (B, D, h, w)
        q, vq_loss, (perplexity, _, idx) = self.quantizer(z)  # (B, D, h, w)
        recon = self.decoder(q)  # (B, C, H, W)
        if perplexity is None:
            perplexity = torch.ones((), device=x.device)
        return vq_loss, recon, perplexity, idx.reshape(q.shape[0], q.shape[2], q.shape[3])

    def vq_forward(self, x: torch.Tensor):
        return self(x)

    def ae_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)
