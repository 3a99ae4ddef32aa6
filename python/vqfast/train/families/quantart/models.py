"""Builders of QuantArt's models from their typed configs (used by the tasks and by ``vqfast.stylize``)."""
from __future__ import annotations

import logging

from vqfast.errors import CheckpointError
from vqfast.models.quantart import BaseVQGAN, StyleTransfer
from vqfast.train.families.quantart.config import Stage1ModelConfig, Stage2ModelConfig
from vqfast.train.families.vq.models import load_taming_checkpoint

log = logging.getLogger("vqfast")


def build_stage1_model(m: Stage1ModelConfig, backend: str = "auto", init_state=None) -> BaseVQGAN:
    """BaseVQGAN from the config, initialised from ``init_state`` (the already read ``model.ckpt_path``) or,
    when None, from ``model.ckpt_path``."""
    model = BaseVQGAN(dict(vars(m.ddconfig)), m.n_embed, m.embed_dim, beta=m.beta, legacy=m.legacy,
                      backend=backend, use_quantize=m.use_quantize, freeze_decoder=m.freeze_decoder,
                      ckpt_quantize=m.ckpt_quantize)  # a bad ckpt_quantize raises Stage1CheckpointError
    if init_state is not None or m.ckpt_path is not None:
        load_taming_checkpoint(model, init_state if init_state is not None else m.ckpt_path, m.ignore_keys,
                               "model.ckpt_path")
    return model


def build_stage2_model(m: Stage2ModelConfig, backend: str = "auto", *, load_checkpoints: bool = True
                       ) -> StyleTransfer:
    """StyleTransfer from the config; stage-1 checkpoints loaded (or a warning when unset)."""
    enc = m.checkpoint_encoder if load_checkpoints else None
    dec = m.checkpoint_decoder if load_checkpoints else None
    if load_checkpoints:
        unset = [k for k, v in (("model.checkpoint_encoder", enc), ("model.checkpoint_decoder", dec)) if v is None]
        if unset and m.require_checkpoints:
            raise CheckpointError(f"{', '.join(unset)} unset but model.require_checkpoints is true: give the "
                                  "content (checkpoint_encoder) and style (checkpoint_decoder) stage-1 checkpoints")
        if unset:
            log.warning("quantart_stage2: %s unset — stage-1 parts start from RANDOM weights; stylised outputs are "
                        "meaningless until you give trained stage-1 checkpoints", " and ".join(unset))
    return StyleTransfer(dict(vars(m.ddconfig)), m.n_embed, m.embed_dim, checkpoint_encoder=enc,
                         checkpoint_decoder=dec, use_residual=m.use_residual, use_conv=m.use_conv,
                         use_selfatt=m.use_selfatt, block_num=m.block_num, variant=m.variant, beta=m.beta,
                         legacy=m.legacy, backend=backend)  # bad stage-1 checkpoints raise Stage1CheckpointError
