"""Optimizers and LR schedules shared by every task."""
from __future__ import annotations

import math
from typing import Iterable

import torch

from vqfast.errors import ConfigError


class LRFactor:
    """Multiplier of the base LR after ``s`` optimizer steps: linear warm-up × a decay schedule.

    none: 1; exponential: ``decay ** (s // every)`` (seed 002's per-1000-step decay); cosine / linear: from 1
    after the warm-up to ``min_ratio`` at ``total`` steps (latent StarGAN). A plain object (not a closure),
    so ``LambdaLR.state_dict()`` records its settings in checkpoints."""

    def __init__(self, *, warmup_steps: int = 0, schedule: str = "none", decay: float = 1.0, every: int = 1,
                 total: int = 1, min_ratio: float = 0.0):
        self.warmup_steps, self.schedule, self.decay, self.every = warmup_steps, schedule, decay, every
        self.total, self.min_ratio = total, min_ratio

    def __call__(self, s: int) -> float:
        warm = min(1.0, (s + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.schedule == "exponential":
            return warm * self.decay ** (s // self.every)
        if self.schedule in ("cosine", "linear"):
            progress = min(max((s - self.warmup_steps) / max(1, self.total - self.warmup_steps), 0.0), 1.0)
            decay = 0.5 * (1 + math.cos(math.pi * progress)) if self.schedule == "cosine" else 1.0 - progress
            return warm * (self.min_ratio + (1 - self.min_ratio) * decay)
        return warm


def adam(params: Iterable[torch.nn.Parameter], lr: float, betas, weight_decay: float = 0.0, *,
         decoupled: bool = False) -> torch.optim.Optimizer:
    """Adam (taming, QuantArt) or AdamW (``decoupled``: DinoVQ, StarGAN) over ``params``."""
    params = list(params)
    if not params:
        raise ConfigError("an optimizer would have no trainable parameters (is everything frozen?)")
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(params, lr=lr, betas=(float(betas[0]), float(betas[1])), weight_decay=weight_decay)


def scheduler(opt: torch.optim.Optimizer, t, *, decay: bool = True) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of an ``OptimSection`` (``decay=False``: warm-up only, e.g. D without decay_disc_lr)."""
    factor = LRFactor(warmup_steps=t.warmup_steps, schedule=t.scheduler if decay else "none", decay=t.lr_decay,
                      every=t.lr_decay_every)
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
