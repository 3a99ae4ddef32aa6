"""``PipelineGANLoss`` — the seed-002 video pipeline's own GAN loss for non-taming models (SPEC §3.4: the
pipeline's ``train/lossconfig.py::LossCalculator.compute_total_loss`` / ``step_discriminator`` with
``use_gan``; ``VQGANLossHelper.adopt_weight`` / ``calculate_lambda``).

Generator (one call per step, ``t`` = global step):
    rec_err = mse(x̂, x);  pixel = l1(x̂, x);  f = disc_factor if t >= disc_start else 0
    p = mean LPIPS(x, x̂);  L_rec = perceptual_loss_factor · p + pixel_loss_factor · pixel
    L_g = −mean D(x̂)
    λ = 0.8 · clamp(‖∇_θ L_rec‖ / (‖∇_θ L_g‖ + 1e−4), 0, 100), detached; θ = the decoder's LAST parameter that
        requires grad (``decoder.parameters()`` order: usually the final conv's bias, not taming's weight);
        λ = 1 when there is no θ or no graph (the pipeline's fallback)
    λ ← λ · min(1, |t − disc_start| / (2 · disc_start))   (the pipeline's ramp)
    total = L_rec + vq_loss + f · λ · L_g
Discriminator (the pipeline computes it in the same call, on detached inputs; the task runs it every
``train.disc_every`` = 3 steps, as ``step_discriminator`` does, from step 0 — f = 0 before ``disc_start``):
    σ(t) = max(0, instance_noise · (1 − 2t / num_steps));  n₁, n₂ ~ N(0, σ²) independently
    gan_loss = f · ½ · (mean relu(1 − D(x + n₁)) + mean relu(1 + D(x̂ + n₂)))
D is a PatchGAN (``Discriminator(image_channels=output_channels)``, dome272 VQGAN-pytorch layout = taming's
``NLayerDiscriminator`` with BatchNorm, weights_init N(0, 0.02)). Logged values are detached 0-dim tensors.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqfast.losses.lpips import LPIPS
from vqfast.losses.vqperceptual import adopt_weight
from vqfast.nn.discriminator import NLayerDiscriminator, weights_init

__all__ = ["PipelineGANLoss", "pipeline_lambda", "instance_noise_std"]


def pipeline_lambda(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_param: torch.Tensor | None,
                    scale: float = 0.8, max_value: float = 100.0) -> torch.Tensor:
    """``VQGANLossHelper.calculate_lambda``: 0.8 · clamp(‖∇L_rec‖ / (‖∇L_g‖ + 1e-4), 0, 100), detached; 1 when
    ``last_param`` is None or either loss has no graph to it."""
    one = torch.ones((), device=rec_loss.device)
    if last_param is None or not (torch.is_grad_enabled() and rec_loss.requires_grad and g_loss.requires_grad):
        return one
    rec_grad = torch.autograd.grad(rec_loss, last_param, retain_graph=True, allow_unused=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_param, retain_graph=True, allow_unused=True)[0]
    if rec_grad is None or g_grad is None:
        return one
    lam = torch.linalg.vector_norm(rec_grad.float()) / (torch.linalg.vector_norm(g_grad.float()) + 1e-4)
    return (torch.clamp(lam, 0.0, max_value) * scale).detach()


def instance_noise_std(step: int, num_steps: int, start: float = 0.01) -> float:
    """σ(t) = max(0, start · (1 − 2t / num_steps)): the D inputs' noise fades out by half of the run."""
    return max(0.0, start * (1.0 - 2.0 * step / max(1, num_steps)))


class PipelineGANLoss(nn.Module):
    def __init__(self, disc_in_channels: int = 3, disc_factor: float = 1.0, disc_start: int = 20000,
                 pixel_loss_factor: float = 1.0, perceptual_loss_factor: float = 1.0, num_steps: int = 100000,
                 disc_num_layers: int = 3, disc_ndf: int = 64, instance_noise: float = 0.01, *,
                 perceptual_backbone: str = "imagenet", perceptual_backbone_path=None):
        super().__init__()
        if disc_start < 1:
            raise ValueError(f"disc_start={disc_start}: the pipeline's λ ramp divides by 2·disc_start; need >= 1")
        self.disc_factor, self.disc_start = float(disc_factor), int(disc_start)
        self.pixel_loss_factor, self.perceptual_loss_factor = float(pixel_loss_factor), float(perceptual_loss_factor)
        self.num_steps, self.instance_noise = int(num_steps), float(instance_noise)
        self.disc_train_start = 0  # step_discriminator runs from step 0 (its loss is 0 until disc_start)
        self.discriminator = NLayerDiscriminator(disc_in_channels, disc_ndf, disc_num_layers).apply(weights_init)
        self.perceptual_loss = LPIPS(perceptual_backbone, perceptual_backbone_path)

    def train(self, mode: bool = True):
        super().train(mode)
        self.perceptual_loss.train(False)  # the pipeline's LPIPS().eval()
        return self

    def ramp(self, step: int) -> float:
        return min(1.0, abs(step - self.disc_start) / (2.0 * self.disc_start))

    def generator_loss(self, vq_loss: torch.Tensor, inputs: torch.Tensor, reconstructions: torch.Tensor, step: int,
                       last_layer: torch.Tensor | None = None, split: str = "train"):
        """(total, logs) of ``compute_total_loss`` (``last_layer`` = θ, the decoder's last trainable parameter)."""
        x, xr = inputs.float(), reconstructions.float()
        rec_err = F.mse_loss(xr, x)
        pixel = F.l1_loss(xr, x)
        factor = adopt_weight(self.disc_factor, step, self.disc_start)
        p_loss = self.perceptual_loss(x, xr).mean()
        rec = self.perceptual_loss_factor * p_loss + self.pixel_loss_factor * pixel
        g_loss = -torch.mean(self.discriminator(xr))
        lam = pipeline_lambda(rec, g_loss, last_layer) * self.ramp(step)
        quant = vq_loss.mean()
        total = rec + quant + factor * lam * g_loss
        factor_t = torch.tensor(factor, device=x.device)
        return total, {f"{split}/total_loss": total.detach(), f"{split}/rec_loss": rec_err.detach(),
                       f"{split}/pixel_loss": pixel.detach(), f"{split}/quant_loss": quant.detach(),
                       f"{split}/p_loss": p_loss.detach(), f"{split}/perceptual_rec_loss": rec.detach(),
                       f"{split}/g_loss": g_loss.detach(), f"{split}/disc_factor": factor_t,
                       f"{split}/lambda_gan": lam.detach(),
                       # the pipeline's own wandb names (trainVqVae.py: loss/*)
                       "loss/total": total.detach(), "loss/recon": rec_err.detach(), "loss/vq": quant.detach(),
                       "loss/perceptual": p_loss.detach(), "loss/pixel_l1": pixel.detach(),
                       "loss/gan_g": g_loss.detach()}

    def discriminator_loss(self, inputs: torch.Tensor, reconstructions: torch.Tensor, step: int,
                           split: str = "train"):
        """(gan_loss, logs): hinge on noisy detached inputs, × f(t)."""
        x, xr = inputs.detach().float(), reconstructions.detach().float()
        sigma = instance_noise_std(step, self.num_steps, self.instance_noise)
        if sigma > 0:
            x = x + sigma * torch.randn_like(x)
            xr = xr + sigma * torch.randn_like(xr)
        logits_real, logits_fake = self.discriminator(x), self.discriminator(xr)
        factor = adopt_weight(self.disc_factor, step, self.disc_start)
        loss = factor * 0.5 * (torch.mean(F.relu(1.0 - logits_real)) + torch.mean(F.relu(1.0 + logits_fake)))
        return loss, {f"{split}/gan_loss": loss.detach(), f"{split}/disc_loss": loss.detach(),
                      f"{split}/logits_real": logits_real.detach().mean(),
                      f"{split}/logits_fake": logits_fake.detach().mean(), "loss/gan_d": loss.detach()}
