"""PNG sample grids (one row per tensor, one column per sample) and reconstruction PSNR."""
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
    """PSNR in dB of uint8-quantised images ([0, 1] pixel values), averaged over images (a 0-dim tensor)."""
    a = to_uint8(x, mean, std).float() / 255
    b = to_uint8(recon, mean, std).float() / 255
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)  # (N,)
    return (10 * torch.log10(1.0 / mse)).mean()


def tile_rows(rows: list[torch.Tensor], pad: int = 2) -> torch.Tensor:
    """Rows of uint8 (N, C, H, W) images (C = 1 or 3, equal shapes) → one uint8 (3, H', W') grid, white padding."""
    n, c, h, w = rows[0].shape
    out = torch.full((3, len(rows) * (h + pad) + pad, n * (w + pad) + pad), 255, dtype=torch.uint8)
    for r, row in enumerate(rows):
        if tuple(row.shape) != (n, c, h, w):
            raise ValueError(f"tile_rows: row {r} has shape {tuple(row.shape)}, row 0 has {(n, c, h, w)}")
        row = row.cpu().expand(-1, 3, -1, -1) if c == 1 else row.cpu()[:, :3]
        for i in range(n):
            y0, x0 = pad + r * (h + pad), pad + i * (w + pad)
            out[:, y0:y0 + h, x0:x0 + w] = row[i]
    return out


def grid(*rows: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised ((N), C, H, W) tensors → uint8 (3, H', W'), one row each (e.g. inputs | reconstructions)."""
    return tile_rows([to_uint8(r, mean, std) for r in rows])


def save_png(chw: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    Image.fromarray(np.ascontiguousarray(chw.permute(1, 2, 0).numpy())).save(tmp, format="PNG")
    tmp.replace(path)
