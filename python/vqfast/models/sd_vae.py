"""Optional local Stable-Diffusion VAE (diffusers ``AutoencoderKL``) for encoding images to latents and decoding
samples. Never downloads: ``from_pretrained(path, local_files_only=True)``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch

from vqfast.errors import WeightsNotFoundError

log = logging.getLogger("vqfast")

__all__ = ["VAEUnavailableError", "load_local_vae"]


class VAEUnavailableError(WeightsNotFoundError):
    """No usable local VAE: diffusers is not installed or the path holds no AutoencoderKL."""


def load_local_vae(path: str | Path, subfolder: Optional[str] = "vae", device: torch.device | str = "cpu"):
    """AutoencoderKL from a local folder (``path/subfolder`` or ``path``), eval mode, frozen.

    Raises VAEUnavailableError naming what to install / where the weights must be.
    """
    try:
        from diffusers import AutoencoderKL
    except Exception as exc:
        raise VAEUnavailableError(
            f"diffusers is not importable ({exc}); install it with `pip install diffusers` to use the SD VAE") from exc
    root = Path(path)
    if not root.exists():
        raise VAEUnavailableError(
            f"VAE path {str(root)!r} does not exist; give a local diffusers AutoencoderKL folder, e.g. a snapshot of "
            "runwayml/stable-diffusion-v1-5 (with subfolder 'vae') or stabilityai/sd-vae-ft-mse (no subfolder)")
    sub = subfolder if subfolder and (root / subfolder).is_dir() else None
    try:
        vae = AutoencoderKL.from_pretrained(str(root), subfolder=sub, local_files_only=True)
    except Exception as exc:
        raise VAEUnavailableError(f"cannot load an AutoencoderKL from {str(root)!r} (subfolder {sub!r}): {exc}") \
            from exc
    log.info("loaded local VAE from %s%s", root, f"/{sub}" if sub else "")
    return vae.to(device).eval().requires_grad_(False)
