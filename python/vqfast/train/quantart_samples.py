"""Sample grids for QuantArt: one row per tensor (content | style | stylised), columns = samples."""
from __future__ import annotations

import torch

from vqfast.train.samples import to_uint8


def rows_grid(rows: list[torch.Tensor], mean, std, pad: int = 2) -> torch.Tensor:
    """uint8 (3, H', W') from normalised ((N), C, H, W) tensors of equal shape, one row each."""
    imgs = [to_uint8(r, mean, std).cpu() for r in rows]  # (N, C, H, W) each
    n, c, h, w = imgs[0].shape
    for i, r in enumerate(imgs):
        if tuple(r.shape) != (n, c, h, w):
            raise ValueError(f"rows_grid: row {i} has shape {tuple(r.shape)}, row 0 has {(n, c, h, w)}")
    out = torch.full((3, len(imgs) * (h + pad) + pad, n * (w + pad) + pad), 255, dtype=torch.uint8)
    for j, r in enumerate(imgs):
        if c == 1:
            r = r.expand(-1, 3, -1, -1)
        y0 = pad + j * (h + pad)
        for i in range(n):
            x0 = pad + i * (w + pad)
            out[:, y0:y0 + h, x0:x0 + w] = r[i, :3]
    return out
