"""Whole configs of the QuantArt family (``model.type: quantart_stage1`` / ``quantart_stage2``).

Stage 1 (``BaseVQGAN``, QuantArt taming/models/vqgan.py) is a VQ-family config with QuantArt's model section and
taming's VQLPIPS loss (``loss:``). Stage 2 (``StyleTransfer``, QuantArt taming/models/cond_transformer.py
and ``VQGAN_ref``) carries its loss under ``model.lossconfig`` (QuantArt's YAML layout) and has no ``loss:`` or
``perceptual:`` section. ``data.root`` holds the content images, ``model.style_root`` the style images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from vqfast.train.config import ImageDataSection, RunConfig, ScaledLRSection, bounded, problems
from vqfast.train.families.vq.config import DDConfig, VQConfig, VQLPIPSLossConfig, derive_image_keys


@dataclass
class Stage1ModelConfig:
    """QuantArt stage 1 (``BaseVQGAN``): one per domain (content photos, style artworks)."""
    type: Literal["quantart_stage1"] = "quantart_stage1"
    n_embed: int = bounded(1024, ge=1)
    embed_dim: int = bounded(256, ge=1)
    beta: float = bounded(0.25, ge=0)
    legacy: bool = True
    """taming β placement (β on the codebook term), as every QuantArt config."""
    use_quantize: bool = True
    """False: no quantizer in the forward; the codebook loss is 0."""
    freeze_decoder: bool = False
    """True: decoder and post_quant_conv are left out of opt_ae (they still run)."""
    ckpt_quantize: Optional[str] = None
    """With freeze_decoder: checkpoint whose ``quantize.*`` keys initialise the quantizer."""
    ckpt_path: Optional[str] = None
    """taming/QuantArt checkpoint to fine-tune from (QuantArt: logs/vqgan_imagenet_f16_1024.ckpt)."""
    ignore_keys: list[str] = field(default_factory=list)
    ddconfig: DDConfig = field(default_factory=DDConfig)

    def __post_init__(self):
        problems((self.ckpt_quantize is None or self.freeze_decoder,
                  "model.ckpt_quantize is only read when model.freeze_decoder is true (QuantArt semantics); set "
                  "freeze_decoder: true or drop ckpt_quantize"))


@dataclass
class Stage1Config(VQConfig):
    model: Stage1ModelConfig = field(default_factory=Stage1ModelConfig)
    loss: VQLPIPSLossConfig = field(default_factory=VQLPIPSLossConfig)


@dataclass
class Stage2LossConfig:
    """``Stage2Loss`` arguments; defaults = QuantArt's stage-2 configs (art2art / coco2art)."""
    disc_start: int = bounded(0, ge=0)
    codebook1_weight: float = bounded(1.0, ge=0)
    codebook2_weight: float = bounded(1.0, ge=0)
    """Unused (as in QuantArt); accepted so QuantArt configs translate."""
    G_step: int = bounded(1, ge=1)
    """D loss is zeroed on steps not divisible by G_step."""
    disc_num_layers: int = bounded(0, ge=0)
    disc_in_channels: Optional[int] = bounded(None, ge=1)
    """D runs on latents: model.embed_dim (the default)."""
    disc_factor: float = bounded(0.8, ge=0)
    disc_weight: float = bounded(1.0, ge=0)
    reverse_weight: float = bounded(1.0, ge=0)
    style_weight: float = bounded(10.0, ge=0)
    """10 for art2art/coco2art, 100 for real2real."""
    use_actnorm: bool = False
    disc_ndf: int = bounded(64, ge=1)
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    identity_weight: Optional[float] = bounded(None, ge=0)
    """null (QuantArt code): the identity term uses reverse_weight. A number: seed S0's separate λ_id."""
    adaptive_disc_weight: bool = False
    """false (QuantArt code): d_weight = disc_weight. true (seed S0): taming's adaptive weight, taken on the last
    projection of model_x2y."""


@dataclass
class Stage2ModelConfig:
    """QuantArt stage 2 (``StyleTransfer``): frozen stage-1 parts + trainable SGA ``model_x2y``."""
    type: Literal["quantart_stage2"] = "quantart_stage2"
    n_embed: int = bounded(1024, ge=1)
    embed_dim: int = bounded(256, ge=1)
    beta: float = bounded(0.25, ge=0)
    legacy: bool = True
    checkpoint_encoder: Optional[str] = None
    """Content-domain stage-1 checkpoint (encoder, quant_conv, quantize → quantize_enc). Unset: random weights
    and a warning (or an error with require_checkpoints)."""
    checkpoint_decoder: Optional[str] = None
    """Style-domain stage-1 checkpoint (encoder → encoder_real, quant_conv → quant_conv_real,
    quantize → quantize_dec, decoder, post_quant_conv). Unset: random weights and a warning."""
    require_checkpoints: bool = False
    """true: a missing checkpoint_encoder / checkpoint_decoder is an error instead of a warning."""
    use_residual: bool = True
    use_conv: bool = True
    use_selfatt: bool = True
    block_num: int = bounded(6, ge=1)
    variant: Literal["quantized", "continuous"] = "quantized"
    """quantized (QuantArt vqgan_ref): output re-quantised with quantize_dec (straight-through).
    continuous (vqgan_ref_continuous): un-quantised features in and out, zero codebook loss."""
    style_root: Optional[str] = None
    """Folder of style images; ``data.root`` holds the content images. Unset with data.synthetic: flat-colour
    synthetic 'paintings' are generated under run_dir/data/style and recorded here."""
    val_style_root: Optional[str] = None
    """Held-out style images (QuantArt's validation ``folder2``): the fixed validation/sample styles come from
    here (unset: the first images of style_root)."""
    ckpt_path: Optional[str] = None
    """A whole stage-2 checkpoint to start from (QuantArt ``VQModel_Ref(ckpt_path=...)``: a QuantArt Lightning
    ``.ckpt`` or a vqfast stage-2 ``last.pt``): every part of the model and the latent discriminator
    (``loss.discriminator.*``) are loaded and checkpoint_encoder / checkpoint_decoder are not read, as there."""
    ignore_keys: list[str] = field(default_factory=list)
    """Key prefixes dropped from ckpt_path before loading."""
    train_quantizers: bool = False
    """Also train the output codebook (quantize_dec) with model_x2y ("along with the quantizers in some
    configs", seed S1); QuantArt's configs keep it frozen (false)."""
    synthetic_style_images: int = bounded(16, ge=1)
    sample_styles: int = bounded(4, ge=1)
    """Style images (fixed, in folder order) used for validation and the content | style | stylised grids."""
    ddconfig: DDConfig = field(default_factory=DDConfig)
    lossconfig: Stage2LossConfig = field(default_factory=Stage2LossConfig)

    def __post_init__(self):
        lc = self.lossconfig
        problems((lc.disc_in_channels in (None, self.embed_dim),
                  f"model.lossconfig.disc_in_channels={lc.disc_in_channels} must equal model.embed_dim="
                  f"{self.embed_dim} (the stage-2 discriminator sees latents); leave it unset to follow it"))
        lc.disc_in_channels = self.embed_dim


@dataclass
class Stage2Config(RunConfig):
    model: Stage2ModelConfig = field(default_factory=Stage2ModelConfig)
    data: ImageDataSection = field(default_factory=ImageDataSection)
    train: ScaledLRSection = field(default_factory=ScaledLRSection)

    def __post_init__(self):
        problems(*derive_image_keys(self.model, None, self.data.size),
                 (self.model.style_root is not None or self.data.synthetic,
                  "model.style_root is unset: set it to your folder of style images (or data.synthetic: true to "
                  "generate toy 'paintings')"))
