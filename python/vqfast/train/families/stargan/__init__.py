"""The latent StarGAN v2 family: multi-domain translation of SD-VAE latents (seed 003)."""
from vqfast.train.families.base import Family
from vqfast.train.families.stargan.config import StarGANConfig
from vqfast.train.families.stargan.original import translate_if_original
from vqfast.train.families.stargan.task import StarGANLatentTask

FAMILY = Family("stargan_v2_latent", StarGANConfig, StarGANLatentTask, {"starganv2latent": "stargan_v2_latent"},
                translate=translate_if_original)

__all__ = ["FAMILY", "StarGANConfig", "StarGANLatentTask"]
