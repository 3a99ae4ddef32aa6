"""PatchGAN ``NLayerDiscriminator`` (pix2pix / taming), ``weights_init`` and ``ActNorm`` (SPEC.md §1.3).

State-dict names match taming (``main.{i}.weight``; ActNorm ``loc``/``scale``/``initialized``) so the
``loss.discriminator.*`` part of taming checkpoints loads.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["NLayerDiscriminator", "ActNorm", "weights_init"]


def weights_init(module: nn.Module) -> None:
    """taming init: Conv weights ~ N(0, 0.02) (bias untouched); BatchNorm weight ~ N(1, 0.02), bias 0."""
    name = type(module).__name__
    if "Conv" in name:
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.constant_(module.bias, 0.0)


class ActNorm(nn.Module):
    """Per-channel affine with data-dependent init on the first training forward.

    loc = -mean, scale = 1 / (std + 1e-6) over (B, H, W) of that first batch (unbiased std, as taming).
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))
        self._known_initialized = False  # host-side cache so forward never syncs after init

    def _load_from_state_dict(self, *args, **kwargs):
        self._known_initialized = False
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, B*H*W)
        mean = flat.mean(dim=1).reshape(1, -1, 1, 1)  # (1, C, 1, 1)
        std = flat.std(dim=1).reshape(1, -1, 1, 1)  # (1, C, 1, 1)
        self.loc.copy_(-mean)
        self.scale.copy_(1.0 / (std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self._known_initialized:
            if int(self.initialized.item()) == 0:
                self._initialize(x)
            self._known_initialized = True
        return self.scale * (x + self.loc)  # (B, C, H, W)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: conv s2 + LReLU, (n_layers-1)× [conv s2, norm, LReLU], conv s1, norm, LReLU, conv s1 → logits."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, use_actnorm: bool = False):
        super().__init__()
        if n_layers < 0 or ndf < 1 or input_nc < 1:
            raise ValueError(f"NLayerDiscriminator: input_nc={input_nc}, ndf={ndf}, n_layers={n_layers}; "
                             "need input_nc >= 1, ndf >= 1, n_layers >= 0")
        norm_layer = ActNorm if use_actnorm else nn.BatchNorm2d
        use_bias = use_actnorm
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=use_bias), norm_layer(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=use_bias), norm_layer(ndf * mult),
                   nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.main = nn.Sequential(*layers)
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)  # (B, 1, H', W') patch logits
