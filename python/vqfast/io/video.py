"""``VideoClipLoader`` (clips from frame folders) and ``frames_to_model_input``.

The seed-002 video pipeline's sampler (pure-Python reference: ``vqfast.loaders.clips.PyVideoClipLoader``):
every video folder holds numbered JPEG/PNG frames (or, ``images=True``, the root holds images); per
epoch each video gives one clip of ``clip_len`` frames ``frame_stride`` apart, its first frame
drawn from the seeded plan so that the clip never runs past the end. Frames are decoded in
Rust (zune-jpeg / png), scaled so they cover ``size`` (shorter side), and cropped (centre or
seeded random, the same window for every frame of a clip).
"""
from __future__ import annotations

import os
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from vqfast import _io
from vqfast.loaders.clips import _per_channel, check_clip_loader_args, frames_to_model_input_reference, no_samples_error

from ._common import ForkGuard, StreamOwner, logger, resolve_threads
from .errors import SchemaError

__all__ = ["VideoClipLoader", "frames_to_model_input", "frames_to_model_input_reference"]


class VideoClipLoader(StreamOwner):
    """Iterate ``(frames uint8 (B, T, H, W, 3), video_paths list[str])``.

    ``vqfast.loaders.clips.PyVideoClipLoader`` is its pure-Python reference: same arguments, plan, frames (PNG
    byte-identical), ``len``, ``state_dict`` and skip rule (``tests/io/test_clip_parity.py``).

    Args:
        root: a folder with one sub-folder per video, each holding numbered ``.jpg``/``.png``
            frames (sorted by the last number in the name), and, when the extension was built with
            the cargo feature ``video`` (``vqfast._io.HAS_VIDEO``), video files (MP4/MKV/WebM/AVI/MOV)
            directly in ``root``: indexed once (frame timestamps from the demuxer), each clip seeks
            to a keyframe and picks frames by timestamp. Without it, convert videos with
            ``python -m vqfast.io.extract_frames``. Videos shorter than one clip are skipped (logged,
            ``too_short``). With ``images=True``: a folder of ``.jpg``/``.jpeg``/``.png`` images, each
            one sample (a 1-frame video repeated ``clip_len`` times; ``frame_stride`` is ignored).
        clip_len: frames per clip (T); frame_stride: step between them.
        size: ``(H, W)`` or an int: output size after cover-resize and crop.
        crop: ``"center"`` or ``"random"`` (seeded per seed, epoch and video).
        batch_size, shuffle, seed, rank, world_size, drop_last: as for ``LatentShardLoader``;
            a sample is one video (one clip per video per epoch).
        num_threads: Rust decode threads; prefetch: batches built ahead.
        on_error: ``"raise"``: the first clip that fails raises (``FrameDecodeError`` for bad data,
            ``ShardNotFoundError``/``ShardIOError`` for unreadable files; the message starts with the path).
            ``"skip"``: the batch keeps its size; a clip that fails is replaced by the clip of the next
            sample of this rank's epoch order *after the batch*, wrapping around (a second failure in the
            same batch takes the sample after that). Each failure is recorded in ``loader.errors`` (naming
            the file) and logged. A batch that needs more than ``min(samples of this rank's epoch, 64)``
            replacements raises ``FrameDecodeError`` naming the root and the last errors.
        timeout_s: per-clip decode deadline; a clip that takes longer fails (``FrameDecodeError``).
        images: see ``root``.
    """

    def __init__(
        self,
        root: Union[str, "os.PathLike[str]"],
        *,
        clip_len: int,
        frame_stride: int = 1,
        size: Union[int, Sequence[int]],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        drop_last: bool = True,
        num_threads: Optional[int] = None,
        prefetch: int = 4,
        crop: str = "center",
        on_error: str = "raise",
        timeout_s: float = 60.0,
        images: bool = False,
    ) -> None:
        check_clip_loader_args(self, root, clip_len=clip_len, frame_stride=frame_stride, size=size,
                               batch_size=batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                               drop_last=drop_last, num_threads=num_threads, prefetch=prefetch, crop=crop,
                               on_error=on_error, timeout_s=timeout_s, images=images)
        self._stream: Optional[Any] = None
        self._guard = ForkGuard()
        self._core = _io.ClipSetCore(
            self.root, clip_len=self.clip_len, frame_stride=self.frame_stride, height=self.size[0],
            width=self.size[1], random_crop=self.crop == "random", batch_size=self.batch_size, shuffle=self.shuffle,
            seed=self.seed, rank=self.rank, world_size=self.world_size, drop_last=self.drop_last,
            timeout_s=self.timeout_s, images=self.images,
        )
        self.video_paths: List[str] = list(self._core.video_dirs())
        #: Video folders left out because they have fewer frames than one clip spans.
        self.too_short: List[str] = list(self._core.too_short())
        if self.too_short:
            logger.warning(
                "VideoClipLoader: %d video folder(s) under %s have fewer than %d frames (clip_len=%d, "
                "frame_stride=%d) and are skipped, e.g. %s",
                len(self.too_short), self.root, (self.clip_len - 1) * self.frame_stride + 1, self.clip_len,
                self.frame_stride, self.too_short[0],
            )
        if not self.video_paths:
            raise no_samples_error(self)
        #: Errors recorded in ``on_error="skip"`` mode (message strings naming the file).
        self.errors: List[str] = []
        self._epoch = 0
        self._resume_batch = 0
        self._next_batch = 0

    @property
    def frame_counts(self) -> List[int]:
        return list(self._core.frame_counts())

    def __len__(self) -> int:
        return self._core.num_batches()

    @property
    def epoch(self) -> int:
        return self._epoch

    def fingerprint(self) -> int:
        return self._core.fingerprint()

    def set_epoch(self, epoch: int) -> None:
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self._epoch = epoch
        self._resume_batch = 0

    def epoch_plan(self, epoch: Optional[int] = None) -> List[Tuple[str, int]]:
        """This rank's ``(video path, first frame index)`` per clip of ``epoch``, in order."""
        e = self._epoch if epoch is None else epoch
        return [(self.video_paths[v], start) for v, start in self._core.plan(e)]

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "batch": self._next_batch, "fingerprint": self._core.fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("fingerprint") != self._core.fingerprint():
            raise SchemaError("loader state does not match this loader (videos, clip settings, seed or ranks differ)")
        self._epoch, self._resume_batch = int(state["epoch"]), int(state["batch"])
        self._next_batch = self._resume_batch

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, List[str]]]:
        self._guard.check("VideoClipLoader")
        self.close()
        start, self._resume_batch = self._resume_batch, 0
        self._next_batch = start
        stream = self._core.iterate(self._epoch, start, self.num_threads, self.prefetch, self.on_error == "skip")
        self._stream = stream
        return self._batches(stream)

    def iter_from(self, start_batch: int = 0) -> Iterator[Tuple[torch.Tensor, List[str]]]:
        """Iterate the current epoch from batch ``start_batch`` (exact resume position, nothing decoded before it)."""
        self._resume_batch = int(start_batch)
        return iter(self)

    def _batches(self, stream: Any) -> Iterator[Tuple[torch.Tensor, List[str]]]:
        h, w = self.size
        try:
            for ids, buffers, errors in stream:
                if errors:
                    for message in errors:
                        logger.warning("VideoClipLoader: replaced a clip that failed to decode: %s", message)
                    self.errors.extend(errors)
                b = ids.shape[0]
                frames = torch.from_numpy(buffers[0]).view(b, self.clip_len, h, w, 3)  # (B, T, H, W, C)
                self._next_batch += 1
                yield frames, [self.video_paths[i] for i in ids.tolist()]
        finally:
            self._close_stream(stream)


def frames_to_model_input(frames: Union[torch.Tensor, np.ndarray], mean: Union[float, Sequence[float]] = 0.5,
                          std: Union[float, Sequence[float]] = 0.5, *, num_threads: Optional[int] = None) -> torch.Tensor:
    """uint8 ``(B, T, H, W, C)`` → float32 ``((B*T), C, H, W)`` with ``(x / 255 - mean) / std``.

    On CPU this runs in Rust over ``num_threads`` threads with the GIL released, bit-identical to
    :func:`frames_to_model_input_reference`. A CUDA tensor is processed by torch on its device:
    on GPU the cheaper path is to move the uint8 frames (4x fewer bytes) and normalise there.
    """
    if isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        if frames.dim() != 5:
            raise ValueError(f"frames must be (B, T, H, W, C), got shape {tuple(frames.shape)}")
        if frames.device.type != "cpu":
            return frames_to_model_input_reference(frames, mean, std)
        array = frames.contiguous().numpy()
    else:
        array = np.ascontiguousarray(frames)
        if array.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {array.dtype}")
    if array.ndim != 5:
        raise ValueError(f"frames must be (B, T, H, W, C), got shape {array.shape}")
    c = array.shape[4]
    out = _io.frames_to_model_input(array, _per_channel("mean", mean, c), _per_channel("std", std, c),
                                    resolve_threads(num_threads))
    return torch.from_numpy(out)  # ((B*T), C, H, W)
