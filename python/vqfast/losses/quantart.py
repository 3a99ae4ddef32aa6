"""QuantArt stage-2 loss ``Stage2Loss`` (= QuantArt ``VQLPIPS_Ref``), SPEC.md §2.3. No LPIPS despite the name.

Generator phase (``optimizer_idx=0``), all means over elements:
    L_rev   = mse(quant_y, quant_x)                      (``mapped_reconstructions`` replaces quant_y if given)
    L_style = mse(μ(quant_y), μ(quant_ref)) + mse(σ(quant_y), σ(quant_ref))
              μ, σ per (sample, channel) over H·W, σ = sqrt(var_unbiased + 1e-5)  (``vqfast.ops.channel_stats``)
    L_code  = mean(codebook1_loss)                       (quantize_dec's legacy VQ loss on h_x)
    aeloss  = reverse_weight·L_rev + codebook1_weight·L_code + style_weight·L_style
              [+ identity_weight·mse(quant_identity, quant_ref) + codebook1_weight·mean(diff_identity)]
    total   = aeloss + d_weight·f(t)·(−mean D(quant_y)),   f(t) = disc_factor if t >= disc_start else 0
Discriminator phase (``optimizer_idx=1``): D on 256-channel latents, "real" = sg(quant_ref), fake = sg(quant_y),
separate D calls (BatchNorm statistics); L_D = f(t)·[t mod G_step == 0]·½(hinge or vanilla).

Where QuantArt's code and the seed documents disagree (SPEC §2.3), the code is the default and the seed's reading
is an option:
- ``adaptive_disc_weight=False`` (code: d_weight = disc_weight, constant). True = seed S0: taming's adaptive
  weight λ = clamp(‖∇_W aeloss‖ / (‖∇_W g‖ + 1e-4), 0, 1e4)·disc_weight with W = ``last_layer`` (pass
  ``StyleTransfer.last_layer``: QuantArt passes quantize_dec's codebook, which the GAN term never reaches).
- ``identity_weight=None`` (code: the identity term is weighted by reverse_weight). A float = seed S0's λ_id.
- ``codebook2_weight`` is accepted and unused (as in QuantArt).
Logged values are detached 0-dim tensors (no host sync).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vqfast.losses.vqperceptual import (
    adopt_weight,
    calculate_adaptive_weight,
    hinge_d_loss,
    vanilla_d_loss,
)
from vqfast.nn.discriminator import NLayerDiscriminator, weights_init
from vqfast.ops import channel_stats

__all__ = ["Stage2Loss", "calc_mean_std", "content_loss", "style_loss"]

DISC_LOSSES = ("hinge", "vanilla")
STYLE_EPS = 1e-5


def calc_mean_std(feat: torch.Tensor, eps: float = STYLE_EPS, backend: str = "auto"):
    """QuantArt ``calc_mean_std``: per (sample, channel) mean and sqrt(unbiased var + eps), each (B, C)."""
    return channel_stats(feat, eps=eps, unbiased=True, backend=backend, check_values=False)


def content_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.requires_grad:
        raise ValueError("content loss target (quant_x) must not require grad; it comes from the frozen encoder")
    return F.mse_loss(output, target)


def style_loss(output: torch.Tensor, target: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """mse(μ_out, μ_ref) + mse(σ_out, σ_ref) (means over B·C). ``target`` must be a constant."""
    if target.requires_grad:
        raise ValueError("style loss target (quant_ref) must not require grad; it comes from the frozen encoder")
    mu_out, std_out = calc_mean_std(output, backend=backend)  # (B, C) each
    with torch.no_grad():
        mu_ref, std_ref = calc_mean_std(target, backend=backend)  # (B, C) each
    return F.mse_loss(mu_out, mu_ref) + F.mse_loss(std_out, std_ref)


class Stage2Loss(nn.Module):
    def __init__(self, disc_start: int, codebook1_weight: float = 1.0, codebook2_weight: float = 1.0,
                 G_step: int = 1, disc_num_layers: int = 3, disc_in_channels: int = 3, disc_factor: float = 1.0,
                 disc_weight: float = 1.0, reverse_weight: float = 1.0, style_weight: float = 10.0,
                 use_actnorm: bool = False, disc_conditional: bool = False, disc_ndf: int = 64,
                 disc_loss: Literal["hinge", "vanilla"] = "hinge", *, identity_weight: float | None = None,
                 adaptive_disc_weight: bool = False, backend: str = "auto"):
        super().__init__()
        if disc_loss not in DISC_LOSSES:
            raise ValueError(f"Stage2Loss: disc_loss={disc_loss!r} is not one of {DISC_LOSSES}")
        if int(G_step) < 1:
            raise ValueError(f"Stage2Loss: G_step={G_step} must be >= 1")
        if disc_conditional:
            raise ValueError("Stage2Loss: disc_conditional=True is not supported (QuantArt configs use False)")
        self.discriminator_iter_start = int(disc_start)
        self.codebook1_weight = float(codebook1_weight)
        self.codebook2_weight = float(codebook2_weight)  # unused, as in QuantArt
        self.G_step = int(G_step)
        self.disc_factor = float(disc_factor)
        self.discriminator_weight = float(disc_weight)
        self.reverse_weight = float(reverse_weight)
        self.style_weight = float(style_weight)
        self.identity_weight = None if identity_weight is None else float(identity_weight)
        self.adaptive_disc_weight = bool(adaptive_disc_weight)
        self.backend = backend
        self.disc_loss_name = disc_loss
        self.disc_loss = hinge_d_loss if disc_loss == "hinge" else vanilla_d_loss
        self.discriminator = NLayerDiscriminator(disc_in_channels, disc_ndf, disc_num_layers, use_actnorm)
        self.discriminator.apply(weights_init)

    # ---- generator ---------------------------------------------------------------------------------------------
    def generator_loss(self, codebook1_loss, inputs, reconstructions, quant, global_step: int,
                       last_layer: torch.Tensor | None = None, split: str = "train",
                       mapped_reconstructions=None, diff_identity=None, quant_identity=None):
        """(total, aeloss, log). inputs = quant_ref, reconstructions = quant_y, quant = quant_x (all (B, D, h, w))."""
        rev_src = reconstructions if mapped_reconstructions is None else mapped_reconstructions
        rev = content_loss(rev_src, quant)
        sty = style_loss(reconstructions, inputs, self.backend)
        code = codebook1_loss.mean()
        aeloss = self.reverse_weight * rev + self.codebook1_weight * code + self.style_weight * sty
        log = {}
        if quant_identity is not None:
            ident = content_loss(quant_identity, inputs)
            w_id = self.reverse_weight if self.identity_weight is None else self.identity_weight
            aeloss = aeloss + w_id * ident
            log[f"{split}/identity_loss"] = ident.detach()
        if diff_identity is not None:
            aeloss = aeloss + self.codebook1_weight * diff_identity.mean()
            log[f"{split}/diff_identity"] = diff_identity.detach().mean()
        logits_fake = self.discriminator(reconstructions.contiguous())  # (B, 1, h', w')
        g_loss = -torch.mean(logits_fake)
        disc_factor = adopt_weight(self.disc_factor, global_step, threshold=self.discriminator_iter_start)
        if self.adaptive_disc_weight and last_layer is not None and torch.is_grad_enabled() \
                and last_layer.requires_grad and disc_factor > 0:
            d_weight = calculate_adaptive_weight(aeloss, g_loss, last_layer, self.discriminator_weight)
        else:
            d_weight = torch.tensor(self.discriminator_weight, device=aeloss.device)
        total = aeloss + d_weight * disc_factor * g_loss
        log = {f"{split}/total_loss": total.detach(), f"{split}/quant_x2y_loss": code.detach(),
               f"{split}/reverse_loss": rev.detach(), f"{split}/style_loss": sty.detach(),
               f"{split}/d_weight": d_weight.detach(),
               f"{split}/disc_factor": torch.tensor(float(disc_factor), device=aeloss.device),
               f"{split}/g_loss": g_loss.detach(), **log}
        return total, aeloss, log

    # ---- discriminator -----------------------------------------------------------------------------------------
    def discriminator_factor(self, global_step: int) -> float:
        factor = adopt_weight(self.disc_factor, global_step, threshold=self.discriminator_iter_start)
        return factor if global_step % self.G_step == 0 else 0.0

    def discriminator_loss(self, inputs, reconstructions, global_step: int, split: str = "train"):
        """(d_loss, log): real = sg(quant_ref), fake = sg(quant_y), two separate D calls."""
        logits_real = self.discriminator(inputs.detach().contiguous())  # (B, 1, h', w')
        logits_fake = self.discriminator(reconstructions.detach().contiguous())
        d_loss = self.discriminator_factor(global_step) * self.disc_loss(logits_real, logits_fake)
        log = {f"{split}/disc_loss": d_loss.detach(), f"{split}/logits_real": logits_real.detach().mean(),
               f"{split}/logits_fake": logits_fake.detach().mean()}
        return d_loss, log

    def forward(self, codebook1_loss, inputs, reconstructions, quant, indices_ref=None, indices=None,
                optimizer_idx: int = 0, global_step: int = 0, last_layer=None, cond=None, split: str = "train",
                mapped_reconstructions=None, diff_identity=None, quant_identity=None):
        """QuantArt's call signature. optimizer_idx 0 → (total, aeloss, log); 1 → (d_loss, log)."""
        if cond is not None:
            raise ValueError("Stage2Loss: cond is not supported (disc_conditional=False)")
        if optimizer_idx == 0:
            return self.generator_loss(codebook1_loss, inputs, reconstructions, quant, global_step, last_layer,
                                       split, mapped_reconstructions, diff_identity, quant_identity)
        if optimizer_idx == 1:
            return self.discriminator_loss(inputs, reconstructions, global_step, split)
        raise ValueError(f"optimizer_idx={optimizer_idx!r}; allowed: 0 (generator), 1 (discriminator)")
