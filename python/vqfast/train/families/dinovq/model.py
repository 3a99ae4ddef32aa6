"""Seed 004's ``DinoVQModel`` (networks + their loss, ``compute_loss``) from the typed config."""
from __future__ import annotations

from vqfast.losses.dinovq import DinoVQLoss
from vqfast.models.dinovq import DinoVQModel
from vqfast.train.families.dinovq.config import DinoVQModelConfig


def build_dinovq(m: DinoVQModelConfig, backend: str = "auto") -> DinoVQModel:
    return DinoVQModel(**m.network_kwargs(), backend=backend, loss_fn=DinoVQLoss(**m.loss_kwargs()))
