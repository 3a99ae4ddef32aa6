"""The style side of QuantArt stage 2's unpaired data (QuantArt taming/data/custom.py ``UnpairedImageTrain``).

The content images come from the engine's loader; the style images from ``ImageStream``: its own seeded
permutation per pass, so which style meets which content changes every epoch, and batch k is a pure function
of (seed, k): a resumed run sees the same pairs. ``make_paintings`` generates a toy style domain: flat-colour
"paintings" (a few solid palette regions with dark outlines, no texture).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vqfast.loaders.clips import list_images, load_frame

__all__ = ["ImageStream", "make_paintings"]

log = logging.getLogger("vqfast")

_STYLE_SEED_OFFSET = 7919  # the style stream shuffles independently of the content stream


class ImageStream:
    """An endless stream of one folder's images, reshuffled every pass (seeded); batch k is a pure function of k."""

    def __init__(self, root: str | Path, *, size: int, seed: int = 0, shuffle: bool = True,
                 cache_bytes: int = 256 << 20):
        self.root, self.files = Path(root), list_images(root)
        self.size, self.seed, self.shuffle = (size, size), int(seed), shuffle
        self._perms: dict[int, list[int]] = {}
        self._cache: dict[Path, np.ndarray] = {}
        self._cache_left = cache_bytes

    def __len__(self) -> int:
        return len(self.files)

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perms[epoch] = torch.randperm(len(self.files), generator=g).tolist()
            else:
                self._perms[epoch] = list(range(len(self.files)))
        return self._perms[epoch]

    def image(self, path: Path) -> np.ndarray:
        arr = self._cache.get(path)
        if arr is None:
            arr = load_frame(path, self.size)  # (H, W, 3) uint8
            if self._cache_left >= arr.nbytes:
                self._cache[path], self._cache_left = arr, self._cache_left - arr.nbytes
        return arr

    def indices(self, batch: int, batch_size: int) -> list[int]:
        n = len(self.files)
        out = []
        for g in range(batch * batch_size, (batch + 1) * batch_size):
            epoch, pos = divmod(g, n)
            out.append(self._perm(epoch)[pos])
        return out

    def batch(self, batch: int, batch_size: int) -> torch.Tensor:
        """uint8 (B, H, W, 3): images ``batch*B … batch*B+B-1`` of the endless shuffled stream."""
        return torch.from_numpy(np.stack([self.image(self.files[i]) for i in self.indices(batch, batch_size)]))

    def first(self, count: int) -> torch.Tensor:
        """uint8 (B, H, W, 3): the first ``count`` images in folder order (cycled) — fixed sample inputs."""
        return torch.from_numpy(np.stack([self.image(self.files[i % len(self.files)]) for i in range(count)]))


def _painting(rng: np.random.Generator, size: int) -> np.ndarray:
    palette = rng.uniform(0, 255, (int(rng.integers(3, 6)), 3)).astype(np.uint8)
    img = Image.new("RGB", (size, size), tuple(int(c) for c in palette[0]))
    draw = ImageDraw.Draw(img)
    outline = tuple(int(c) for c in (palette.min(0) * 0.3).astype(np.uint8))
    for _ in range(int(rng.integers(3, 7))):
        colour = tuple(int(c) for c in palette[rng.integers(len(palette))])
        pts = rng.uniform(-0.1, 1.1, (int(rng.integers(3, 6)), 2)) * size
        if rng.random() < 0.5:
            draw.polygon([tuple(p) for p in pts], fill=colour, outline=outline, width=max(1, size // 64))
        else:
            x0, y0 = pts[0]
            r = rng.uniform(0.1, 0.35) * size
            draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour, outline=outline, width=max(1, size // 64))
    return np.asarray(img, dtype=np.uint8)  # (S, S, 3)


def make_paintings(root: str | Path, *, num_images: int, size: int, seed: int = 0) -> Path:
    """Flat-colour 'paintings': solid palette regions with dark outlines, saved as PNG (no JPEG texture)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        Image.fromarray(_painting(rng, size)).save(root / f"{i:06d}.png")
    log.info("generated %d synthetic flat-colour paintings of %d² under %s", num_images, size, root)
    return root
