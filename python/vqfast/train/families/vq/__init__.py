"""The VQ family: taming VQGAN / EMA-VQ, VQ-VAE, VQ-VAE-2 (and its foreign formats: seed-002 ``param.json``,
taming-transformers' own YAML)."""
from typing import Optional

from vqfast.train.families.base import Family
from vqfast.train.families.vq.config import VQConfig
from vqfast.train.families.vq.param_json import MODEL_TYPES, translate_if_param_json
from vqfast.train.families.vq.taming_yaml import translate_if_taming_yaml
from vqfast.train.families.vq.task import VQTask


def translate_foreign(raw: dict, where: str) -> Optional[dict]:
    """A seed-002 param.json or a taming YAML → a VQ-family dict; None for anything else."""
    out = translate_if_param_json(raw, where)
    return out if out is not None else translate_if_taming_yaml(raw, where)


FAMILY = Family("vq", VQConfig, VQTask, MODEL_TYPES, translate=translate_foreign)

__all__ = ["FAMILY", "VQConfig", "VQTask"]
