"""PNG sample grids (row of inputs | row of reconstructions) and reconstruction PSNR."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(x: torch.Tensor, mean, std) -> torch.Tensor:
    """((N), C, H, W) normalised → uint8 (N, C, H, W)."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((x * s + m).clamp(0, 1) * 255).round().to(torch.uint8)


def psnr(x: torch.Tensor, recon: torch.Tensor, mean, std) -> torch.Tensor:
    """PSNR in dB on [0, 1] pixel values, averaged over images."""
    a = to_uint8(x, mean, std).float() / 255
    b = to_uint8(recon, mean, std).float() / 255
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)  # (N,)
    return (10 * torch.log10(1.0 / mse)).mean()


def grid(x: torch.Tensor, recon: torch.Tensor, mean, std, pad: int = 2) -> torch.Tensor:
    """uint8 (3, H', W'): inputs on the top row, reconstructions below."""
    a, b = to_uint8(x, mean, std).cpu(), to_uint8(recon, mean, std).cpu()  # (N, C, H, W)
    n, c, h, w = a.shape
    if c == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    out = torch.full((3, 2 * h + 3 * pad, n * w + (n + 1) * pad), 255, dtype=torch.uint8)
    for i in range(n):
        x0 = pad + i * (w + pad)
        out[:, pad:pad + h, x0:x0 + w] = a[i, :3]
        out[:, 2 * pad + h:2 * pad + 2 * h, x0:x0 + w] = b[i, :3]
    return out


def save_png(chw: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    Image.fromarray(np.ascontiguousarray(chw.permute(1, 2, 0).numpy())).save(tmp, format="PNG")
    tmp.replace(path)
