"""Type stub for the Rust extension ``vqfast._io`` (built from ``rust/src/python.rs``).

Use the ``vqfast.io`` wrappers; this module hands out numpy arrays, ``vqfast.io`` makes tensors.
"""
from typing import Any, List, Sequence, Tuple

import numpy as np
import numpy.typing as npt

__version__: str
#: True when built with the cargo feature `video` (video files through FFmpeg).
HAS_VIDEO: bool

class PtArchive:
    """A memory-mapped, parsed ``torch.save`` zip archive (restricted pickle, nothing executed)."""

    def __init__(self, path: str) -> None: ...
    @property
    def prefix(self) -> str: ...
    @property
    def path(self) -> str: ...
    def storage(self, key: str) -> npt.NDArray[np.uint8]:
        """Bytes of storage ``key``: a writable view of the private mapping (zero-copy)."""
    def build(self, factory: Any) -> Any:
        """The loaded object; ``factory`` has ``tensor(key, dtype, offset, size, stride, requires_grad,
        parameter)``, ``size(dims)``, ``device(type, index)`` and ``dtype(name)``."""
    def tensors(
        self,
    ) -> Tuple[List[str], List[int], List[Tuple[str, List[int], List[int], int, str, bool, bool]]]:
        """``(paths, slots, specs)``: ``paths[i]`` reaches the distinct tensor ``specs[slots[i]]`` =
        (dtype, size, stride, storage offset, storage key, requires_grad, parameter)."""

class BatchStream:
    """Ordered, prefetched batches built by Rust threads."""

    def __iter__(self) -> "BatchStream": ...
    def __next__(self) -> Tuple[npt.NDArray[np.int64], List[npt.NDArray[np.uint8]], List[str]]: ...
    def close(self) -> None: ...

class ShardSetCore:
    def __init__(
        self,
        paths: Sequence[str],
        keys: Sequence[str],
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int,
        world_size: int,
        drop_last: bool,
        block_shards: int,
        skip_errors: bool,
    ) -> None: ...
    def fields(self) -> List[Tuple[str, str, List[int]]]: ...
    def skipped(self) -> List[Tuple[str, str]]: ...
    def paths(self) -> List[str]: ...
    def sizes(self) -> List[int]: ...
    def num_batches(self) -> int: ...
    def fingerprint(self) -> int: ...
    def plan(self, epoch: int) -> npt.NDArray[np.int64]: ...
    def iterate(self, epoch: int, start_batch: int, num_threads: int, prefetch: int) -> BatchStream: ...

class ClipSetCore:
    def __init__(
        self,
        root: str,
        *,
        clip_len: int,
        frame_stride: int,
        height: int,
        width: int,
        random_crop: bool,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int,
        world_size: int,
        drop_last: bool,
        timeout_s: float = ...,
        images: bool = ...,
    ) -> None: ...
    def video_dirs(self) -> List[str]: ...
    def frame_counts(self) -> List[int]: ...
    def too_short(self) -> List[str]: ...
    def num_batches(self) -> int: ...
    def fingerprint(self) -> int: ...
    def plan(self, epoch: int) -> List[Tuple[int, int]]: ...
    def iterate(self, epoch: int, start_batch: int, num_threads: int, prefetch: int, skip_errors: bool) -> BatchStream: ...

def frames_to_model_input(
    frames: npt.NDArray[np.uint8], mean: Sequence[float], std: Sequence[float], num_threads: int
) -> npt.NDArray[np.float32]: ...

def get_limits() -> Tuple[int, int, int, int]:
    """``(max_nodes, max_bytes, max_depth, max_frame_pixels)`` now in force (process-wide)."""
def set_limits(max_nodes: int, max_bytes: int, max_depth: int, max_frame_pixels: int) -> None:
    """Set the reader limits; each must be positive (``max_depth`` at most 10000)."""
