"""Builders of the VQ family's models from their typed configs, and taming checkpoint reading."""
from __future__ import annotations

import logging
from typing import Mapping, Optional

import torch
import torch.nn as nn

from vqfast.errors import CheckpointError, CheckpointNotFoundError, ConfigError
from vqfast.models.vqgan import EMAVQ, VQModel, load_state_dict_file
from vqfast.models.vqvae import VQVAE2, VqVae
from vqfast.quantize import BSQ, FSQ, IBQ, LFQ, EMAVectorQuantizer, ResidualFSQ, ResidualVQ, SimVQ, VectorQuantizer
from vqfast.train.families.vq.config import ModelConfig, VQGANModelConfig, VQVAE2ModelConfig

log = logging.getLogger("vqfast")
DISC_PREFIX = "loss.discriminator."
"""taming saves VQLPIPSWithDiscriminator as the Lightning module's ``loss`` child: D is ``loss.discriminator.*``."""


def read_taming_checkpoint(path: str, key: str) -> dict[str, torch.Tensor]:
    """A taming/Lightning ``.ckpt`` (``{"state_dict": ...}``) or bare state dict; errors name the config key."""
    try:
        return load_state_dict_file(path)
    except FileNotFoundError as exc:
        raise CheckpointNotFoundError(f"{key}={path!r} does not exist") from exc
    except ValueError as exc:  # unreadable or not a state dict
        raise CheckpointError(f"{key}={path!r}: {exc}") from exc


def build_model(m: ModelConfig, backend: str, init_state: Optional[Mapping[str, torch.Tensor]] = None) -> nn.Module:
    """The model of ``m``; a VQGAN/EMA-VQ is initialised from ``init_state`` (the already read
    ``model.ckpt_path``) or, when None, from ``model.ckpt_path`` itself."""
    if isinstance(m, VQGANModelConfig):
        cls = EMAVQ if m.type == "emavq" else VQModel
        quantizer = build_quantizer(m, backend) if m.quantizer is not None else None
        model = cls(dict(vars(m.ddconfig)), m.n_embed, m.embed_dim, beta=m.beta, legacy=m.legacy, backend=backend,
                    decay=m.decay, eps=m.eps, quantizer=quantizer,
                    quantizer_kwargs=m.quantizer_kwargs() if m.quantizer is None else None)
        if m.remap is not None:  # before the checkpoint: a taming checkpoint trained with remap holds `used`
            from vqfast.quantize.remap import load_used
            if not hasattr(model.quantize, "set_remap"):
                raise ConfigError(f"model.remap: taming's remap applies to the vq/ema quantizers, not "
                                  f"model.quantizer.type={m.quantizer.type!r}")
            model.quantize.set_remap(load_used(m.remap), m.unknown_index)
        if init_state is None and m.ckpt_path is not None:
            init_state = read_taming_checkpoint(m.ckpt_path, "model.ckpt_path")
        if init_state is not None:
            load_taming_checkpoint(model, init_state, m.ignore_keys, "model.ckpt_path")
            if m.kmeans_init and any(k.startswith("quantize.embedding.") for k in init_state):
                model.quantize.initted.fill_(True)  # the checkpoint's codebook is kept: no k-means over it
                model.quantize._initted = True
                log.info("model.kmeans_init: the codebook comes from model.ckpt_path, no k-means init")
        return model
    if isinstance(m, VQVAE2ModelConfig):
        return VQVAE2(m.in_channels, m.hidden_channels, m.res_channels, m.nb_res_layers, m.nb_levels, m.embed_dim,
                      m.nb_entries, m.scaling_rates, m.decay, m.eps, backend=backend)
    return VqVae(m.input_channels, m.output_channels, m.vocab_size, m.n_init, m.commitment_cost, m.decay, m.ch,
                 m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.resolution, m.dropout, backend=backend)


def build_quantizer(m: VQGANModelConfig, backend: str) -> nn.Module:
    """``model.quantizer`` -> the vqfast.quantize module (channels-first on the embed_dim-channel latent)."""
    q, K, D = m.quantizer, m.n_embed, m.embed_dim
    health = dict(restart_dead_codes=getattr(q, "restart_dead_codes", False),
                  dead_code_steps=getattr(q, "dead_code_steps", 100), kmeans_init=getattr(q, "kmeans_init", False))
    if q.type == "vq":
        return VectorQuantizer(K, D, beta=m.beta, legacy=m.legacy, backend=backend, rotation_trick=q.rotation_trick,
                               **health)
    if q.type == "ema":
        return EMAVectorQuantizer(K, D, beta=m.beta, decay=m.decay, eps=m.eps, backend=backend,
                                  rotation_trick=q.rotation_trick, **health)
    if q.type == "fsq":
        return FSQ(q.levels, D, preserve_symmetry=q.preserve_symmetry, backend=backend)
    if q.type == "rfsq":
        return ResidualFSQ(q.levels, q.num_quantizers, D, quantize_dropout=q.quantize_dropout, backend=backend)
    if q.type == "lfq":
        return LFQ(D, q.codebook_size, q.entropy_loss_weight, q.commitment_loss_weight, q.diversity_gamma,
                   inv_temperature=q.inv_temperature, spherical=q.spherical, backend=backend)
    if q.type == "bsq":
        return BSQ(D, q.beta, q.gamma0, q.gamma, q.zeta, inv_temperature=q.inv_temperature, group_size=q.group_size,
                   backend=backend)
    if q.type == "rvq":
        return ResidualVQ(q.num_quantizers, K, D, shared_codebook=q.shared_codebook,
                          quantize_dropout=q.quantize_dropout, ema_update=q.ema_update, decay=q.decay,
                          commitment_weight=q.commitment_weight, rotation_trick=q.rotation_trick, beam_size=q.beam_size,
                          backend=backend)
    if q.type == "simvq":
        return SimVQ(D, K, rotation_trick=q.rotation_trick,
                     input_to_quantize_commit_loss_weight=q.input_to_quantize_commit_loss_weight,
                     commitment_weight=q.commitment_weight, backend=backend)
    return IBQ(K, D, beta=m.beta, backend=backend, use_entropy_loss=q.use_entropy_loss,
               entropy_temperature=q.entropy_temperature, sample_minimization_weight=q.sample_minimization_weight,
               batch_maximization_weight=q.batch_maximization_weight, entropy_loss_weight=q.entropy_loss_weight)


def load_taming_checkpoint(model: nn.Module, source, ignore_keys, key: str) -> None:
    """taming ``init_from_ckpt`` (non-strict, ``ignore_keys`` prefixes dropped) from a path or a read state dict;
    errors name the config key."""
    state = read_taming_checkpoint(source, key) if not isinstance(source, Mapping) else source
    try:
        model.init_from_ckpt(state, ignore_keys=tuple(ignore_keys))
    except (RuntimeError, ValueError) as exc:  # shapes that do not fit this model
        raise CheckpointError(f"{key}: the checkpoint does not fit model.*: {exc}") from exc


def load_taming_discriminator(discriminator: nn.Module, state: Mapping[str, torch.Tensor], ignore_keys,
                              key: str) -> bool:
    """Load the checkpoint's trained PatchGAN (``loss.discriminator.*``, taming NLayerDiscriminator names) into
    ``discriminator``, strictly; False when the checkpoint has none (D then starts from its init)."""
    sub = {k[len(DISC_PREFIX):]: v for k, v in state.items()
           if k.startswith(DISC_PREFIX) and not any(k.startswith(p) for p in ignore_keys)}
    if not sub:
        log.info("%s: no %s* entries, the discriminator starts from scratch", key, DISC_PREFIX)
        return False
    try:
        discriminator.load_state_dict(sub, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{key}: its discriminator ({DISC_PREFIX}*) does not fit loss.disc_* (check "
                              f"loss.disc_num_layers, loss.disc_ndf, loss.use_actnorm, loss.disc_in_channels): "
                              f"{exc}") from exc
    log.info("%s: discriminator loaded from the checkpoint (%d tensors)", key, len(sub))
    return True
