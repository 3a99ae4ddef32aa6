"""Helpers for the vqfast.io tests: shards and frame folders written by torch.save / numpy / PIL."""
from __future__ import annotations

import os
from typing import List

import numpy as np
import torch


def write_shards(root: str, sizes: List[int], *, dtype: torch.dtype = torch.float32, row_shape=(2, 3), fmt: str = "pt") -> List[str]:
    """Shards whose row i (global id g) is filled with g, labels = g."""
    os.makedirs(root, exist_ok=True)
    paths, g = [], 0
    for i, n in enumerate(sizes):
        ids = torch.arange(g, g + n)
        latents = ids.view(n, *([1] * len(row_shape))).expand(n, *row_shape).to(dtype).contiguous()
        path = os.path.join(root, f"shard_{i:03d}.{fmt}")
        if fmt == "pt":
            torch.save({"latents": latents, "labels": ids}, path)
        elif fmt == "npz":
            np.savez(path, latents=latents.numpy(), labels=ids.numpy())
        elif fmt == "npy":
            np.save(path, latents.numpy())
        else:
            raise ValueError(fmt)
        paths.append(path)
        g += n
    return paths


def write_video_frames(root: str, counts: List[int], *, size=(24, 32), ext: str = "png") -> List[str]:
    """One folder per video; frame i has every pixel = (i * 7 % 256, video, 0): frames encode their index."""
    from PIL import Image

    dirs = []
    for v, n in enumerate(counts):
        d = os.path.join(root, f"video_{v:02d}")
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            img = np.zeros((size[0], size[1], 3), np.uint8)
            img[..., 0] = i * 7 % 256
            img[..., 1] = v * 20
            # unpadded numbers on purpose: order must be numeric, not lexicographic
            Image.fromarray(img).save(os.path.join(d, f"frame{i}.{ext}"), quality=98)
        dirs.append(d)
    return dirs
