"""vqfast.io: the Python face of the Rust loaders (``vqfast._io``).

* :func:`load_pt` / :func:`inspect_pt`: read ``torch.save`` files without unpickling (restricted
  pickle VM in Rust, tensors memory-mapped).
* :class:`LatentShardLoader`: shuffled, rank-sharded, prefetched batches from latent shards.
* :class:`VideoClipLoader`: clips from folders of JPEG/PNG frames, decoded/resized/cropped in Rust.
* :func:`frames_to_model_input`: ``(B,T,H,W,C)`` uint8 → ``((B*T),C,H,W)`` float32, normalised.

For newly written latent shards prefer ``.npy``/``.npz`` (or safetensors) over ``.pt``: no pickle.
Importing this package needs no GPU.
"""
from .errors import (
    CorruptShardError,
    ForkError,
    FrameDecodeError,
    InternalLoaderError,
    LoaderClosedError,
    LoaderError,
    SchemaError,
    ShardError,
    ShardIOError,
    ShardNotFoundError,
    UnsupportedFormatError,
)
from .pt import TensorInfo, get_limits, inspect_pt, load_pt, set_limits
from .shards import LatentShardLoader, verify
from .video import VideoClipLoader, frames_to_model_input, frames_to_model_input_reference

__all__ = [
    "load_pt",
    "inspect_pt",
    "TensorInfo",
    "set_limits",
    "get_limits",
    "LatentShardLoader",
    "verify",
    "VideoClipLoader",
    "frames_to_model_input",
    "frames_to_model_input_reference",
    "LoaderError",
    "ShardError",
    "CorruptShardError",
    "UnsupportedFormatError",
    "SchemaError",
    "FrameDecodeError",
    "ShardIOError",
    "ShardNotFoundError",
    "LoaderClosedError",
    "ForkError",
    "InternalLoaderError",
]
