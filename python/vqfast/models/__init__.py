"""Model families. One module per family; ``vqfast.train.families`` registers the model.type names."""
from vqfast.models.vqgan import EMAVQ, Decoder, Encoder, VQModel
from vqfast.models.vqvae import VQVAE2, VqVae
from vqfast.nn.discriminator import ActNorm, NLayerDiscriminator, weights_init

__all__ = ["ActNorm", "NLayerDiscriminator", "weights_init", "Encoder", "Decoder", "VQModel", "EMAVQ",
           "VQVAE2", "VqVae"]
