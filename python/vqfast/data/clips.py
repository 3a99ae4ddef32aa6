"""Pure-Python clip loader with the ``vqfast.io.VideoClipLoader`` interface (fallback until/where Rust is absent).

Iterates ``(frames uint8[B, T, H, W, C], video_paths list[str])``. Sources: a folder per video of numbered
JPEG/PNG frames, or (``images=True``) a folder of images, each a 1-frame clip. Frames are scaled so the
shorter side covers ``size`` and centre-cropped. Samples are non-overlapping clips; the order depends only
on (seed, epoch); ranks take interleaved slices of equal length.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _images_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()), key=_natural_key)


def load_frame(path: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        h, w = size
        if im.size != (w, h):
            scale = max(h / im.height, w / im.width)
            nw, nh = max(w, round(im.width * scale)), max(h, round(im.height * scale))
            im = im.resize((nw, nh), Image.BICUBIC)
            left, top = (nw - w) // 2, (nh - h) // 2
            im = im.crop((left, top, left + w, top + h))
        return np.asarray(im, dtype=np.uint8)  # (H, W, 3)


class PyVideoClipLoader:
    def __init__(self, root, *, clip_len: int, frame_stride: int = 1, size, batch_size: int, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = True, num_threads=None,
                 prefetch: int = 4, images: bool = False, cache_bytes: int = 512 << 20):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data root {str(self.root)!r} is not a directory")
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.clip_len, self.frame_stride, self.batch_size = clip_len, frame_stride, batch_size
        self.shuffle, self.seed, self.rank, self.world_size, self.drop_last = shuffle, seed, rank, world_size, drop_last
        self.epoch = 0
        self.samples: list[tuple[list[Path], str]] = []
        if images:
            files = _images_in(self.root)
            self.samples = [([p] * clip_len, str(p)) for p in files]
        else:
            span = (clip_len - 1) * frame_stride + 1
            for video in sorted((d for d in self.root.iterdir() if d.is_dir()), key=_natural_key):
                frames = _images_in(video)
                for start in range(0, len(frames) - span + 1, clip_len * frame_stride):
                    self.samples.append((frames[start:start + span:frame_stride], str(video)))
        if not self.samples:
            what = "images" if images else f"clips of {clip_len} frames (stride {frame_stride}) in video sub-folders"
            raise FileNotFoundError(f"no {what} found under {str(self.root)!r}")
        per_rank = len(self.samples) // world_size if drop_last else -(-len(self.samples) // world_size)
        self._per_rank = per_rank
        self._cache: dict[Path, np.ndarray] = {}
        self._cache_left = cache_bytes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = self._per_rank
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> list[int]:
        n = len(self.samples)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        total = self._per_rank * self.world_size
        order = (order * (total // n + 1))[:total]
        return order[self.rank::self.world_size]

    def _frame(self, path: Path) -> np.ndarray:
        arr = self._cache.get(path)
        if arr is None:
            arr = load_frame(path, self.size)
            if self._cache_left >= arr.nbytes:
                self._cache[path] = arr
                self._cache_left -= arr.nbytes
        return arr

    def iter_from(self, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, list[str]]]:
        order = self._order()
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            clips = [np.stack([self._frame(p) for p in self.samples[i][0]]) for i in idx]  # (T, H, W, C) each
            yield torch.from_numpy(np.stack(clips)), [self.samples[i][1] for i in idx]  # (B, T, H, W, C)

    def __iter__(self):
        return self.iter_from(0)


def frames_to_model_input(frames: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (B, T, H, W, C) → float32 ((B·T), C, H, W), ``(x/255 - mean)/std`` (seed 002's rearrange + Normalize)."""
    if frames.dtype != torch.uint8 or frames.dim() != 5:
        raise ValueError(f"frames must be uint8 (B, T, H, W, C), got {frames.dtype} {tuple(frames.shape)}")
    b, t, h, w, c = frames.shape
    x = frames.reshape(b * t, h, w, c).permute(0, 3, 1, 2).float().div_(255.0)  # ((B T), C, H, W)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t
