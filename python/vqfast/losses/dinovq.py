"""``DinoVQLoss`` — the DinoVQ objective of seed 004 / SPEC §5.2.

Generator phase:
    L_dino = 1 − mean_{b,l} cos(f̂_bl, f_bl)        (F.cosine_similarity over the feature dim, eps 1e-8)
    L_rec  = mse(x̂, x);  L_vq from the quantiser;  L_p = mean LPIPS(x̂, x) if use_perceptual else 0
    L_g_raw = −mean D(x̂)  (use_gan; PatchGAN NLayerDiscriminator, hinge)
    λ_a = clamp(‖∇_W(w_rec L_rec + w_p L_p)‖ / (‖∇_W L_g_raw‖ + 1e−4), 0, 1e4), detached, if
          disc_adaptive_weight and a last layer W is given, else 1   (DINO term NOT in the numerator)
    w_gan(t) = disc_weight if t >= disc_start else 0;  L_gan = λ_a · w_gan(t) · L_g_raw
    total = w_dino L_dino + w_rec L_rec + w_vq L_vq + w_p L_p + L_gan
Discriminator phase (use_gan):  L_D = w_gan(t) · ½ (mean relu(1 − D(sg x)) + mean relu(1 + D(sg x̂)))
(two separate D calls: BatchNorm statistics, SPEC §6.14). Without GAN the D phase returns zeros.

Adaptive weight, one pass (``fast_adaptive_weight``, default; SPEC §7.5): both L_rec/L_p and L_g depend on the
pixel head W only through x̂, so ``vqperceptual.fast_adaptive_generator_loss`` takes ∂/∂x̂ of each once, the two
∇_W norms from W's weight-gradient op, and back-propagates w_rec·∂L_rec + w_p·∂L_p + λ_a·w_gan·∂L_g into x̂ —
LPIPS and D are traversed once instead of twice (the reference's two ``autograd.grad`` calls + full backward);
same value and gradients. Needs D frozen in the generator step (the task freezes it); otherwise the reference path.

Deviations, all value-preserving: while w_gan(t) = 0 the generator evaluates D(x̂) without a graph
(L_g_raw is only logged; λ_a is not computed since it multiplies 0); ``logits_real``/``logits_fake``
are detached 0-dim tensors instead of ``.item()`` floats (no device sync per step, SPEC §6.16);
a non-finite λ_a becomes 0 unless ``nonfinite_adaptive_to_zero=False`` (SPEC §6.4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vqfast.errors import InputError
from vqfast.losses.vqperceptual import calculate_adaptive_weight, fast_adaptive_generator_loss, hinge_d_loss
from vqfast.nn.discriminator import NLayerDiscriminator

GENERATOR_KEYS = ("total_loss", "dino_loss", "recon_loss", "vq_loss", "perceptual_loss", "gen_adv_loss",
                  "dino_loss_weighted", "recon_loss_weighted", "vq_loss_weighted", "perceptual_loss_weighted",
                  "gen_adv_loss_weighted")
DISCRIMINATOR_KEYS = ("disc_loss", "disc_weight", "logits_real", "logits_fake")
UPDATE_TYPES = ("generator", "discriminator")


def dino_cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − mean cosine over tokens; pred/target (B, L, D) or (B, H, W, D)."""
    if pred.shape != target.shape:
        raise InputError(f"DINO feature shapes differ: predicted {tuple(pred.shape)} vs target {tuple(target.shape)}")
    pred = pred.reshape(-1, pred.shape[-1]).float()  # (B·L, D)
    target = target.reshape(-1, target.shape[-1]).float()  # (B·L, D)
    return 1.0 - F.cosine_similarity(pred, target, dim=-1, eps=1e-8).mean()


class DinoVQLoss(nn.Module):
    def __init__(self, *, dino_loss_weight: float = 1.0, recon_loss_weight: float = 1.0, vq_loss_weight: float = 1.0,
                 use_perceptual: bool = False, perceptual_weight: float = 1.0, vgg_ckpt_path: str | None = None,
                 perceptual_backbone: str = "imagenet", use_gan: bool = False, disc_start: int = 10000,
                 disc_weight: float = 0.5, disc_dim: int = 64, disc_num_layers: int = 3,
                 disc_adaptive_weight: bool = False, out_chans: int = 3, nonfinite_adaptive_to_zero: bool = True,
                 fast_adaptive_weight: bool = True):
        super().__init__()
        if disc_start < 0:
            raise InputError(f"disc_start={disc_start} must be >= 0")
        self.dino_loss_weight = float(dino_loss_weight)
        self.recon_loss_weight = float(recon_loss_weight)
        self.vq_loss_weight = float(vq_loss_weight)
        self.use_perceptual = bool(use_perceptual)
        self.perceptual_weight = float(perceptual_weight)
        self.use_gan = bool(use_gan)
        self.disc_start = int(disc_start)
        self.disc_weight = float(disc_weight)
        self.disc_adaptive_weight = bool(disc_adaptive_weight)
        self.nonfinite_adaptive_to_zero = nonfinite_adaptive_to_zero
        self.fast_adaptive_weight = bool(fast_adaptive_weight)
        # LPIPS is frozen and held outside the module tree: not in parameters() (no optimizer sees it) and
        # not in state_dict() (checkpoints do not embed VGG16, SPEC §6.13); _apply still moves it.
        self._perceptual: list[nn.Module] = []
        if self.use_perceptual:
            from vqfast.losses.lpips import LPIPS
            self._perceptual.append(LPIPS(perceptual_backbone, backbone_path=vgg_ckpt_path))  # eval forever
        self.discriminator = NLayerDiscriminator(out_chans, disc_dim, disc_num_layers) if self.use_gan else None

    @property
    def perceptual(self) -> nn.Module | None:
        return self._perceptual[0] if self._perceptual else None

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for module in self._perceptual:
            module._apply(fn, *args, **kwargs)
        return self

    def gan_weight(self, global_step: int) -> float:
        """w_gan(t) = disc_weight once t >= disc_start, else 0."""
        return self.disc_weight if global_step >= self.disc_start else 0.0

    def generator(self, pred_dino: torch.Tensor, target_dino: torch.Tensor, pred_img: torch.Tensor,
                  target_img: torch.Tensor, vq_loss: torch.Tensor, global_step: int,
                  last_layer: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        dino = dino_cosine_loss(pred_dino, target_dino)  # ()
        x_hat = pred_img.float()  # (B, C, H, W): every pixel-space term reads this one node
        recon = F.mse_loss(x_hat, target_img.float())  # ()
        vq = vq_loss.float().reshape(())
        zero = recon.new_zeros(())
        perceptual = zero
        if self.perceptual is not None:
            perceptual = self.perceptual(x_hat, target_img.float()).mean()  # ()
        gen_adv, gen_adv_weighted = zero, zero
        pixel_total = None  # set by the one-pass path: w_rec·L_rec + w_p·L_p + L_gan with its fused gradient
        if self.discriminator is not None:
            w_gan = self.gan_weight(global_step)
            if w_gan > 0:
                gen_adv = -self.discriminator(x_hat).mean()  # () L_g_raw
                lam = recon.new_ones(())
                if self.disc_adaptive_weight and last_layer is not None:
                    nll = self.recon_loss_weight * recon + self.perceptual_weight * perceptual
                    if self._one_pass(x_hat, last_layer):
                        pixel_total, lam = fast_adaptive_generator_loss(nll, gen_adv, x_hat, last_layer, 1.0, w_gan,
                                                                        self.nonfinite_adaptive_to_zero)
                    else:
                        lam = calculate_adaptive_weight(nll, gen_adv, last_layer, 1.0,
                                                        self.nonfinite_adaptive_to_zero)
                gen_adv_weighted = lam * w_gan * gen_adv
            else:  # only logged: no graph through D
                with torch.no_grad():
                    gen_adv = -self.discriminator(pred_img.detach().float()).mean()
        out = {
            "dino_loss": dino, "recon_loss": recon, "vq_loss": vq, "perceptual_loss": perceptual,
            "gen_adv_loss": gen_adv,
            "dino_loss_weighted": self.dino_loss_weight * dino,
            "recon_loss_weighted": self.recon_loss_weight * recon,
            "vq_loss_weighted": self.vq_loss_weight * vq,
            "perceptual_loss_weighted": self.perceptual_weight * perceptual if self.perceptual is not None else zero,
            "gen_adv_loss_weighted": gen_adv_weighted,
        }
        if pixel_total is None:
            out["total_loss"] = (out["dino_loss_weighted"] + out["recon_loss_weighted"] + out["vq_loss_weighted"]
                                 + out["perceptual_loss_weighted"] + gen_adv_weighted)
        else:  # same value; the pixel terms' gradient reaches x̂ without a second pass through LPIPS/D
            out["total_loss"] = out["dino_loss_weighted"] + out["vq_loss_weighted"] + pixel_total
        return {k: out[k] for k in GENERATOR_KEYS}

    def _one_pass(self, x_hat: torch.Tensor, last_layer: torch.Tensor) -> bool:
        """The SPEC §7.5 path applies: gradients enabled, x̂ and W in the graph, D frozen."""
        return (self.fast_adaptive_weight and torch.is_grad_enabled() and x_hat.requires_grad
                and last_layer.requires_grad and not any(p.requires_grad for p in self.discriminator.parameters()))

    def discriminator_loss(self, target_img: torch.Tensor, pred_img: torch.Tensor, global_step: int) -> dict:
        if self.discriminator is None:
            return {"disc_loss": target_img.new_zeros((), dtype=torch.float32), "disc_weight": 0.0,
                    "logits_real": 0.0, "logits_fake": 0.0}
        w_gan = self.gan_weight(global_step)
        logits_real = self.discriminator(target_img.detach().float())  # (B, 1, h, w)
        logits_fake = self.discriminator(pred_img.detach().float())  # (B, 1, h, w)
        return {"disc_loss": w_gan * hinge_d_loss(logits_real, logits_fake), "disc_weight": w_gan,
                "logits_real": logits_real.detach().mean(), "logits_fake": logits_fake.detach().mean()}
