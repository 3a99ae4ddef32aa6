"""Evaluation images: every image of a folder, or every frame of a folder of video-frame folders, as uint8
(B, 3, size, size) batches, sharded by rank (``paths[rank::world_size]``, no padding: every image once).

Preprocessing (``preprocess``):

* ``"train"`` (default): what the training loaders feed the model — the clip loaders' decoder and cover-resize +
  centre crop (``vqfast.loaders.clips.decode_frame`` / ``resize_crop``, bit-identical to the Rust loader).
* ``"imagenet"``: the field's rFID protocol at 256² — guided-diffusion / ADM ``center_crop_arr`` (LlamaGen
  ``dataset/augmentation.py``): BOX halving while the short side is ≥ 2·size, BICUBIC resize of the short side to
  size, centre crop.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Literal, Optional

import numpy as np
import torch
from PIL import Image

from vqfast.errors import DataNotFoundError
from vqfast.eval.metrics import EvalError
from vqfast.loaders.clips import FRAME_EXTS, cover_size, decode_frame, frame_key, resize_crop

PREPROCESS = ("train", "imagenet")


def list_eval_images(root: str | os.PathLike, limit: Optional[int] = None) -> list[str]:
    """Image files directly in ``root`` (loader order), else every frame of every sub-folder (videos, frame by
    frame, folders in name order); the first ``limit``. DataNotFoundError naming the folder when none."""
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"evaluation data {str(root)!r} is not a directory")
    images = sorted((p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTS),
                    key=frame_key)
    paths = [str(root / n) for n in images]
    if not paths:
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            frames = sorted((p.name for p in sub.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTS),
                            key=frame_key)
            paths.extend(str(sub / n) for n in frames)
    if not paths:
        raise DataNotFoundError(f"no images ({', '.join(FRAME_EXTS)}) in {str(root)!r} nor in its sub-folders")
    return paths[:limit] if limit is not None else paths


def center_crop_arr(image: Image.Image, size: int) -> np.ndarray:
    """ADM ``center_crop_arr`` (guided-diffusion image_datasets.py): uint8 (size, size, 3)."""
    while min(*image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(*image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.array(image.convert("RGB"))
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top:top + size, left:left + size]


def load_eval_image(path: str, size: int, preprocess: Literal["train", "imagenet"] = "train") -> np.ndarray:
    """One image as uint8 (size, size, 3)."""
    if preprocess == "imagenet":
        with Image.open(path) as im:
            im.load()
            return center_crop_arr(im.convert("RGB"), size)
    img = decode_frame(path)  # (H, W, 3)
    rh, rw = cover_size(img.shape[0], img.shape[1], size, size)
    return resize_crop(img, size, size, (rh - size) // 2, (rw - size) // 2)


def iterate_batches(paths: list[str], *, size: int, batch_size: int, preprocess: str = "train", rank: int = 0,
                    world_size: int = 1, num_threads: int = 4) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, size, size) batches of this rank's shard, decoded by a thread pool, one batch ahead."""
    if preprocess not in PREPROCESS:
        raise EvalError(f"preprocess={preprocess!r} is not one of {PREPROCESS}")
    shard = paths[rank::world_size]
    chunks = [shard[i:i + batch_size] for i in range(0, len(shard), batch_size)]
    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        def submit(chunk: list[str]):
            return [pool.submit(load_eval_image, p, size, preprocess) for p in chunk]

        pending = [submit(c) for c in chunks[:2]]  # two batches in flight
        for i in range(len(chunks)):
            arr = np.stack([f.result() for f in pending[i]])  # (B, H, W, 3)
            pending[i] = None
            if i + 2 < len(chunks):
                pending.append(submit(chunks[i + 2]))
            yield torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)
