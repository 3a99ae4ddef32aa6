"""Training data: synthetic dataset generation and the Python clip-loader fallback."""
from vqfast.data.clips import PyVideoClipLoader, frames_to_model_input
from vqfast.data.synthetic import make_images, make_video_folders

__all__ = ["PyVideoClipLoader", "frames_to_model_input", "make_images", "make_video_folders"]
