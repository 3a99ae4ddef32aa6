"""``VQLPIPSWithDiscriminator`` — taming's VQGAN loss with its exact semantics (SPEC.md §1.5).

Generator phase (``optimizer_idx=0``):
    r = |x - x̂| + perceptual_weight · LPIPS(x, x̂);  nll = mean(r)
    g = -mean(D(x̂));  λ = clamp(‖∇_W nll‖ / (‖∇_W g‖ + 1e-4), 0, 1e4) · disc_weight  (W = decoder last layer)
    total = nll + λ · f(t) · g + codebook_weight · mean(codebook_loss),  f(t) = disc_factor if t >= disc_start else 0
Discriminator phase (``optimizer_idx=1``):
    f(t) · ½ · (mean relu(1 - D(x)) + mean relu(1 + D(x̂)))   (hinge; "vanilla" uses softplus)

vqfast extras, all defaulting to the reference behaviour except the NaN guard (SPEC §6.4):
``nonfinite_d_weight_to_zero`` (True), ``adaptive_weight_before_start`` (True: λ computed even while
f(t) = 0, as taming), ``disc_train_start`` (None: D trains from ``disc_start``). The D phase does not
re-evaluate LPIPS (taming does, for nothing). Logged values are detached 0-dim tensors (no host sync).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqfast.losses.lpips import LPIPS
from vqfast.nn.discriminator import NLayerDiscriminator, weights_init

__all__ = ["VQLPIPSWithDiscriminator", "adopt_weight", "hinge_d_loss", "vanilla_d_loss",
           "calculate_adaptive_weight"]

DISC_LOSSES = ("hinge", "vanilla")


def adopt_weight(weight: float, global_step: int, threshold: int = 0, value: float = 0.0) -> float:
    """``weight`` once ``global_step >= threshold``, else ``value`` (taming ``adopt_weight``)."""
    return value if global_step < threshold else weight


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.mean(F.relu(1.0 - logits_real)) + torch.mean(F.relu(1.0 + logits_fake)))


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.mean(F.softplus(-logits_real)) + torch.mean(F.softplus(logits_fake)))


def calculate_adaptive_weight(nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                              disc_weight: float, nonfinite_to_zero: bool = True) -> torch.Tensor:
    """λ = clamp(‖∇nll‖ / (‖∇g‖ + 1e-4), 0, 1e4) · disc_weight, detached; norms in fp32."""
    nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    d_weight = torch.linalg.vector_norm(nll_grads.float()) / (torch.linalg.vector_norm(g_grads.float()) + 1e-4)
    d_weight = torch.clamp(d_weight, 0.0, 1e4).detach()
    if nonfinite_to_zero:
        d_weight = torch.where(torch.isfinite(d_weight), d_weight, torch.zeros_like(d_weight))
    return d_weight * disc_weight


def fast_adaptive_generator_loss(nll_loss: torch.Tensor, g_loss: torch.Tensor, reconstructions: torch.Tensor,
                                 last_layer: torch.Tensor, disc_weight: float, disc_factor: float,
                                 nonfinite_to_zero: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """SPEC §7.5: the adaptive weight with LPIPS and D traversed once each instead of twice.

    taming takes ∇_W of L_nll and of L_g (two partial backwards through LPIPS and D), then back-propagates the
    total loss through LPIPS and D again. Both losses depend on the last layer W only through x̂, so:
    g_nll = ∂L_nll/∂x̂ and g_adv = ∂L_g/∂x̂ (one pass each), ∇_W L = (∂x̂/∂W)ᵀ g (the last layer's weight
    gradient alone), λ as taming; the returned loss has taming's value and back-propagates exactly
    g_nll + λ·f·g_adv into x̂ (the decoder and encoder), without touching LPIPS or D again.
    Needs frozen LPIPS/D (no parameter of theirs is trained in the generator step). Returns (loss, λ)."""
    g_nll, = torch.autograd.grad(nll_loss, reconstructions)
    g_adv, = torch.autograd.grad(g_loss, reconstructions)
    nll_w, = torch.autograd.grad(reconstructions, last_layer, g_nll, retain_graph=True)
    adv_w, = torch.autograd.grad(reconstructions, last_layer, g_adv, retain_graph=True)
    d_weight = torch.linalg.vector_norm(nll_w.float()) / (torch.linalg.vector_norm(adv_w.float()) + 1e-4)
    d_weight = torch.clamp(d_weight, 0.0, 1e4).detach()
    if nonfinite_to_zero:
        d_weight = torch.where(torch.isfinite(d_weight), d_weight, torch.zeros_like(d_weight))
    d_weight = d_weight * disc_weight
    grad_x = (g_nll + (d_weight * disc_factor).to(g_adv.dtype) * g_adv).detach()    # ∂L/∂x̂, (B, C, H, W)
    surrogate = (reconstructions * grad_x).sum()
    value = (nll_loss + d_weight * disc_factor * g_loss).detach()
    return value + (surrogate - surrogate.detach()), d_weight


class VQLPIPSWithDiscriminator(nn.Module):
    def __init__(self, disc_start: int, codebook_weight: float = 1.0, pixelloss_weight: float = 1.0,
                 disc_num_layers: int = 3, disc_in_channels: int = 3, disc_factor: float = 1.0,
                 disc_weight: float = 1.0, perceptual_weight: float = 1.0, use_actnorm: bool = False,
                 disc_conditional: bool = False, disc_ndf: int = 64, disc_loss: Literal["hinge", "vanilla"] = "hinge",
                 *, perceptual_backbone: Literal["imagenet", "random"] = "imagenet",
                 perceptual_backbone_path: str | None = None, nonfinite_d_weight_to_zero: bool = True,
                 adaptive_weight_before_start: bool = True, disc_train_start: int | None = None,
                 fast_adaptive_weight: bool = True, perceptual_taming_dropout: bool = False):
        super().__init__()
        self.fast_adaptive_weight = fast_adaptive_weight
        if disc_loss not in DISC_LOSSES:
            raise ValueError(f"disc_loss={disc_loss!r} is not one of {DISC_LOSSES}")
        self.codebook_weight = codebook_weight
        self.pixel_weight = pixelloss_weight  # stored but unused, as in taming (SPEC §6.8)
        self.perceptual_weight = perceptual_weight
        self.perceptual_loss = (LPIPS(perceptual_backbone, perceptual_backbone_path,
                                      taming_dropout=perceptual_taming_dropout)
                                if perceptual_weight > 0 else None)
        self.discriminator = NLayerDiscriminator(disc_in_channels, disc_ndf, disc_num_layers, use_actnorm)
        self.discriminator.apply(weights_init)
        self.discriminator_iter_start = disc_start
        self.disc_train_start = disc_start if disc_train_start is None else disc_train_start
        self.disc_loss = hinge_d_loss if disc_loss == "hinge" else vanilla_d_loss
        self.disc_factor = disc_factor
        self.discriminator_weight = disc_weight
        self.disc_conditional = disc_conditional
        self.nonfinite_d_weight_to_zero = nonfinite_d_weight_to_zero
        self.adaptive_weight_before_start = adaptive_weight_before_start

    # ---- pieces ------------------------------------------------------------------------------
    def _d_input(self, images: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            if self.disc_conditional:
                raise ValueError("disc_conditional=True needs a `cond` tensor")
            return images.contiguous()
        if not self.disc_conditional:
            raise ValueError("a `cond` tensor was given but disc_conditional=False")
        return torch.cat((images.contiguous(), cond), dim=1)  # (B, C + C_cond, H, W)

    def reconstruction_terms(self, inputs: torch.Tensor, reconstructions: torch.Tensor):
        """(nll_loss, rec_loss_mean, p_loss_mean): r = |x - x̂| + w_p · LPIPS."""
        rec = torch.abs(inputs.contiguous() - reconstructions.contiguous())  # (B, C, H, W)
        if self.perceptual_loss is not None:
            p_loss = self.perceptual_loss(inputs.contiguous(), reconstructions.contiguous())  # (B, 1, 1, 1)
            rec = rec + self.perceptual_weight * p_loss
        else:
            p_loss = torch.zeros((), device=inputs.device)
        nll = torch.mean(rec)
        return nll, rec.detach().mean(), p_loss.detach().mean()

    # ---- phases ------------------------------------------------------------------------------
    def generator_loss(self, codebook_loss, inputs, reconstructions, global_step: int,
                       last_layer: torch.Tensor | None = None, cond=None, split: str = "train"):
        nll_loss, rec_mean, p_mean = self.reconstruction_terms(inputs, reconstructions)
        logits_fake = self.discriminator(self._d_input(reconstructions, cond))  # (B, 1, h, w)
        g_loss = -torch.mean(logits_fake)
        disc_factor = adopt_weight(self.disc_factor, global_step, threshold=self.discriminator_iter_start)
        want_weight = self.adaptive_weight_before_start or disc_factor > 0
        codebook_term = self.codebook_weight * codebook_loss.mean()
        fast = (self.fast_adaptive_weight and reconstructions.requires_grad
                and not any(p.requires_grad for p in self.discriminator.parameters()))
        if want_weight and last_layer is not None and torch.is_grad_enabled() and last_layer.requires_grad:
            if fast:  # LPIPS and D traversed once (SPEC §7.5); same value and gradients as below
                ae_loss, d_weight = fast_adaptive_generator_loss(
                    nll_loss, g_loss, reconstructions, last_layer, self.discriminator_weight, disc_factor,
                    self.nonfinite_d_weight_to_zero)
                return self._generator_out(ae_loss + codebook_term, codebook_loss, nll_loss, rec_mean, p_mean,
                                           d_weight, disc_factor, g_loss, inputs.device, split)
            d_weight = calculate_adaptive_weight(nll_loss, g_loss, last_layer, self.discriminator_weight,
                                                 self.nonfinite_d_weight_to_zero)
        else:
            if want_weight and self.training and last_layer is not None:
                raise RuntimeError("adaptive GAN weight: the decoder's last layer does not require grad or "
                                   "grad is disabled while training (SPEC §6.5)")
            d_weight = torch.zeros((), device=inputs.device)
        loss = nll_loss + d_weight * disc_factor * g_loss + codebook_term
        return self._generator_out(loss, codebook_loss, nll_loss, rec_mean, p_mean, d_weight, disc_factor, g_loss,
                                   inputs.device, split)

    @staticmethod
    def _generator_out(loss, codebook_loss, nll_loss, rec_mean, p_mean, d_weight, disc_factor, g_loss, device,
                       split):
        log = {
            f"{split}/total_loss": loss.detach(), f"{split}/quant_loss": codebook_loss.detach().mean(),
            f"{split}/nll_loss": nll_loss.detach(), f"{split}/rec_loss": rec_mean, f"{split}/p_loss": p_mean,
            f"{split}/d_weight": d_weight.detach(),
            f"{split}/disc_factor": torch.tensor(float(disc_factor), device=device),
            f"{split}/g_loss": g_loss.detach(),
        }
        return loss, log

    def discriminator_loss(self, inputs, reconstructions, global_step: int, cond=None, split: str = "train"):
        logits_real = self.discriminator(self._d_input(inputs.detach(), cond))  # separate calls: BN stats
        logits_fake = self.discriminator(self._d_input(reconstructions.detach(), cond))
        disc_factor = adopt_weight(self.disc_factor, global_step, threshold=self.disc_train_start)
        d_loss = disc_factor * self.disc_loss(logits_real, logits_fake)
        log = {f"{split}/disc_loss": d_loss.detach(), f"{split}/logits_real": logits_real.detach().mean(),
               f"{split}/logits_fake": logits_fake.detach().mean()}
        return d_loss, log

    def forward(self, codebook_loss, inputs, reconstructions, optimizer_idx: int, global_step: int,
                last_layer=None, cond=None, split: str = "train"):
        if optimizer_idx == 0:
            return self.generator_loss(codebook_loss, inputs, reconstructions, global_step, last_layer, cond, split)
        if optimizer_idx == 1:
            return self.discriminator_loss(inputs, reconstructions, global_step, cond, split)
        raise ValueError(f"optimizer_idx={optimizer_idx!r}; allowed: 0 (generator), 1 (discriminator)")
