"""The closed registry of model families (seed 002 ``model_type`` names, case-insensitive).

One dict of explicit entries; adding a family = one line in ``FAMILIES`` (+ its config class and builder).
Name matching ignores case and ``_``/``-`` (``TamingVQGAN`` = ``taming_vqgan``).

Seed 002's confusing mapping, resolved as a user expects: ``VQVAE2`` → multi-level VQ-VAE-2
(``vqfast.models.VQVAE2``), ``VqVae`` → single-level VQ-VAE (``vqfast.models.VqVae``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch.nn as nn

from vqfast.train.config import VQGANModelConfig, VQVAE2ModelConfig, VqVaeModelConfig
from vqfast.train.dinovq_config import DinoVQModelConfig, build_dinovq
from vqfast.train.quantart_config import QuantArtStage1Config, QuantArtStage2Config
from vqfast.train.errors import ConfigError, FamilyNotImplementedError


def _build_vqgan(cfg: VQGANModelConfig, backend: str) -> nn.Module:
    from vqfast.models.vqgan import EMAVQ, VQModel

    cls = EMAVQ if cfg.type == "emavq" else VQModel
    dd = {k: v for k, v in vars(cfg.ddconfig).items()}
    return cls(dd, cfg.n_embed, cfg.embed_dim, beta=cfg.beta, legacy=cfg.legacy, backend=backend,
               decay=cfg.decay, eps=cfg.eps, ckpt_path=cfg.ckpt_path, ignore_keys=tuple(cfg.ignore_keys))


def _build_vqvae2(cfg: VQVAE2ModelConfig, backend: str) -> nn.Module:
    from vqfast.models.vqvae import VQVAE2

    return VQVAE2(cfg.in_channels, cfg.hidden_channels, cfg.res_channels, cfg.nb_res_layers, cfg.nb_levels,
                  cfg.embed_dim, cfg.nb_entries, cfg.scaling_rates, cfg.decay, cfg.eps, backend=backend)


def _build_vqvae(cfg: VqVaeModelConfig, backend: str) -> nn.Module:
    from vqfast.models.vqvae import VqVae

    return VqVae(cfg.input_channels, cfg.output_channels, cfg.vocab_size, cfg.n_init, cfg.commitment_cost,
                 cfg.decay, cfg.ch, cfg.ch_mult, cfg.num_res_blocks, cfg.attn_resolutions, cfg.resolution,
                 cfg.dropout, backend=backend)


def _build_quantart_stage1(cfg: QuantArtStage1Config, backend: str) -> nn.Module:
    from vqfast.train.tasks.quantart import build_stage1_model

    return build_stage1_model(cfg, backend)


def _build_quantart_stage2(cfg: QuantArtStage2Config, backend: str) -> nn.Module:
    from vqfast.train.tasks.quantart import build_stage2_model

    return build_stage2_model(cfg, backend)


def _built_by_task(cfg, backend: str) -> nn.Module:
    raise ConfigError(f"model type {cfg.type!r}: its networks are built by its training task "
                      "(vqfast.train.tasks), not by build_model")


@dataclass(frozen=True)
class Family:
    canonical: str
    config_cls: Optional[type]
    build: Optional[Callable[..., nn.Module]]
    task: str = "vq"
    """Task that trains this family (``vqfast.train.tasks``)."""
    owns_data: bool = False
    """The task generates/loads its own data (``ensure_dataset``/``build_loader`` hooks), not the engine."""


_VQGAN = Family("vqgan", VQGANModelConfig, _build_vqgan)
_EMAVQ = Family("emavq", VQGANModelConfig, _build_vqgan)
_VQVAE2 = Family("vqvae2", VQVAE2ModelConfig, _build_vqvae2)
_VQVAE = Family("vqvae", VqVaeModelConfig, _build_vqvae)

# normalised name → family. None build = registered but not implemented yet.
FAMILIES: dict[str, Family] = {
    "tamingvqgan": _VQGAN, "tamingvqmodel": _VQGAN, "vqgan": _VQGAN, "vqmodel": _VQGAN,
    "emavq": _EMAVQ,
    "vqvae2": _VQVAE2,
    "vqvae": _VQVAE,
    "quantartstage1": Family("quantart_stage1", QuantArtStage1Config, _build_quantart_stage1, task="quantart_stage1"),
    "quantartstage2": Family("quantart_stage2", QuantArtStage2Config, _build_quantart_stage2, task="quantart_stage2"),
    "dinovq": Family("dinovq", DinoVQModelConfig, build_dinovq, task="dinovq"),
    # the whole StarGAN config is its own dataclass (vqfast.train.stargan_config), dispatched in loading.py
    "starganv2latent": Family("stargan_v2_latent", None, _built_by_task, task="stargan_v2_latent",
                              owns_data=True),
}


def normalize_name(name: str) -> str:
    return str(name).lower().replace("_", "").replace("-", "")


def resolve_family(model_type: str, *, require_impl: bool = True) -> Family:
    family = FAMILIES.get(normalize_name(model_type))
    if family is None:
        allowed = sorted({f.canonical for f in FAMILIES.values()})
        raise ConfigError(f"model type {model_type!r} is not registered; allowed (case-insensitive): "
                          f"{', '.join(allowed)} and the seed-002 aliases TamingVQGAN, taming_vqgan, VqVae")
    if require_impl and family.build is None:
        raise FamilyNotImplementedError(
            f"model type {model_type!r} ({family.canonical}) is registered but not implemented yet in this "
            "vqfast version")
    return family


def build_model(model_cfg, backend: str = "auto") -> nn.Module:
    family = resolve_family(model_cfg.type)
    return family.build(model_cfg, backend)
