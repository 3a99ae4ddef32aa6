"""Builders of QuantArt's models from their typed configs (used by the tasks and by ``vqfast.stylize``)."""
from __future__ import annotations

import logging

from vqfast.errors import CheckpointError
from vqfast.models.quantart import BaseVQGAN, StyleTransfer, read_stage2_state_dicts
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
    """StyleTransfer from the config: with ``model.ckpt_path`` every part from that stage-2 checkpoint (the
    stage-1 checkpoints are then not read, as in QuantArt's VQModel_Ref), else the stage-1 checkpoints (or a
    warning when unset). ``load_checkpoints=False``: random weights (the caller loads a state dict)."""
    whole = m.ckpt_path if load_checkpoints else None
    enc = m.checkpoint_encoder if load_checkpoints and whole is None else None
    dec = m.checkpoint_decoder if load_checkpoints and whole is None else None
    if whole is not None and (m.checkpoint_encoder or m.checkpoint_decoder):
        log.info("quantart_stage2: model.ckpt_path is set, so checkpoint_encoder/checkpoint_decoder are not read "
                 "(QuantArt VQModel_Ref semantics)")
    if load_checkpoints and whole is None:
        unset = [k for k, v in (("model.checkpoint_encoder", enc), ("model.checkpoint_decoder", dec)) if v is None]
        if unset and m.require_checkpoints:
            raise CheckpointError(f"{', '.join(unset)} unset but model.require_checkpoints is true: give the "
                                  "content (checkpoint_encoder) and style (checkpoint_decoder) stage-1 checkpoints")
        if unset:
            log.warning("quantart_stage2: %s unset — stage-1 parts start from RANDOM weights; stylised outputs are "
                        "meaningless until you give trained stage-1 checkpoints", " and ".join(unset))
    model = StyleTransfer(dict(vars(m.ddconfig)), m.n_embed, m.embed_dim, checkpoint_encoder=enc,
                          checkpoint_decoder=dec, use_residual=m.use_residual, use_conv=m.use_conv,
                          use_selfatt=m.use_selfatt, block_num=m.block_num, variant=m.variant, beta=m.beta,
                          legacy=m.legacy, backend=backend, train_quantizers=m.train_quantizers)
    if whole is not None:  # bad checkpoints raise Stage1CheckpointError / CheckpointError naming the key
        model.load_stage2(_drop(read_stage2_state_dicts(whole)[0], m.ignore_keys), whole)
    return model


def _drop(sd: dict, prefixes) -> dict:
    return {k: v for k, v in sd.items() if not any(k.startswith(p) for p in prefixes)}


def load_stage2_discriminator(discriminator, m: Stage2ModelConfig) -> bool:
    """The latent PatchGAN of ``model.ckpt_path`` (``loss.discriminator.*`` / vqfast ``modules.discriminator``)
    into ``discriminator``, strictly; False when there is no ckpt_path or it holds none."""
    if m.ckpt_path is None:
        return False
    sd = _drop(read_stage2_state_dicts(m.ckpt_path)[1], [p[len("loss.discriminator."):] for p in m.ignore_keys
                                                          if p.startswith("loss.discriminator.")])
    if not sd:
        log.info("model.ckpt_path=%s holds no discriminator: the latent D starts from scratch", m.ckpt_path)
        return False
    try:
        discriminator.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"model.ckpt_path={m.ckpt_path!r}: its latent discriminator does not fit "
                              f"model.lossconfig.disc_* ({str(exc).splitlines()[0][:300]})") from exc
    log.info("quantart_stage2: latent discriminator loaded from %s", m.ckpt_path)
    return True
