"""``VideoClipLoader`` (clips from frame folders) and ``frames_to_model_input``.

The seed-002 video pipeline's sampler: every video folder holds numbered JPEG/PNG frames; per
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

from ._common import ForkGuard, StreamOwner, check_on_error, check_positive, logger, resolve_rank, resolve_threads
from .errors import SchemaError

__all__ = ["VideoClipLoader", "frames_to_model_input", "frames_to_model_input_reference"]


def _size_hw(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    else:
        hw = tuple(size)  # type: ignore[assignment]
    if len(hw) != 2 or not all(isinstance(v, int) and v >= 1 for v in hw):
        raise ValueError(f"size must be an int or (H, W) with positive ints, got {size!r}")
    return hw  # type: ignore[return-value]


class VideoClipLoader(StreamOwner):
    """Iterate ``(frames uint8 (B, T, H, W, 3), video_paths list[str])``.

    Args:
        root: a folder with one sub-folder per video, each holding numbered ``.jpg``/``.png``
            frames (sorted by the number in the name), and, when the extension was built with
            the cargo feature ``video`` (``vqfast._io.HAS_VIDEO``), video files (MP4/MKV/WebM/AVI/MOV)
            directly in ``root``: indexed once (frame timestamps from the demuxer), each clip seeks
            to a keyframe and picks frames by timestamp. Without it, convert videos with
            ``python -m vqfast.io.extract_frames``. Videos shorter than one clip are skipped (logged).
        clip_len: frames per clip (T); frame_stride: step between them.
        size: ``(H, W)`` or an int: output size after cover-resize and crop.
        crop: ``"center"`` or ``"random"`` (seeded per seed, epoch and video).
        batch_size, shuffle, seed, rank, world_size, drop_last: as for ``LatentShardLoader``;
            a sample is one video (one clip per video per epoch).
        num_threads: Rust decode threads; prefetch: batches built ahead.
        on_error: ``"raise"``, or ``"skip"``: a clip that fails to decode is replaced by the next
            video's clip (deterministic), and the error is recorded in ``loader.errors``.
        timeout_s: per-clip decode deadline; a clip that takes longer fails (``FrameDecodeError``).
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
    ) -> None:
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise ValueError(f"root must be a directory of video frame folders, got {self.root!r}")
        self.clip_len = check_positive("clip_len", clip_len)
        self.frame_stride = check_positive("frame_stride", frame_stride)
        self.size = _size_hw(size)
        self.batch_size = check_positive("batch_size", batch_size)
        self.prefetch = check_positive("prefetch", prefetch)
        self.num_threads = resolve_threads(num_threads)
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.on_error = check_on_error(on_error)
        if crop not in ("center", "random"):
            raise ValueError(f"crop must be 'center' or 'random', got {crop!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.crop, self.seed, self.shuffle, self.drop_last = crop, seed, bool(shuffle), bool(drop_last)
        self._core = _io.ClipSetCore(
            self.root, clip_len=clip_len, frame_stride=frame_stride, height=self.size[0], width=self.size[1],
            random_crop=crop == "random", batch_size=batch_size, shuffle=self.shuffle, seed=seed, rank=self.rank,
            world_size=self.world_size, drop_last=self.drop_last, timeout_s=float(timeout_s),
        )
        self.video_paths: List[str] = list(self._core.video_dirs())
        short = self._core.too_short()
        if short:
            logger.warning(
                "VideoClipLoader: %d video folder(s) under %s have fewer than %d frames (clip_len=%d, "
                "frame_stride=%d) and are skipped, e.g. %s",
                len(short), self.root, (clip_len - 1) * frame_stride + 1, clip_len, frame_stride, short[0],
            )
        if not self.video_paths:
            raise ValueError(
                f"no usable video under {self.root!r}: need sub-folders with at least "
                f"{(clip_len - 1) * frame_stride + 1} .jpg/.png frames"
            )
        #: Errors recorded in ``on_error="skip"`` mode (message strings naming the file).
        self.errors: List[str] = []
        self._epoch = 0
        self._resume_batch = 0
        self._next_batch = 0
        self._stream: Optional[Any] = None
        self._guard = ForkGuard()

    @property
    def frame_counts(self) -> List[int]:
        return list(self._core.frame_counts())

    def __len__(self) -> int:
        return self._core.num_batches()

    def set_epoch(self, epoch: int) -> None:
        if not isinstance(epoch, int) or epoch < 0:
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


def _per_channel(name: str, value: Union[float, Sequence[float]], channels: int) -> List[float]:
    if hasattr(value, "tolist"):  # torch tensor / numpy array
        value = value.tolist()
    if isinstance(value, (int, float)):
        return [float(value)] * channels
    values = [float(v) for v in value]
    if len(values) != channels:
        raise ValueError(f"{name} needs 1 or {channels} values (one per channel), got {len(values)}")
    return values


def frames_to_model_input_reference(frames: torch.Tensor, mean: Union[float, Sequence[float]],
                                    std: Union[float, Sequence[float]]) -> torch.Tensor:
    """Pure torch: ``rearrange(frames, 'b d h w c -> (b d) c h w')`` then ``(x.float() / 255 - mean) / std``.

    The seed-002 trainer's preprocessing (``self.normalize(images.float() / 255.)``).
    """
    b, t, h, w, c = frames.shape
    m = torch.tensor(_per_channel("mean", mean, c), dtype=torch.float32, device=frames.device).view(1, c, 1, 1)
    s = torch.tensor(_per_channel("std", std, c), dtype=torch.float32, device=frames.device).view(1, c, 1, 1)
    x = frames.reshape(b * t, h, w, c).permute(0, 3, 1, 2)  # ((B*T), C, H, W) view
    return ((x.float() / 255.0) - m) / s


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
