"""Training data beyond the loaders: generated toy datasets (video folders, images, latent shards, style
paintings), DINO teacher features, the style stream of QuantArt stage 2, latent reference pools."""
from vqfast.data.synthetic import make_images, make_video_folders

__all__ = ["make_images", "make_video_folders"]
