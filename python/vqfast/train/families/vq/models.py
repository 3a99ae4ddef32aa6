"""Builders of the VQ family's models from their typed configs."""
from __future__ import annotations

import torch.nn as nn

from vqfast.errors import CheckpointError, CheckpointNotFoundError
from vqfast.models.vqgan import EMAVQ, VQModel
from vqfast.models.vqvae import VQVAE2, VqVae
from vqfast.train.families.vq.config import ModelConfig, VQGANModelConfig, VQVAE2ModelConfig


def build_model(m: ModelConfig, backend: str) -> nn.Module:
    if isinstance(m, VQGANModelConfig):
        cls = EMAVQ if m.type == "emavq" else VQModel
        model = cls(dict(vars(m.ddconfig)), m.n_embed, m.embed_dim, beta=m.beta, legacy=m.legacy, backend=backend,
                    decay=m.decay, eps=m.eps)
        if m.remap is not None:  # before the checkpoint: a taming checkpoint trained with remap holds `used`
            from vqfast.quantize.remap import load_used
            model.quantize.set_remap(load_used(m.remap), m.unknown_index)
        if m.ckpt_path is not None:
            load_taming_checkpoint(model, m.ckpt_path, m.ignore_keys, "model.ckpt_path")
        return model
    if isinstance(m, VQVAE2ModelConfig):
        return VQVAE2(m.in_channels, m.hidden_channels, m.res_channels, m.nb_res_layers, m.nb_levels, m.embed_dim,
                      m.nb_entries, m.scaling_rates, m.decay, m.eps, backend=backend)
    return VqVae(m.input_channels, m.output_channels, m.vocab_size, m.n_init, m.commitment_cost, m.decay, m.ch,
                 m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.resolution, m.dropout, backend=backend)


def load_taming_checkpoint(model: nn.Module, path: str, ignore_keys, key: str) -> None:
    """taming ``init_from_ckpt`` (non-strict, ``ignore_keys`` prefixes dropped); errors name the config key."""
    try:
        model.init_from_ckpt(path, ignore_keys=tuple(ignore_keys))
    except FileNotFoundError as exc:
        raise CheckpointNotFoundError(f"{key}={path!r} does not exist") from exc
    except ValueError as exc:  # unreadable or not a state dict
        raise CheckpointError(f"{key}={path!r}: {exc}") from exc
