"""Small synthetic datasets written as real JPEG files: moving, textured shapes.

Videos: one folder per video of numbered frames ``000000.jpg``…; images: one JPEG per file.
Deterministic for a given seed.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger("vqfast")


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.integers(3)
    period = rng.uniform(3.0, 9.0) * size / 32  # in units of the image: a 64² scene renders the 32² one finer
    if kind == 0:  # stripes
        angle = rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    elif kind == 1:  # checker
        t = ((xx // period + yy // period) % 2).astype(np.float32)
    else:  # rings
        t = 0.5 + 0.5 * np.sin(np.hypot(xx - size / 2, yy - size / 2) * 2 * np.pi / period)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return (c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None])  # (S, S, 3)


class _Scene:
    def __init__(self, rng: np.random.Generator, size: int):
        self.size = size
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        self.background = a[None, None] * (1 - xx[..., None]) + b[None, None] * yy[..., None]  # (S, S, 3)
        self.shapes = []
        for _ in range(int(rng.integers(2, 4))):
            self.shapes.append(dict(
                kind=int(rng.integers(2)), radius=rng.uniform(0.12, 0.25) * size,
                pos=rng.uniform(0.2, 0.8, 2) * size, vel=rng.uniform(-0.06, 0.06, 2) * size,
                texture=_texture(rng, size)))

    def frame(self, t: int) -> np.ndarray:
        img = self.background.copy()
        yy, xx = np.mgrid[0:self.size, 0:self.size].astype(np.float32)
        for s in self.shapes:
            pos = s["pos"] + s["vel"] * t
            pos = np.abs((pos + self.size) % (2 * self.size) - self.size)  # bounce off the borders
            dx, dy = xx - pos[0], yy - pos[1]
            if s["kind"] == 0:
                mask = dx ** 2 + dy ** 2 <= s["radius"] ** 2
            else:
                mask = (np.abs(dx) <= s["radius"]) & (np.abs(dy) <= s["radius"] * 0.7)
            img[mask] = s["texture"][mask]
        return np.clip(img, 0, 255).astype(np.uint8)  # (S, S, 3)


def make_video_folders(root: str | Path, *, num_videos: int, num_frames: int, size: int, seed: int = 0) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    for v in range(num_videos):
        folder = root / f"video_{v:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        scene = _Scene(rng, size)
        for t in range(num_frames):
            Image.fromarray(scene.frame(t)).save(folder / f"{t:06d}.jpg", quality=92)
    log.info("generated %d synthetic videos × %d frames of %d² under %s", num_videos, num_frames, size, root)
    return root


def make_images(root: str | Path, *, num_images: int, size: int, seed: int = 0) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        Image.fromarray(_Scene(rng, size).frame(int(rng.integers(0, 8)))).save(root / f"{i:06d}.jpg", quality=92)
    log.info("generated %d synthetic images of %d² under %s", num_images, size, root)
    return root
