"""Plain VQ-VAE objective (rosinality / the S2 pipeline without GAN, SPEC.md §3.4-3.5).

total = mse(x̂, x) + vq_weight · vq_loss   (rosinality: vq_weight 0.25; S2 traditional path: 1.0)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MSEVQLoss(nn.Module):
    def __init__(self, vq_weight: float = 0.25):
        super().__init__()
        self.vq_weight = vq_weight

    def forward(self, vq_loss: torch.Tensor, inputs: torch.Tensor, reconstructions: torch.Tensor,
                split: str = "train"):
        rec = F.mse_loss(reconstructions, inputs)
        quant = vq_loss.mean()
        total = rec + self.vq_weight * quant
        return total, {f"{split}/total_loss": total.detach(), f"{split}/rec_loss": rec.detach(),
                       f"{split}/quant_loss": quant.detach()}
