"""Data wiring for the engine: generated datasets, loader choice (Rust when present), input normalisation."""
from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Callable, Iterator

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


def accepts(cls, name: str) -> bool:
    """Whether ``cls(...)`` takes keyword ``name`` (the Rust loaders gain options over time)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class SkippingClipLoader(PyVideoClipLoader):
    """The Python clip loader with ``data.on_error``: ``skip`` replaces a clip that fails to load (corrupt or
    missing frame) by the next clip of this rank's epoch order (deterministic) and records the error in
    ``errors``; ``raise`` raises ``FrameLoadError`` naming the file. Batches keep their size."""

    def __init__(self, *args, on_error: str = "raise", **kwargs):
        super().__init__(*args, **kwargs)
        if on_error not in ("raise", "skip"):
            raise ValueError(f"data.on_error={on_error!r}; allowed: 'raise', 'skip'")
        self.on_error = on_error
        self.errors: list[str] = []

    def _clip(self, i: int):
        import numpy as np
        return np.stack([self._frame(p) for p in self.samples[i][0]])  # (T, H, W, C)

    def iter_from(self, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, list[str]]]:
        import numpy as np
        order = self._order()
        for b in range(start_batch, len(self)):
            clips, names = [], []
            j = b * self.batch_size
            for _ in range(len(order)):  # a bad clip is replaced by the next one of this rank's order
                if len(clips) == self.batch_size:
                    break
                i = order[j % len(order)]
                j += 1
                try:
                    clips.append(self._clip(i))
                    names.append(self.samples[i][1])
                except Exception as exc:  # PIL / OS errors: name the sample
                    message = f"{self.samples[i][1]}: {type(exc).__name__}: {exc}"
                    if self.on_error == "raise":
                        raise FrameLoadError(f"cannot load clip {message} (data.on_error=skip skips bad clips "
                                             "and counts them in data/skipped_items)") from exc
                    self.errors.append(message)
                    log.warning("data.on_error=skip: skipped clip %s", message)
            if len(clips) < self.batch_size:
                raise FrameLoadError(f"too few readable clips under {str(self.root)!r} to fill a batch of "
                                     f"{self.batch_size} (last errors: {self.errors[-3:]})")
            yield torch.from_numpy(np.stack(clips)), names  # (B, T, H, W, C)


class FrameLoadError(ValueError):
    """A clip or image of the engine's data cannot be read (names the file)."""


def skipped_items(loader) -> int:
    """Items a loader left out under ``on_error='skip'`` so far (0 when it does not record them)."""
    errors = getattr(loader, "errors", None)
    return len(errors) if isinstance(errors, list) else 0


def build_loader(cfg: Config, root: str, *, shuffle: bool, seed: int, batch_size: int,
                 rank: int = 0, world_size: int = 1):
    d = cfg.data
    rust = _rust_loader_cls()
    use_rust = d.kind == "video" and d.loader != "python" and rust is not None
    if d.loader == "rust" and rust is None:
        raise RuntimeError("data.loader=rust but vqfast.io.VideoClipLoader is not available in this build")
    on_error = getattr(d, "on_error", "raise")
    if use_rust:
        extra = {"on_error": on_error} if accepts(rust, "on_error") else {}
        if on_error != "raise" and not extra:
            log.warning("data.on_error=%s: this vqfast.io.VideoClipLoader has no on_error option; errors raise",
                        on_error)
        return rust(root, clip_len=d.clip_len, frame_stride=d.frame_stride, size=(d.size, d.size),
                    batch_size=batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                    drop_last=True, num_threads=d.num_threads, prefetch=d.prefetch, **extra)
    return SkippingClipLoader(root, clip_len=d.clip_len if d.kind == "video" else 1, frame_stride=d.frame_stride,
                              size=d.size, batch_size=batch_size, shuffle=shuffle, seed=seed, rank=rank,
                              world_size=world_size, drop_last=True, images=d.kind == "images", on_error=on_error)


def iterate_from(loader, epoch: int, start_batch: int):
    """An iterator over ``loader``'s epoch ``epoch`` from batch ``start_batch`` (exact resume position)."""
    loader.set_epoch(epoch)
    if hasattr(loader, "iter_from"):
        return loader.iter_from(start_batch)
    if start_batch and hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict"):
        state = dict(loader.state_dict())  # the Rust loaders seek without decoding the skipped batches
        state.update(epoch=epoch, batch=start_batch)
        loader.load_state_dict(state)
        return iter(loader)
    it = iter(loader)
    for _ in range(start_batch):  # no seek: skip decoded batches
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
