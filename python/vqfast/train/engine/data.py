"""Image/video data for the image families: generated datasets, the loader (Rust or its Python reference),
input normalisation, the held-out batch, and positioning a loader for exact resume."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from vqfast.data import make_images, make_video_folders
from vqfast.errors import DataError, DataNotFoundError, FrameDecodeError
from vqfast.loaders import PyVideoClipLoader
from vqfast.loaders import frames_to_model_input as py_frames_to_model_input

log = logging.getLogger("vqfast")


def _rust_io():
    """``vqfast.io`` when the Rust extension imports, else None (the Python references then run)."""
    try:
        import vqfast.io as vio
    except ImportError:
        return None
    return vio


def prepare_image_data(d, batch_size: int, seed: int, run_dir: Path) -> None:
    """``data.synthetic`` with ``data.root`` unset: write a small dataset under run_dir/data and record it.
    A configured ``data.root`` / ``data.val_root`` must exist."""
    if d.root is None:  # the config asked for synthetic data (checked at load time)
        base = Path(run_dir) / "data"
        train_root, val_root = base / "train", base / "val"
        if not train_root.exists():
            if d.kind == "video":
                frames = max(d.synthetic_frames, (d.clip_len - 1) * d.frame_stride + 1)
                make_video_folders(train_root, num_videos=max(d.synthetic_videos, batch_size), num_frames=frames,
                                   size=d.size, seed=seed)
                make_video_folders(val_root, num_videos=2, num_frames=frames, size=d.size, seed=seed + 9973)
            else:
                make_images(train_root, num_images=max(d.synthetic_images, batch_size), size=d.size, seed=seed)
                make_images(val_root, num_images=8, size=d.size, seed=seed + 9973)
        d.root = str(train_root.resolve())
        if d.val_root is None:
            d.val_root = str(val_root.resolve())
        log.info("data.synthetic: generated %s at %s", "video frame folders" if d.kind == "video" else "images", d.root)
    for key in ("root", "val_root"):
        path = getattr(d, key)
        if path is not None and not Path(path).is_dir():
            raise DataNotFoundError(f"data.{key}={path!r} is not a directory")


def loader_class(d):
    """The Rust loader, or its Python reference (same samples, order, frames and skip rule)."""
    vio = _rust_io() if d.loader != "python" else None
    if vio is None and d.loader == "rust":
        raise DataError("data.loader=rust but the vqfast._io extension is not available in this install; "
                        "reinstall vqfast (pip install .) or set data.loader: auto")
    return vio.VideoClipLoader if vio is not None else PyVideoClipLoader


def build_loader(d, root: str, *, shuffle: bool, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True, key: str = "data.root"):
    cls = loader_class(d)
    try:
        return cls(root, clip_len=d.frames_per_sample, frame_stride=d.frame_stride, size=(d.size, d.size),
                   batch_size=batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                   drop_last=drop_last, num_threads=d.num_threads, prefetch=d.prefetch, on_error=d.on_error,
                   images=d.kind == "images")
    except FileNotFoundError as exc:  # root missing, or no usable video / image under it
        raise DataNotFoundError(f"{key}: {exc}") from exc
    except DataError as exc:
        raise DataError(f"{key}: {exc}") from exc


def frames_to_input(frames: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (B, T, H, W, C) → float32 ((B·T), C, H, W), ``(x/255 - mean)/std`` (Rust-parallel when available)."""
    vio = _rust_io()
    fn = vio.frames_to_model_input if vio is not None else py_frames_to_model_input
    return fn(frames, mean, std)


def heldout_frames(d, batch_size: int, max_images: int = 8) -> torch.Tensor:
    """A fixed uint8 (B, T, H, W, C) batch for validation and sample grids: the first samples (unshuffled)
    of data.val_root, else of data.root."""
    root, key = (d.val_root, "data.val_root") if d.val_root else (d.root, "data.root")
    per_sample = d.frames_per_sample
    bs = max(1, min(batch_size, -(-max_images // per_sample)))
    loader = build_loader(d, root, shuffle=False, seed=0, batch_size=bs, drop_last=False, key=key)
    try:
        frames, _ = next(iter(loader))
    except (FrameDecodeError, OSError) as exc:
        raise DataError(f"{key}: the held-out batch cannot be read: {exc}") from exc
    return frames


def iterate_from(loader, epoch: int, start_batch: int):
    """An iterator over ``loader``'s epoch ``epoch`` from batch ``start_batch`` (exact resume position;
    the loaders seek without decoding the batches before it)."""
    loader.set_epoch(epoch)
    if start_batch:
        state = dict(loader.state_dict())
        state.update(epoch=epoch, batch=start_batch)
        loader.load_state_dict(state)
    return iter(loader)
