"""The closed registry of model families: the one module that imports every family.

A family is one package (``families/<name>/``) with its whole-config dataclass, model builders and task; adding
one is a package plus a line in ``FAMILIES``. ``model.type`` names are matched ignoring case, ``_`` and ``-``
(``TamingVQGAN`` = ``taming_vqgan``); each family declares the names it accepts.

``load_config(path, overrides)``: file → raw dict (a family's foreign format such as seed-002 ``param.json``
translated first) → ``cpu_overrides`` / ``--set`` → the family's typed config, every problem in one
``ConfigError`` naming the key and the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from vqfast.errors import ConfigError
from vqfast.train.config import lightning, schema, sources
from vqfast.train.families import dinovq, quantart, stargan, vq
from vqfast.train.families.base import Family, normalize_name

FAMILIES: tuple[Family, ...] = (vq.FAMILY, quantart.STAGE1, quantart.STAGE2, dinovq.FAMILY, stargan.FAMILY)
DEFAULT_MODEL_TYPE = "vqgan"
"""``model.type`` of a config that names none (taming's VQGAN)."""


def resolve(model_type: str) -> tuple[Family, str]:
    """(family, canonical model.type) for a ``model.type`` name; ConfigError listing the names otherwise."""
    key = normalize_name(model_type)
    for family in FAMILIES:
        if key in family.model_types:
            return family, family.model_types[key]
    names = sorted({canonical for f in FAMILIES for canonical in f.model_types.values()})
    raise ConfigError(f"model.type={model_type!r} is not registered; allowed (case-insensitive, '_'/'-' ignored): "
                      f"{', '.join(names)} and the seed-002 names TamingVQGAN, VQGAN, EMAVQ, VQVAE2, VqVae")


def family_of(cfg) -> Family:
    for family in FAMILIES:
        if type(cfg) is family.config_cls:
            return family
    raise ConfigError(f"{type(cfg).__name__} is not the config of a registered family")


def build_config(raw: dict, where: str):
    """A raw config dict (already translated and overridden) → the typed config of its family."""
    model = raw.get("model") if raw.get("model") is not None else {}
    if not isinstance(model, dict):
        raise ConfigError(f"model ({where}): expected a mapping, got {model!r}")
    family, canonical = resolve(model.get("type", DEFAULT_MODEL_TYPE))
    cfg = schema.build(family.config_cls, dict(raw, model=dict(model, type=canonical)), where)
    cfg.source = where
    return cfg


def read_raw(path: Path) -> dict:
    """A config file → raw vqfast dict (foreign formats translated by the family that owns them)."""
    raw = sources.read_file(path)
    for family in FAMILIES:
        if family.translate is not None:
            translated = family.translate(raw, str(path))
            if translated is not None:
                return translated
    if lightning.is_lightning_layout(raw):
        raise ConfigError(f"{path}: model.target={raw['model']['target']!r} is not a model vqfast trains from a "
                          "taming/QuantArt config (it reads taming.models.vqgan.VQModel / EMAVQ, QuantArt's "
                          "stage-1 BaseVQGAN and stage-2 VQModel_Ref / StyleTransfer[Continuous])")
    return raw


def load_config(path: str | Path, overrides: Iterable[str] = ()):
    """Defaults < file < ``cpu_overrides`` (on CPU) < ``--set``, as the family's typed config."""
    resolved = sources.resolve_config_path(path)
    raw, where = sources.with_overrides(read_raw(resolved), overrides, str(resolved))
    return build_config(raw, where)


def task_for(cfg) -> type:
    """The task class that trains ``cfg``."""
    return family_of(cfg).task_cls


__all__ = ["FAMILIES", "Family", "build_config", "family_of", "load_config", "read_raw", "resolve", "task_for"]
