"""Training data: synthetic dataset generation and the pure-Python reference loaders (no Rust extension needed)."""
from vqfast.data.clips import PyVideoClipLoader, frames_to_model_input
from vqfast.data.synthetic import make_images, make_video_folders

__all__ = ["PyVideoClipLoader", "frames_to_model_input", "make_images", "make_video_folders"]
