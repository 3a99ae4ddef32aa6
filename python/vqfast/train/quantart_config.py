"""Typed ``model:`` sections of the QuantArt configs (``type: quantart_stage1`` / ``quantart_stage2``), SPEC §2.

Stage 1 trains with the config's top-level ``loss:`` (taming VQLPIPS, kind vqlpips). Stage 2 carries its own loss
under ``model.lossconfig`` (QuantArt YAML layout: the loss lives in the model's params); the top-level ``loss:``
section is ignored by stage 2. Unknown keys are rejected by the shared loader, naming the key and the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vqfast.train.config import DDConfig
from vqfast.train.errors import ConfigError
from vqfast.train.schema import from_dict, raise_if

__all__ = ["QuantArtStage1Config", "QuantArtStage2Config", "Stage2LossConfig", "parse_model_section"]


@dataclass
class QuantArtStage1Config:
    """QuantArt stage 1 (``BaseVQGAN``): one per domain (content photos, style artworks)."""
    type: str = "quantart_stage1"
    n_embed: int = 1024
    embed_dim: int = 256
    beta: float = 0.25
    legacy: bool = True
    """taming β placement (β on the codebook term), as every QuantArt config."""
    use_quantize: bool = True
    """False: no quantizer in the forward; the codebook loss is 0."""
    freeze_decoder: bool = False
    """True: decoder and post_quant_conv are left out of opt_ae (they still run)."""
    ckpt_quantize: str | None = None
    """With freeze_decoder: checkpoint whose ``quantize.*`` keys initialise the quantizer."""
    ckpt_path: str | None = None
    """taming/QuantArt checkpoint to fine-tune from (QuantArt: logs/vqgan_imagenet_f16_1024.ckpt)."""
    ignore_keys: list[str] = field(default_factory=list)
    ddconfig: DDConfig = field(default_factory=DDConfig)

    def __post_init__(self):
        if self.n_embed < 1 or self.embed_dim < 1:
            raise ConfigError(f"model.n_embed={self.n_embed}, model.embed_dim={self.embed_dim}: must be >= 1")
        if self.ckpt_quantize is not None and not self.freeze_decoder:
            raise ConfigError("model.ckpt_quantize is only read when model.freeze_decoder is true "
                              "(QuantArt semantics); set freeze_decoder: true or drop ckpt_quantize")


@dataclass
class Stage2LossConfig:
    """``Stage2Loss`` arguments; defaults = QuantArt's stage-2 configs (art2art / coco2art)."""
    disc_start: int = 0
    codebook1_weight: float = 1.0
    codebook2_weight: float = 1.0
    """Unused (as in QuantArt); accepted so QuantArt configs translate."""
    G_step: int = 1
    """D loss is zeroed on steps not divisible by G_step."""
    disc_num_layers: int = 0
    disc_in_channels: int = 256
    """D runs on latents: must equal model.embed_dim."""
    disc_factor: float = 0.8
    disc_weight: float = 1.0
    reverse_weight: float = 1.0
    style_weight: float = 10.0
    """10 for art2art/coco2art, 100 for real2real."""
    use_actnorm: bool = False
    disc_ndf: int = 64
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    identity_weight: float | None = None
    """null (QuantArt code): the identity term uses reverse_weight. A number: seed S0's separate λ_id."""
    adaptive_disc_weight: bool = False
    """false (QuantArt code): d_weight = disc_weight. true (seed S0): taming's adaptive weight, taken on the last
    projection of model_x2y."""

    def __post_init__(self):
        if self.G_step < 1 or self.disc_start < 0:
            raise ConfigError(f"model.lossconfig.G_step={self.G_step} must be >= 1 and "
                              f"model.lossconfig.disc_start={self.disc_start} >= 0")


@dataclass
class QuantArtStage2Config:
    """QuantArt stage 2 (``StyleTransfer``): frozen stage-1 parts + trainable SGA ``model_x2y``."""
    type: str = "quantart_stage2"
    n_embed: int = 1024
    embed_dim: int = 256
    beta: float = 0.25
    legacy: bool = True
    checkpoint_encoder: str | None = None
    """Content-domain stage-1 checkpoint (encoder, quant_conv, quantize → quantize_enc). Unset: random weights
    and a warning."""
    checkpoint_decoder: str | None = None
    """Style-domain stage-1 checkpoint (encoder → encoder_real, quant_conv → quant_conv_real,
    quantize → quantize_dec, decoder, post_quant_conv). Unset: random weights and a warning."""
    require_checkpoints: bool = False
    """true: a missing checkpoint_encoder / checkpoint_decoder is an error instead of a warning."""
    use_residual: bool = True
    use_conv: bool = True
    use_selfatt: bool = True
    block_num: int = 6
    variant: Literal["quantized", "continuous"] = "quantized"
    """quantized (QuantArt vqgan_ref): output re-quantised with quantize_dec (straight-through).
    continuous (vqgan_ref_continuous): un-quantised features in and out, zero codebook loss."""
    style_root: str | None = None
    """Folder of style images; ``data.root`` holds the content images. Unset: flat-colour synthetic
    'paintings' are generated under run_dir/data/style."""
    synthetic_style_images: int = 16
    sample_styles: int = 4
    """Style images (fixed, in folder order) used for the content | style | stylised sample grids."""
    ddconfig: DDConfig = field(default_factory=DDConfig)
    lossconfig: Stage2LossConfig = field(default_factory=Stage2LossConfig)

    def __post_init__(self):
        problems = []
        if self.block_num < 1:
            problems.append(f"model.block_num={self.block_num} must be >= 1")
        if self.n_embed < 1 or self.embed_dim < 1:
            problems.append(f"model.n_embed={self.n_embed}, model.embed_dim={self.embed_dim}: must be >= 1")
        lc = self.lossconfig
        if isinstance(lc, Stage2LossConfig) and lc.disc_in_channels != self.embed_dim:
            problems.append(f"model.lossconfig.disc_in_channels={lc.disc_in_channels} must equal "
                            f"model.embed_dim={self.embed_dim} (the stage-2 discriminator sees latents)")
        if self.sample_styles < 1:
            problems.append(f"model.sample_styles={self.sample_styles} must be >= 1")
        if problems:
            raise ConfigError("; ".join(problems))


MODEL_CONFIGS = {"quantart_stage1": QuantArtStage1Config, "quantart_stage2": QuantArtStage2Config}


def parse_model_section(raw: dict, where: str, kind: Literal["quantart_stage1", "quantart_stage2"]):
    """Typed model config from a raw ``model:`` mapping (for tools that bypass the registry, e.g. stylize)."""
    if kind not in MODEL_CONFIGS:
        raise ConfigError(f"kind={kind!r} is not one of {sorted(MODEL_CONFIGS)}")
    errors: list[str] = []
    cfg = from_dict(MODEL_CONFIGS[kind], dict(raw, type=kind), errors, where, prefix="model.")
    raise_if(errors, where)
    return cfg
