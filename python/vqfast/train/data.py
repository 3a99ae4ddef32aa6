"""Data wiring for the engine: generated datasets, loader choice (Rust when present), input normalisation."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from vqfast.data import PyVideoClipLoader, make_images, make_video_folders
from vqfast.data import frames_to_model_input as py_frames_to_model_input
from vqfast.train.config import Config

log = logging.getLogger("vqfast")


def ensure_dataset(cfg: Config, run_dir: Path) -> None:
    """With data.root unset, write a small synthetic dataset under run_dir/data and record its path."""
    if cfg.data.root is not None:
        return
    base = run_dir / "data"
    n, frames, size = cfg.data.synthetic_videos, cfg.data.synthetic_frames, cfg.data.size
    if cfg.data.kind == "video":
        frames = max(frames, cfg.data.clip_len * cfg.data.frame_stride)
        n = max(n, cfg.train.batch_size)
        train_root, val_root = base / "train", base / "val"
        if not train_root.exists():
            make_video_folders(train_root, num_videos=n, num_frames=frames, size=size, seed=cfg.seed)
            make_video_folders(val_root, num_videos=2, num_frames=frames, size=size, seed=cfg.seed + 9973)
    else:
        train_root, val_root = base / "train", base / "val"
        if not train_root.exists():
            make_images(train_root, num_images=max(n * 4, cfg.train.batch_size), size=size, seed=cfg.seed)
            make_images(val_root, num_images=8, size=size, seed=cfg.seed + 9973)
    cfg.data.root = str(train_root.resolve())
    if cfg.data.val_root is None:
        cfg.data.val_root = str(val_root.resolve())
    log.info("data.root was unset: generated a synthetic %s dataset at %s", cfg.data.kind, cfg.data.root)


def _rust_loader_cls():
    try:
        import vqfast.io as vio
    except Exception:  # the extension may be missing or broken; the Python path still works
        return None
    return getattr(vio, "VideoClipLoader", None)


def frames_to_input_fn() -> Callable[..., torch.Tensor]:
    try:
        import vqfast.io as vio
        fn = getattr(vio, "frames_to_model_input", None)
    except Exception:
        fn = None
    return fn or py_frames_to_model_input


def build_loader(cfg: Config, root: str, *, shuffle: bool, seed: int, batch_size: int,
                 rank: int = 0, world_size: int = 1):
    d = cfg.data
    rust = _rust_loader_cls()
    use_rust = d.kind == "video" and d.loader != "python" and rust is not None
    if d.loader == "rust" and rust is None:
        raise RuntimeError("data.loader=rust but vqfast.io.VideoClipLoader is not available in this build")
    if use_rust:
        return rust(root, clip_len=d.clip_len, frame_stride=d.frame_stride, size=(d.size, d.size),
                    batch_size=batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                    drop_last=True, num_threads=d.num_threads, prefetch=d.prefetch)
    return PyVideoClipLoader(root, clip_len=d.clip_len if d.kind == "video" else 1, frame_stride=d.frame_stride,
                             size=d.size, batch_size=batch_size, shuffle=shuffle, seed=seed, rank=rank,
                             world_size=world_size, drop_last=True, images=d.kind == "images")


def iterate_from(loader, epoch: int, start_batch: int):
    loader.set_epoch(epoch)
    if hasattr(loader, "iter_from"):
        return loader.iter_from(start_batch)
    it = iter(loader)
    for _ in range(start_batch):  # the Rust loader has no seek: skip decoded batches
        next(it)
    return it


def heldout_batch(cfg: Config, max_images: int = 8) -> torch.Tensor:
    """A fixed uint8 (B, T, H, W, C) batch for PSNR and sample grids (val_root, else the first train batch)."""
    root = cfg.data.val_root or cfg.data.root
    clip_len = cfg.data.clip_len if cfg.data.kind == "video" else 1
    per_clip = max(1, clip_len)
    bs = max(1, min(cfg.train.batch_size, -(-max_images // per_clip)))
    try:
        loader = PyVideoClipLoader(root, clip_len=clip_len, frame_stride=cfg.data.frame_stride, size=cfg.data.size,
                                   batch_size=bs, shuffle=False, images=cfg.data.kind == "images")
        bs = min(bs, len(loader.samples))
        loader.batch_size = bs
        frames, _ = next(iter(loader))
    except (FileNotFoundError, StopIteration):
        loader = PyVideoClipLoader(cfg.data.root, clip_len=clip_len, frame_stride=cfg.data.frame_stride,
                                   size=cfg.data.size, batch_size=1, shuffle=False, images=cfg.data.kind == "images")
        frames, _ = next(iter(loader))
    return frames
