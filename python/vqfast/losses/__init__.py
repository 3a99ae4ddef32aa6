"""Losses: LPIPS wrapper, taming's VQLPIPSWithDiscriminator, the seed-002 pipeline's GAN loss, the plain VQ-VAE
objective."""
from vqfast.losses.losscalculator import PipelineGANLoss
from vqfast.losses.lpips import LPIPS, PerceptualWeightsMissing
from vqfast.losses.mse import MSEVQLoss
from vqfast.losses.vqperceptual import (
                                        VQLPIPSWithDiscriminator,
                                        adopt_weight,
                                        calculate_adaptive_weight,
                                        hinge_d_loss,
                                        vanilla_d_loss,
)

__all__ = ["LPIPS", "PerceptualWeightsMissing", "MSEVQLoss", "PipelineGANLoss", "VQLPIPSWithDiscriminator", "adopt_weight",
           "calculate_adaptive_weight", "hinge_d_loss", "vanilla_d_loss"]
