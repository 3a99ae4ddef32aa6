"""Sample grids of the latent StarGAN: decoded images with a local VAE, else latent-channel visualisations.

Grid columns are samples; rows: content, then per target domain: reference, reference-guided output,
latent-guided output.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import torch

log = logging.getLogger("vqfast")

VIS_RANGE = 2.5
"""Scaled latents are shown over [−VIS_RANGE, VIS_RANGE] (SD latents × 0.18215 have std ≈ 1)."""


def latent_channels_to_image(latents: torch.Tensor, value_range: float = VIS_RANGE) -> torch.Tensor:
    """(N, C, H, W) scaled latents → uint8 (N, 3, H', W'): the C channels tiled as grey images (√C per row)."""
    n, c, h, w = latents.shape
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    grey = ((latents.float().clamp(-value_range, value_range) + value_range) / (2 * value_range) * 255).round()
    out = torch.zeros(n, rows * h, cols * w)
    for ch in range(c):
        r, k = divmod(ch, cols)
        out[:, r * h:(r + 1) * h, k * w:(k + 1) * w] = grey[:, ch]
    return out.to(torch.uint8).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()   # (N, 3, H', W')


def decode_to_image(vae, latents: torch.Tensor, latent_scale: float) -> torch.Tensor:
    """(N, 4, h, w) scaled latents → uint8 (N, 3, H, W) via ``vae.decode(latents / latent_scale)``."""
    param = next(vae.parameters())
    with torch.no_grad():
        images = vae.decode(latents.to(param.device, param.dtype) / latent_scale).sample  # (N, 3, H, W) in [-1, 1]
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


class SampleRenderer:
    """Turns scaled latents into uint8 images; ``kind`` is "decoded" (VAE) or "latent_channels"."""

    def __init__(self, vae_path: Optional[str], vae_subfolder: Optional[str], latent_scale: float,
                 device: torch.device):
        self.latent_scale, self.vae, self.kind = latent_scale, None, "latent_channels"
        if vae_path:  # asked for decoded samples: a VAE that cannot be loaded is an error (VAEUnavailableError)
            from vqfast.models.sd_vae import load_local_vae
            self.vae = load_local_vae(vae_path, vae_subfolder, device)
            self.kind = "decoded"
        else:
            log.info("samples are latent-channel visualisations (visualization.vae_path is unset)")

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        if self.vae is not None:
            return decode_to_image(self.vae, latents, self.latent_scale)
        return latent_channels_to_image(latents.detach().cpu())
