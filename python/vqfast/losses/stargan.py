"""Latent StarGAN v2 losses (SPEC §4.2, seed 003 ``loss.py``) with the StarGAN v2 choices as options (§4.1).

Latent variant (defaults): D hinge without ½ (≈ 2 at zero logits), G adversarial −mean(logits), R1 without ½,
L1 style / cycle / identity, diversity L1 clamped at ``margin``, λ_ds decayed per epoch.
StarGAN v2: non-saturating BCE (``gan_loss="bce"``), R1 with ½ (``half=True``), per-iteration λ_ds decay
(``lambda_ds_iteration``), second diversity fake detached (``detach_second=True``).
All functions return 0-dim tensors and never sync with the host.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F

from vqfast.errors import InputError

GanLoss = Literal["hinge", "bce"]
_GAN_LOSSES = ("hinge", "bce")

__all__ = ["d_hinge_loss", "d_bce_loss", "g_hinge_loss", "g_bce_loss", "discriminator_adv_loss",
           "generator_adv_loss", "discriminator_loss", "r1_penalty", "r1_weight", "style_reconstruction_loss",
           "cycle_consistency_loss", "identity_loss", "diversity_loss", "lambda_ds_epoch", "lambda_ds_iteration",
           "generator_loss"]


def _check_gan(kind: str) -> None:
    if kind not in _GAN_LOSSES:
        raise InputError(f"gan_loss={kind!r}; allowed: {', '.join(repr(k) for k in _GAN_LOSSES)}")


def d_hinge_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean relu(1 − real) + mean relu(1 + fake) (no ½: 2 when every logit is 0)."""
    return F.relu(1.0 - real.float()).mean() + F.relu(1.0 + fake.float()).mean()


def d_bce_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """StarGAN v2: BCE(real, 1) + BCE(fake, 0) = mean softplus(−real) + mean softplus(fake)."""
    return F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean()


def g_hinge_loss(fake: torch.Tensor) -> torch.Tensor:
    """Latent variant generator adversarial term: −mean(fake logits)."""
    return -fake.float().mean()


def g_bce_loss(fake: torch.Tensor) -> torch.Tensor:
    """StarGAN v2 non-saturating generator term: mean softplus(−fake)."""
    return F.softplus(-fake.float()).mean()


def discriminator_adv_loss(real: torch.Tensor, fake: torch.Tensor, kind: GanLoss = "hinge") -> torch.Tensor:
    _check_gan(kind)
    return d_hinge_loss(real, fake) if kind == "hinge" else d_bce_loss(real, fake)


def generator_adv_loss(fake: torch.Tensor, kind: GanLoss = "hinge") -> torch.Tensor:
    _check_gan(kind)
    return g_hinge_loss(fake) if kind == "hinge" else g_bce_loss(fake)


def discriminator_loss(real: torch.Tensor, fake_ref: torch.Tensor, fake_lat: torch.Tensor,
                       kind: GanLoss = "hinge") -> torch.Tensor:
    """d_loss = ½·(L(real, fake_ref) + L(real, fake_lat)) — the ref and latent paths averaged, one real forward."""
    return 0.5 * (discriminator_adv_loss(real, fake_ref, kind) + discriminator_adv_loss(real, fake_lat, kind))


def r1_penalty(logits: torch.Tensor, x: torch.Tensor, *, half: bool = False) -> torch.Tensor:
    """mean_b Σ_{c,h,w} (∂ Σ logits / ∂x_b)² (×½ with ``half``, StarGAN v2), with create_graph for the backward.

    ``x`` must require grad and ``logits`` must depend on it. Call in fp32 outside autocast (latent variant).
    """
    if not x.requires_grad:
        raise InputError("r1_penalty: x must require grad (x = real.detach().requires_grad_(True))")
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)  # (B, C, H, W)
    penalty = grad.pow(2).flatten(1).sum(dim=1).mean()
    return 0.5 * penalty if half else penalty


def r1_weight(w_r1: float, r1_interval: int) -> float:
    """Lazy R1 weight on the steps where it is computed: w_r1·r1_interval (mean weight per step ≈ w_r1)."""
    if r1_interval < 1:
        raise InputError(f"r1_interval={r1_interval} must be >= 1")
    return float(w_r1) * int(r1_interval)


def style_reconstruction_loss(pred_style: torch.Tensor, target_style: torch.Tensor) -> torch.Tensor:
    """L1(E(G(x, s), y_trg), s) — the target style is not detached."""
    return F.l1_loss(pred_style.float(), target_style.float())


def cycle_consistency_loss(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """L1(G(G(x, s̃), E(x, y_src)), x)."""
    return F.l1_loss(reconstructed.float(), original.float())


def identity_loss(output: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """L1(G(x, E(x, y_src)), x)."""
    return F.l1_loss(output.float(), original.float())


def diversity_loss(fake_1: torch.Tensor, fake_2: torch.Tensor, margin: Optional[float] = None, *,
                   detach_second: bool = False) -> torch.Tensor:
    """L1(fake_1, fake_2), clamped at ``margin`` when margin > 0 (zero gradient beyond it).

    Latent variant: neither fake detached; StarGAN v2: ``detach_second=True``.
    """
    other = fake_2.detach() if detach_second else fake_2
    dist = F.l1_loss(fake_1.float(), other.float())
    if margin is not None and margin > 0:
        dist = dist.clamp(max=float(margin))
    return dist


def lambda_ds_epoch(epoch: int, w_ds: float, ds_decay_epochs: int) -> float:
    """λ_ds(epoch) = w_ds·(1 − clamp((epoch − 1)/max(1, ds_decay_epochs), 0, 1)), epochs 1-based.

    w_ds at epoch 1, 0 from epoch ds_decay_epochs + 1 on.
    """
    if epoch < 1:
        raise InputError(f"lambda_ds_epoch: epoch={epoch} is 1-based and must be >= 1")
    progress = min(max((epoch - 1) / max(1, int(ds_decay_epochs)), 0.0), 1.0)
    return float(w_ds) * (1.0 - progress)


def lambda_ds_iteration(iterations_done: int, w_ds: float, ds_iter: int) -> float:
    """StarGAN v2: λ_ds decreased by w_ds/ds_iter after every iteration while > 0 → w_ds·max(0, 1 − k/ds_iter)."""
    if ds_iter < 1:
        raise InputError(f"lambda_ds_iteration: ds_iter={ds_iter} must be >= 1")
    return float(w_ds) * max(0.0, 1.0 - int(iterations_done) / int(ds_iter))


def generator_loss(*, g_adv: torch.Tensor, sty: torch.Tensor, cyc: torch.Tensor, ds: torch.Tensor,
                   id: Optional[torch.Tensor] = None, w_adv: float = 1.0, w_sty: float = 1.0, w_cyc: float = 1.0,
                   w_id: float = 0.0, lambda_ds: float = 1.0) -> torch.Tensor:
    """g_loss = w_adv·g_adv + w_sty·sty + w_cyc·cyc + w_id·id − λ_ds·ds (id only when w_id > 0)."""
    total = w_adv * g_adv + w_sty * sty + w_cyc * cyc - lambda_ds * ds
    if w_id > 0:
        if id is None:
            raise InputError(f"generator_loss: w_id={w_id} > 0 needs the identity term")
        total = total + w_id * id
    return total
