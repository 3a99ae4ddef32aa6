"""The VQ family: taming VQGAN / EMA-VQ, VQ-VAE, VQ-VAE-2 (and the seed-002 ``param.json`` format)."""
from vqfast.train.families.base import Family
from vqfast.train.families.vq.config import VQConfig
from vqfast.train.families.vq.param_json import MODEL_TYPES, translate_if_param_json
from vqfast.train.families.vq.task import VQTask

FAMILY = Family("vq", VQConfig, VQTask, MODEL_TYPES, translate=translate_if_param_json)

__all__ = ["FAMILY", "VQConfig", "VQTask"]
