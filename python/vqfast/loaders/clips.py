"""``PyVideoClipLoader``: the pure-Python reference of ``vqfast.io.VideoClipLoader`` (works without ``vqfast._io``).

Same constructor, same samples, same batches, same resume state as the Rust loader; only slower (one thread,
PIL decoding). Everything that decides *what* is loaded is a port of the Rust core:

* discovery (``clips::scan`` / ``clips::scan_images``): every sub-folder of ``root`` (sorted by name) holding
  ``.jpg``/``.jpeg``/``.png`` files is a video; its frames are sorted by :func:`frame_key` (the last run of digits
  in the stem as a number, then the stem, then the file name). Folders with fewer frames than one clip spans are
  left out (``too_short``, logged). ``images=True``: every ``.jpg``/``.jpeg``/``.png`` file directly in ``root``
  (same order) is one sample, a 1-frame video whose frame fills all ``clip_len`` slots (``frame_stride`` is
  ignored). Video files (MP4, ...) need the Rust loader built with the ``video`` feature.
* the epoch plan (:mod:`vqfast.loaders.plan`, a port of ``plan.rs``): one clip per video per epoch; per
  (seed, epoch, video) the first frame is drawn uniformly so that the clip fits (:func:`clip_start`), and with
  ``crop="random"`` the crop window from the same stream.
* frames (``frames.rs``): decoded (JPEG/PNG by their magic bytes), scaled so they cover ``size`` (:func:`cover_size`)
  with the same separable antialiased-bilinear float32 filter, cropped at the same window. PNG frames give
  byte-identical output (resized or not); JPEG frames differ only by decoder (zune-jpeg vs libjpeg in PIL),
  typically by a few levels.
* the skip rule (``clips::ClipSet::load_batch``), see :class:`PyVideoClipLoader`.

Iterates ``(frames uint8 (B, T, H, W, 3), video_paths list[str])``.
"""
from __future__ import annotations

import io
import logging
import math
import os
import re
import time
from pathlib import Path, PurePath
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from vqfast.errors import (
    DataNotFoundError,
    FrameDecodeError,
    LoaderError,
    SchemaError,
    ShardIOError,
    ShardNotFoundError,
    UnsupportedFormatError,
)
from vqfast.loaders.plan import (
    MASK,
    PlanConfig,
    Rng,
    check_on_error,
    check_positive,
    check_seed,
    epoch_order,
    fingerprint,
    mix,
    num_batches,
    rank_plan,
    replacement_budget,
    resolve_rank,
    resolve_threads,
    splitmix64,
)

log = logging.getLogger("vqfast")

__all__ = ["PyVideoClipLoader", "frames_to_model_input", "frames_to_model_input_reference", "frame_key",
           "cover_size", "resize_crop", "decode_frame", "clip_start", "check_clip_loader_args", "load_frame",
           "IMAGE_EXTS", "FRAME_EXTS"]

#: Files the clip loaders read as frames / images (``clips::has_frame_ext``).
FRAME_EXTS = (".jpg", ".jpeg", ".png")
_VIDEO_FILE_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".ts", ".mpg")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: ``clips::IMAGES_TAG``: mixed into the fingerprint of an images-mode loader.
_IMAGES_TAG = 0x1A6E500000000001
_MAX_TIMEOUT_S = 1e9


# ---- discovery --------------------------------------------------------------------------------------------
def frame_key(name: str) -> Tuple[int, str, str]:
    """Sort key of frames and images (``clips::frame_key``): the last run of ASCII digits in the stem as a number
    (none, or more than 64 bits: 2**64 - 1), then the stem, then the file name."""
    p = PurePath(name)
    stem, fname = p.stem, p.name
    m = re.search(r"([0-9]+)[^0-9]*$", stem)
    n = MASK
    if m is not None:
        n = int(m.group(1))
        if n > MASK:
            n = MASK
    return n, stem, fname


def _has_frame_ext(name: str) -> bool:
    return PurePath(name).suffix.lower() in FRAME_EXTS


def _os_error(path: str, exc: OSError) -> LoaderError:
    """``Error::io``: "not found" → ShardNotFoundError, any other OS error → ShardIOError."""
    reason = f"{exc.strerror} (os error {exc.errno})" if exc.strerror else str(exc)
    cls = ShardNotFoundError if isinstance(exc, FileNotFoundError) else ShardIOError
    return _error(cls, path, reason, "not_found" if cls is ShardNotFoundError else "io")


def _error(cls: type, path: str, reason: str, kind: str) -> LoaderError:
    """A loader exception like the Rust glue builds: message ``"{path}: {reason}"`` and the attributes."""
    exc = cls(f"{path}: {reason}" if path else reason)
    exc.path, exc.location, exc.reason, exc.kind = (path or None), None, reason, kind
    return exc


def _listdir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        raise _os_error(path, exc) from exc


def scan_videos(root: str, min_frames: int) -> Tuple[List[Tuple[str, List[str]]], List[str]]:
    """``clips::scan`` without the ``video`` feature: ``([(folder, frame paths)], too-short folders)``."""
    names = sorted(_listdir(root))
    dirs = [os.path.join(root, n) for n in names if os.path.isdir(os.path.join(root, n))]
    files = [os.path.join(root, n) for n in names
             if os.path.isfile(os.path.join(root, n)) and PurePath(n).suffix.lower() in _VIDEO_FILE_EXTS]
    videos, short = [], []
    for d in dirs:
        frames = sorted((n for n in _listdir(d) if _has_frame_ext(n)), key=frame_key)
        if not frames:
            continue
        if len(frames) < min_frames:
            short.append(d)
        else:
            videos.append((d, [os.path.join(d, n) for n in frames]))
    if not videos and files:
        raise _error(UnsupportedFormatError, files[0],
                     f"{len(files)} video file(s) under {root} but the pure-Python clip loader reads no video files: "
                     "extract frames with `python -m vqfast.io.extract_frames` or use vqfast.io.VideoClipLoader "
                     "built with FFmpeg support (see README)", "unsupported")
    return videos, short


def scan_images(root: str) -> List[Tuple[str, List[str]]]:
    """``clips::scan_images``: every frame-type file directly in ``root`` is a 1-frame video."""
    names = sorted((n for n in _listdir(root) if os.path.isfile(os.path.join(root, n)) and _has_frame_ext(n)),
                   key=frame_key)
    return [(os.path.join(root, n), [os.path.join(root, n)]) for n in names]


# ---- decoding, resize, crop (frames.rs) -------------------------------------------------------------------
def decode_frame(path: str) -> np.ndarray:
    """``frames::decode_file``: a JPEG or PNG (by magic bytes) as uint8 (H, W, 3). Alpha is dropped, grey is
    replicated, 16-bit PNG keeps the high byte. Raises ShardNotFoundError / ShardIOError (reading) or
    FrameDecodeError (decoding), messages starting with the path."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise _os_error(path, exc) from exc
    if data[:2] == b"\xff\xd8":
        fmt = "JPEG"
    elif data[:8] == _PNG_MAGIC:
        fmt = "PNG"
    else:
        raise _error(FrameDecodeError, path, "not a JPEG or PNG file (unknown magic bytes)", "decode")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            im.load()
            return _to_rgb8(im)
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, ... for bad data
        raise _error(FrameDecodeError, path, f"{fmt} data: {type(exc).__name__}: {exc}", "decode") from exc


def _to_rgb8(im: "Image.Image") -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        g = (np.asarray(im).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)  # (H, W) high byte, like STRIP_16
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        return np.ascontiguousarray(np.asarray(im)[:, :, :3]) if mode != "RGB" else np.asarray(im).copy()
    if mode in ("L", "LA", "La", "1"):
        g = np.asarray(im.convert("L") if mode == "1" else im.getchannel(0))  # (H, W)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "PA":
        return np.ascontiguousarray(np.asarray(im.convert("RGBA"))[:, :, :3])
    return np.asarray(im.convert("RGB")).copy()  # P, CMYK, YCbCr, ...


def _round_half_away(x: float) -> int:
    """Rust's ``f64::round`` for x >= 0 (Python's round() rounds half to even)."""
    r = math.floor(x)
    return r + 1 if x - r >= 0.5 else r


def cover_size(h: int, w: int, out_h: int, out_w: int) -> Tuple[int, int]:
    """``frames::cover_size``: the size after scaling (h, w) so that it covers (out_h, out_w)."""
    if h == 0 or w == 0:
        return out_h, out_w
    s = max(out_h / h, out_w / w)
    return max(_round_half_away(h * s), out_h), max(_round_half_away(w * s), out_w)


def _taps(inp: int, out: int, first: int, count: int) -> Tuple[np.ndarray, np.ndarray]:
    """``frames::taps`` for output positions ``first..first+count``: (input index (count, n), float32 weight
    (count, n)), rows padded with weight 0 (adding 0 leaves the float32 sums unchanged)."""
    scale = inp / out
    fscale = max(scale, 1.0)
    support = fscale
    rows: List[Tuple[int, List[float]]] = []
    for o in range(first, first + count):
        center = (o + 0.5) * scale
        lo = int(max(math.floor(center - support + 0.5), 0.0))
        hi = max(min(int(math.floor(center + support + 0.5)), inp), lo + 1)
        ws = []
        for x in range(lo, hi):
            d = abs((x - center + 0.5) / fscale)
            ws.append(1.0 - d if d < 1.0 else 0.0)
        total = 0.0
        for v in ws:
            total += v
        nz = [i for i, v in enumerate(ws) if v > 0.0]
        a, b = (nz[0], nz[-1]) if nz else (0, len(ws) - 1)
        rows.append((lo + a, [v / total if total > 0.0 else 0.0 for v in ws[a:b + 1]]))
    n = max(len(w) for _, w in rows)
    idx = np.empty((count, n), np.int64)
    wts = np.zeros((count, n), np.float32)
    for i, (lo, w) in enumerate(rows):
        idx[i] = lo
        idx[i, :len(w)] = np.arange(lo, lo + len(w))
        wts[i, :len(w)] = np.asarray(w, np.float64).astype(np.float32)
    return idx, wts


def resize_crop(img: np.ndarray, out_h: int, out_w: int, top: int, left: int) -> np.ndarray:
    """``frames::Resizer``: scale uint8 (H, W, 3) to cover (out_h, out_w), keep the window at (top, left) of the
    scaled image. The same float32 operations in the same order as Rust, so the result is bit-identical."""
    in_h, in_w = img.shape[:2]
    rh, rw = cover_size(in_h, in_w, out_h, out_w)
    if (rh, rw) == (in_h, in_w):
        return np.ascontiguousarray(img[top:top + out_h, left:left + out_w])
    xi, xw = _taps(in_w, rw, left, out_w)
    yi, yw = _taps(in_h, rh, top, out_h)
    row_lo, row_hi = int(yi.min()), int(yi.max()) + 1
    src = img[row_lo:row_hi].astype(np.float32)  # (R, W_in, 3)
    tmp = np.zeros((row_hi - row_lo, out_w, 3), np.float32)
    for j in range(xi.shape[1]):  # horizontal pass: r = 0; r += w * p, tap after tap
        tmp += xw[None, :, j, None] * src[:, xi[:, j], :]
    yi = yi - row_lo
    acc = tmp[yi[:, 0]] * yw[:, 0, None, None]  # (out_h, out_w, 3)
    for j in range(1, yi.shape[1]):  # vertical pass
        acc += yw[:, j, None, None] * tmp[yi[:, j]]
    return (np.clip(acc, np.float32(0.0), np.float32(255.0)) + np.float32(0.5)).astype(np.uint8)


def clip_start(seed: int, epoch: int, vid: int, n_frames: int, span: int) -> Tuple[int, Rng]:
    """``clips::clip_start``: the first frame of video ``vid``'s clip in ``epoch``, and the rng for its crop."""
    rng = Rng(mix(seed, epoch, 0xC119000000 ^ vid))
    return rng.below(max(n_frames - span, 0) + 1), rng


# ---- arguments shared with vqfast.io.VideoClipLoader ------------------------------------------------------
def _size_hw(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    else:
        try:
            hw = tuple(size)  # type: ignore[assignment]
        except TypeError:
            hw = ()
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in hw):
        raise ValueError(f"size must be an int or (H, W) with positive ints, got {size!r}")
    return hw  # type: ignore[return-value]


def check_clip_loader_args(obj: Any, root: Union[str, "os.PathLike[str]"], *, clip_len: int, frame_stride: int,
                           size: Union[int, Sequence[int]], batch_size: int, shuffle: bool, seed: int,
                           rank: Optional[int], world_size: Optional[int], drop_last: bool,
                           num_threads: Optional[int], prefetch: int, crop: str, on_error: str, timeout_s: float,
                           images: bool) -> None:
    """Check the clip loaders' arguments (the same checks, in the same order, for the Rust loader and its
    reference) and store them on ``obj``."""
    obj.root = os.fspath(root)
    obj.images = bool(images)
    if not os.path.isdir(obj.root):
        what = "images" if obj.images else "video frame folders"
        raise DataNotFoundError(f"root must be a directory of {what}, got {obj.root!r}")
    obj.clip_len = check_positive("clip_len", clip_len)
    obj.frame_stride = check_positive("frame_stride", frame_stride)
    obj.size = _size_hw(size)
    obj.batch_size = check_positive("batch_size", batch_size)
    obj.prefetch = check_positive("prefetch", prefetch)
    obj.num_threads = resolve_threads(num_threads)
    obj.rank, obj.world_size = resolve_rank(rank, world_size)
    obj.on_error = check_on_error(on_error)
    if crop not in ("center", "random"):
        raise ValueError(f"crop must be 'center' or 'random', got {crop!r}")
    obj.crop, obj.seed, obj.shuffle, obj.drop_last = crop, check_seed(seed), bool(shuffle), bool(drop_last)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) \
            or not (0.0 < float(timeout_s) <= _MAX_TIMEOUT_S):
        raise ValueError(f"timeout_s must be a positive number of seconds (at most {_MAX_TIMEOUT_S:.0e}), "
                         f"got {timeout_s!r}")
    obj.timeout_s = float(timeout_s)
    # ClipConfig::validate's remaining rule: the output buffer must be allocatable
    if obj.clip_len * obj.size[0] * obj.size[1] * 3 > (1 << 63) - 1:
        raise ValueError(f"a clip of {obj.clip_len} frames of size {obj.size} is too large to allocate")


def no_samples_error(obj: Any) -> DataNotFoundError:
    """The error both clip loaders raise for a root without one usable sample."""
    if obj.images:
        return DataNotFoundError(f"no usable image under {obj.root!r}: need .jpg/.jpeg/.png files directly in it")
    span = (obj.clip_len - 1) * obj.frame_stride + 1
    return DataNotFoundError(f"no usable video under {obj.root!r}: need sub-folders with at least {span} "
                             f".jpg/.png frames (clip_len={obj.clip_len}, frame_stride={obj.frame_stride})")


def clip_fingerprint(frame_counts: Sequence[int], cfg: PlanConfig, clip_len: int, frame_stride: int,
                     images: bool) -> int:
    """``clips::ClipSet::fingerprint``."""
    h = fingerprint(frame_counts, cfg) ^ splitmix64((clip_len * 1_000_003 + frame_stride) & MASK)
    if images:
        h ^= splitmix64(_IMAGES_TAG)
    return h


# ---- the reference loader ---------------------------------------------------------------------------------
class PyVideoClipLoader:
    """Iterate ``(frames uint8 (B, T, H, W, 3), video_paths list[str])``: the pure-Python reference of
    :class:`vqfast.io.VideoClipLoader` (same arguments, plan, frames, ``len``, ``state_dict``, errors).

    Args:
        root: a folder with one sub-folder per video of numbered ``.jpg``/``.png`` frames; with ``images=True`` a
            folder of ``.jpg``/``.jpeg``/``.png`` images (each one sample: a 1-frame video repeated ``clip_len``
            times; ``frame_stride`` is ignored).
        clip_len: frames per clip (T); frame_stride: step between them.
        size: ``(H, W)`` or an int: output size after cover-resize and crop.
        batch_size, shuffle, seed, rank, world_size, drop_last: the plan of ``vqfast.io.LatentShardLoader``
            (``rank``/``world_size`` default to ``torch.distributed``, else 0 / 1); a sample is one video (one clip
            per video per epoch).
        num_threads, prefetch: checked like the Rust loader's and otherwise unused (this loader is synchronous).
        crop: ``"center"`` or ``"random"`` (seeded per seed, epoch and video).
        on_error: ``"raise"``: the first clip that fails raises (``FrameDecodeError`` for bad data,
            ``ShardNotFoundError``/``ShardIOError`` for unreadable files; the message starts with the path).
            ``"skip"``: the batch keeps its size; a clip that fails is replaced by the clip of the next sample of
            this rank's epoch order *after the batch*, wrapping around (a second failure in the same batch takes
            the sample after that, and so on). Each failure is appended to ``errors`` (message naming the file)
            and logged. When a batch needs more than ``min(samples of this rank's epoch, 64)`` replacements it
            raises ``FrameDecodeError`` naming the root and the last errors.
        timeout_s: per-clip decode deadline; a clip that takes longer fails (``FrameDecodeError``).
        images: see ``root``.
    """

    #: Bytes of decoded frames kept in memory (per loader; 0 disables the cache).
    cache_bytes: int = 256 << 20

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
        self._span = 1 if self.images else (self.clip_len - 1) * self.frame_stride + 1
        if self.images:
            videos, short = scan_images(self.root), []
        else:
            videos, short = scan_videos(self.root, self._span)
        self.video_paths: List[str] = [v for v, _ in videos]
        self._frames: List[List[str]] = [f for _, f in videos]
        #: Video folders left out because they have fewer frames than one clip spans.
        self.too_short: List[str] = short
        if short:
            log.warning("PyVideoClipLoader: %d video folder(s) under %s have fewer than %d frames (clip_len=%d, "
                        "frame_stride=%d) and are skipped, e.g. %s", len(short), self.root, self._span,
                        self.clip_len, self.frame_stride, short[0])
        if not self.video_paths:
            raise no_samples_error(self)
        #: Errors recorded in ``on_error="skip"`` mode (message strings naming the file).
        self.errors: List[str] = []
        self._epoch = 0
        self._resume_batch = 0
        self._next_batch = 0
        self._cache: Dict[str, np.ndarray] = {}
        self._cache_used = 0

    # -- sizes and plan -------------------------------------------------------------------------------------
    @property
    def frame_counts(self) -> List[int]:
        return [len(f) for f in self._frames]

    def _cfg(self) -> PlanConfig:
        cfg = PlanConfig(self.batch_size, self.shuffle, self.seed, self.rank, self.world_size, self.drop_last, 0)
        cfg.validate()
        return cfg

    def _rank_plan(self, epoch: int):
        return rank_plan(epoch_order([1] * len(self._frames), self._cfg(), epoch), self._cfg())

    def __len__(self) -> int:
        return num_batches(len(self._frames), self._cfg())

    def set_epoch(self, epoch: int) -> None:
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self._epoch = epoch
        self._resume_batch = 0

    @property
    def epoch(self) -> int:
        return self._epoch

    def epoch_plan(self, epoch: Optional[int] = None) -> List[Tuple[str, int]]:
        """This rank's ``(video path, first frame index)`` per clip of ``epoch``, in order."""
        e = self._epoch if epoch is None else epoch
        return [(self.video_paths[v], clip_start(self.seed, e, v, len(self._frames[v]), self._span)[0])
                for v in self._rank_plan(e).samples]

    def fingerprint(self) -> int:
        return clip_fingerprint(self.frame_counts, self._cfg(), self.clip_len, self.frame_stride, self.images)

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "batch": self._next_batch, "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("fingerprint") != self.fingerprint():
            raise SchemaError("loader state does not match this loader (videos, clip settings, seed or ranks differ)")
        self._epoch, self._resume_batch = int(state["epoch"]), int(state["batch"])
        self._next_batch = self._resume_batch

    # -- loading --------------------------------------------------------------------------------------------
    def _decoded(self, path: str) -> np.ndarray:
        img = self._cache.get(path)
        if img is None:
            img = decode_frame(path)
            if self._cache_used + img.nbytes <= self.cache_bytes:
                self._cache[path] = img
                self._cache_used += img.nbytes
        return img

    def load_clip(self, vid: int, epoch: int) -> np.ndarray:
        """``clips::load_clip``: video ``vid``'s clip of ``epoch`` as uint8 (T, H, W, 3)."""
        frames = self._frames[vid]
        out_h, out_w = self.size
        start, rng = clip_start(self.seed, epoch, vid, len(frames), self._span)
        wanted = [0] * self.clip_len if self.images else [start + t * self.frame_stride for t in range(self.clip_len)]
        out = np.empty((self.clip_len, out_h, out_w, 3), np.uint8)
        deadline = time.monotonic() + self.timeout_s
        window = None  # (in_h, in_w, top, left), chosen at the first frame
        for t, fi in enumerate(wanted):
            if time.monotonic() > deadline:
                raise _error(FrameDecodeError, self.video_paths[vid],
                             f"clip decode exceeded its deadline ({self.timeout_s}s)", "decode")
            if t > 0 and wanted[t - 1] == fi:
                out[t] = out[t - 1]
                continue
            path = frames[fi]
            img = self._decoded(path)
            h, w = img.shape[:2]
            if window is None:
                rh, rw = cover_size(h, w, out_h, out_w)
                if self.crop == "random":
                    top = rng.below(rh - out_h + 1)
                    left = rng.below(rw - out_w + 1)
                else:
                    top, left = (rh - out_h) // 2, (rw - out_w) // 2
                window = (h, w, top, left)
            elif (h, w) != window[:2]:
                raise _error(FrameDecodeError, path,
                             f"frame is {w}x{h} but earlier frames of the clip are {window[1]}x{window[0]}", "decode")
            out[t] = resize_crop(img, out_h, out_w, window[2], window[3])
        return out

    def load_batch(self, plan, k: int, epoch: int) -> Tuple[List[int], np.ndarray, List[str]]:
        """``clips::ClipSet::load_batch``: batch ``k`` of the rank plan ``plan`` with the skip rule (see the class
        docstring): ``(video ids, frames uint8 (B, T, H, W, 3), skipped error messages)``."""
        ids = plan.batch(k)
        n = len(plan.samples)
        budget = replacement_budget(n)
        nxt, used = plan.batch_starts[k + 1], 0
        out_ids: List[int] = []
        clips: List[np.ndarray] = []
        errors: List[str] = []
        for vid in ids:
            v = vid
            while True:
                try:
                    clips.append(self.load_clip(v, epoch))
                    break
                except LoaderError as exc:
                    if self.on_error == "raise":
                        raise
                    errors.append(str(exc))
                    if used == budget:
                        last = " | ".join(errors[-3:])
                        raise _error(FrameDecodeError, self.root,
                                     f"cannot fill batch {k}: {len(errors)} clip(s) failed to load, and so did all "
                                     f"{budget} replacement(s) allowed (the next clips of this rank's epoch order); "
                                     f"last errors: {last}", "decode") from exc
                    v = plan.samples[nxt % n]
                    nxt += 1
                    used += 1
            out_ids.append(v)
        h, w = self.size
        frames = np.stack(clips) if clips else np.empty((0, self.clip_len, h, w, 3), np.uint8)
        return out_ids, frames, errors

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, List[str]]]:
        start, self._resume_batch = self._resume_batch, 0
        self._next_batch = start
        return self._batches(self._epoch, start)

    def iter_from(self, start_batch: int = 0) -> Iterator[Tuple[torch.Tensor, List[str]]]:
        """Iterate the current epoch from batch ``start_batch`` (exact resume position)."""
        self._resume_batch = int(start_batch)
        return iter(self)

    def _batches(self, epoch: int, start: int) -> Iterator[Tuple[torch.Tensor, List[str]]]:
        plan = self._rank_plan(epoch)
        for k in range(start, plan.num_batches()):
            ids, frames, errors = self.load_batch(plan, k, epoch)
            for message in errors:
                log.warning("PyVideoClipLoader: replaced a clip that failed to decode: %s", message)
            self.errors.extend(errors)
            self._next_batch += 1
            yield torch.from_numpy(frames), [self.video_paths[i] for i in ids]  # (B, T, H, W, 3)

    # -- the Rust loader's lifecycle (nothing runs in the background here) ---------------------------------
    def close(self) -> None:
        """Nothing to stop (no worker threads); kept for interface parity."""

    def __enter__(self) -> "PyVideoClipLoader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- model input ------------------------------------------------------------------------------------------
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

    The seed-002 trainer's preprocessing (``self.normalize(images.float() / 255.)``); ``vqfast.io.
    frames_to_model_input`` (Rust) is bit-identical to it.
    """
    b, t, h, w, c = frames.shape
    m = torch.tensor(_per_channel("mean", mean, c), dtype=torch.float32, device=frames.device).view(1, c, 1, 1)
    s = torch.tensor(_per_channel("std", std, c), dtype=torch.float32, device=frames.device).view(1, c, 1, 1)
    x = frames.reshape(b * t, h, w, c).permute(0, 3, 1, 2)  # ((B*T), C, H, W) view
    return ((x.float() / 255.0) - m) / s


def frames_to_model_input(frames: torch.Tensor, mean: Union[float, Sequence[float]] = 0.5,
                          std: Union[float, Sequence[float]] = 0.5) -> torch.Tensor:
    """uint8 (B, T, H, W, C) → float32 ((B·T), C, H, W), ``(x/255 - mean)/std`` (seed 002's rearrange + Normalize)."""
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.dim() != 5:
        got = f"{frames.dtype} {tuple(frames.shape)}" if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be uint8 (B, T, H, W, C), got {got}")
    return frames_to_model_input_reference(frames, mean, std)


# ---- single images for the other data modules (stylize, dino, unpaired) -----------------------------------
#: Image files ``load_frame`` users list (wider than the clip loaders' ``FRAME_EXTS``).
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_images(folder: Union[str, "os.PathLike[str]"], exts: Sequence[str] = IMAGE_EXTS) -> List[Path]:
    """Image files directly in ``folder`` (suffix in ``exts``), in the loaders' order (:func:`frame_key`).
    Raises ``DataNotFoundError`` naming the folder when it is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"image folder {str(folder)!r} is not a directory")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in exts and p.is_file()),
                   key=lambda p: frame_key(p.name))
    if not files:
        raise DataNotFoundError(f"no images ({', '.join(exts)}) in {str(folder)!r}")
    return files


def load_frame(path: Path, size: Tuple[int, int]) -> np.ndarray:
    """One image as uint8 (H, W, 3): PIL bicubic cover-resize and centre crop (stylize / DINO / unpaired data;
    the clip loaders use :func:`decode_frame` + :func:`resize_crop` instead)."""
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
