"""Optimizers and LR schedules shared by every task."""
from __future__ import annotations

from typing import Iterable

import torch

from vqfast.train.config import Config


class LRFactor:
    """Multiplier of the base LR after ``s`` optimizer steps: linear warm-up × exponential step decay."""

    def __init__(self, warmup_steps: int, decay: float, every: int, exponential: bool):
        self.warmup_steps, self.decay, self.every, self.exponential = warmup_steps, decay, every, exponential

    def __call__(self, s: int) -> float:
        warm = min(1.0, (s + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        return warm * (self.decay ** (s // self.every) if self.exponential else 1.0)


def generator_lr(cfg: Config, images_per_step: int, world_size: int = 1) -> float:
    t = cfg.train
    if t.lr is not None:
        return t.lr
    if t.scale_lr:  # taming main.py: accumulate_grad_batches · n_gpu · batch_size · base_lr
        return t.grad_accum * world_size * images_per_step * t.base_learning_rate
    return t.base_learning_rate


def adam(params: Iterable[torch.nn.Parameter], lr: float, betas, weight_decay: float = 0.0) -> torch.optim.Adam:
    params = list(params)
    if not params:
        raise ValueError("optimizer would have no parameters")
    return torch.optim.Adam(params, lr=lr, betas=(float(betas[0]), float(betas[1])), weight_decay=weight_decay)


def scheduler(opt: torch.optim.Optimizer, cfg: Config, *, decay: bool = True) -> torch.optim.lr_scheduler.LambdaLR:
    t = cfg.train
    factor = LRFactor(t.warmup_steps, t.lr_decay, t.lr_decay_every, decay and t.scheduler == "exponential")
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
