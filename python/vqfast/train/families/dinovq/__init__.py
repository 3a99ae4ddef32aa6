"""The DinoVQ family: a ViT VQ tokenizer distilled from DINO teacher features (seed 004)."""
from vqfast.train.families.base import Family
from vqfast.train.families.dinovq.config import DinoVQConfig
from vqfast.train.families.dinovq.task import DinoVQTask

FAMILY = Family("dinovq", DinoVQConfig, DinoVQTask, {"dinovq": "dinovq"})

__all__ = ["FAMILY", "DinoVQConfig", "DinoVQTask"]
