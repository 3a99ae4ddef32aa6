"""Building blocks shared by ``losses`` and ``models`` (which never import each other): the PatchGAN
discriminator with ActNorm (taming/modules/discriminator/model.py)."""
from vqfast.nn.discriminator import ActNorm, NLayerDiscriminator, weights_init

__all__ = ["ActNorm", "NLayerDiscriminator", "weights_init"]
