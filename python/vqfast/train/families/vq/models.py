"""Builders of the VQ family's models from their typed configs."""
from __future__ import annotations

import torch.nn as nn

from vqfast.errors import CheckpointError, CheckpointNotFoundError
from vqfast.models.vqgan import EMAVQ, VQModel
from vqfast.models.vqvae import VQVAE2, VqVae
from vqfast.quantize import BSQ, FSQ, IBQ, LFQ, EMAVectorQuantizer, ResidualFSQ, ResidualVQ, SimVQ, VectorQuantizer
from vqfast.train.families.vq.config import ModelConfig, VQGANModelConfig, VQVAE2ModelConfig


def build_model(m: ModelConfig, backend: str) -> nn.Module:
    if isinstance(m, VQGANModelConfig):
        cls = EMAVQ if m.type == "emavq" else VQModel
        quantizer = build_quantizer(m, backend) if m.quantizer is not None else None
        model = cls(dict(vars(m.ddconfig)), m.n_embed, m.embed_dim, beta=m.beta, legacy=m.legacy, backend=backend,
                    decay=m.decay, eps=m.eps, quantizer=quantizer)
        if m.ckpt_path is not None:
            load_taming_checkpoint(model, m.ckpt_path, m.ignore_keys, "model.ckpt_path")
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


def load_taming_checkpoint(model: nn.Module, path: str, ignore_keys, key: str) -> None:
    """taming ``init_from_ckpt`` (non-strict, ``ignore_keys`` prefixes dropped); errors name the config key."""
    try:
        model.init_from_ckpt(path, ignore_keys=tuple(ignore_keys))
    except FileNotFoundError as exc:
        raise CheckpointNotFoundError(f"{key}={path!r} does not exist") from exc
    except ValueError as exc:  # unreadable or not a state dict
        raise CheckpointError(f"{key}={path!r}: {exc}") from exc
