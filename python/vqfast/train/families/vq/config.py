"""The whole config of the VQ family: taming VQGAN / EMA-VQ, VQ-VAE, VQ-VAE-2 (``model.type``).

Sections: run keys, ``model`` (one of three, told apart by ``model.type``), ``loss`` (``kind: vqlpips``
= taming's VQLPIPSWithDiscriminator, or ``kind: mse`` = the VQ-VAE loss), ``perceptual`` (LPIPS backbone),
``data`` (images or video clips), ``train`` (engine + optimisation + taming's LR rule + GAN schedule).
Values that must agree are derived, not repeated: ``ddconfig.resolution`` / ``resolution`` default to
``data.size`` and ``loss.disc_in_channels`` to the model's output channels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from vqfast.train.config import ImageDataSection, RunConfig, ScaledLRSection, TamingPerceptualSection, bounded, problems


@dataclass
class DDConfig:
    """taming ``ddconfig`` (taming/models/vqgan.py VQModel → modules/diffusionmodules/model.py Encoder/Decoder);
    defaults = the f16 256² ImageNet VQGAN."""
    ch: int = bounded(128, ge=1)
    out_ch: int = bounded(3, ge=1)
    ch_mult: list[int] = bounded(factory=lambda: [1, 1, 2, 2, 4], ge=1)
    num_res_blocks: int = bounded(2, ge=0)
    attn_resolutions: list[int] = field(default_factory=lambda: [16])
    dropout: float = bounded(0.0, ge=0, lt=1)
    resamp_with_conv: bool = True
    in_channels: int = bounded(3, ge=1)
    resolution: Optional[int] = bounded(None, ge=1)
    """Input resolution (decides where attention sits); default: data.size."""
    z_channels: int = bounded(256, ge=1)
    double_z: bool = False
    """Must stay false: a VQ model quantises z itself (taming's KL models double it)."""
    use_attn: bool = True

    def __post_init__(self):
        problems((not self.double_z, "model.ddconfig.double_z=true doubles the encoder output for a KL model; "
                                     "a VQ model needs false"))


@dataclass
class VQGANModelConfig:
    """taming VQModel (``type: vqgan``) or EMAVQ (``type: emavq``)."""
    type: Literal["vqgan", "emavq"] = "vqgan"
    n_embed: int = bounded(1024, ge=1)
    embed_dim: int = bounded(256, ge=1)
    beta: float = bounded(0.25, ge=0)
    legacy: bool = True
    """taming VectorQuantizer2's β placement: true = β on the codebook term (taming's default)."""
    decay: float = bounded(0.99, ge=0, le=1)
    """EMA decay (emavq only)."""
    eps: float = bounded(1e-5, gt=0)
    restart_dead_codes: bool = False
    """Replace codes unused for ``dead_code_steps`` training steps by random encoder outputs of the batch
    (vector-quantize-pytorch's ``threshold_ema_dead_code`` idea; ``vqfast.quantize.base``). taming: false."""
    dead_code_steps: int = bounded(100, ge=1)
    """Steps without an assignment after which a code counts as dead (logged as dead_codes; restarted if on)."""
    kmeans_init: bool = False
    """Initialise the codebook by k-means on the first training batch's encoder outputs (taming: false)."""
    kmeans_iters: int = bounded(10, ge=1)
    """Lloyd iterations of the k-means init."""
    ckpt_path: Optional[str] = None
    """taming checkpoint to initialise from (non-strict, ``ignore_keys`` prefixes dropped)."""
    ignore_keys: list[str] = field(default_factory=list)
    ddconfig: DDConfig = field(default_factory=DDConfig)

    def quantizer_kwargs(self) -> dict:
        """The codebook-health options passed to the quantizer (``VectorQuantizer`` / ``EMAVectorQuantizer``)."""
        return dict(restart_dead_codes=self.restart_dead_codes, dead_code_steps=self.dead_code_steps,
                    kmeans_init=self.kmeans_init, kmeans_iters=self.kmeans_iters)


@dataclass
class VQVAE2ModelConfig:
    """Multi-level VQ-VAE-2 (``type: vqvae2``); defaults = rosinality's / the seed-002 pipeline's."""
    type: Literal["vqvae2"] = "vqvae2"
    in_channels: int = bounded(3, ge=1)
    hidden_channels: int = bounded(128, ge=1)
    res_channels: int = bounded(64, ge=1)
    nb_res_layers: int = bounded(2, ge=0)
    nb_levels: int = bounded(2, ge=1)
    embed_dim: int = bounded(64, ge=1)
    nb_entries: int = bounded(512, ge=1)
    scaling_rates: list[int] = bounded(factory=lambda: [4, 2], ge=2)
    decay: float = bounded(0.99, ge=0, le=1)
    eps: float = bounded(1e-5, gt=0)

    def __post_init__(self):
        problems((len(self.scaling_rates) == self.nb_levels,
                  f"model.scaling_rates={self.scaling_rates} needs one rate per level (model.nb_levels="
                  f"{self.nb_levels})"),
                 (all(r & (r - 1) == 0 for r in self.scaling_rates),
                  f"model.scaling_rates={self.scaling_rates}: each rate must be a power of two"))


@dataclass
class VqVaeModelConfig:
    """Single-level VQ-VAE (``type: vqvae``, seed 002's ``VqVae``)."""
    type: Literal["vqvae"] = "vqvae"
    input_channels: int = bounded(3, ge=1)
    output_channels: int = bounded(3, ge=1)
    vocab_size: int = bounded(8192, ge=1)
    n_init: int = bounded(128, ge=1)
    """Code dimension."""
    commitment_cost: float = bounded(0.25, ge=0)
    decay: float = bounded(0.99, ge=0, le=1)
    ch: int = bounded(128, ge=1)
    ch_mult: list[int] = bounded(factory=lambda: [1, 1, 2, 2, 4], ge=1)
    num_res_blocks: int = bounded(2, ge=0)
    attn_resolutions: list[int] = field(default_factory=lambda: [16])
    resolution: Optional[int] = bounded(None, ge=1)
    """Default: data.size."""
    dropout: float = bounded(0.0, ge=0, lt=1)


@dataclass
class VQLPIPSLossConfig:
    """taming VQLPIPSWithDiscriminator (taming/modules/losses/vqperceptual.py): its constructor arguments."""
    kind: Literal["vqlpips"] = "vqlpips"
    disc_start: int = bounded(10000, ge=0)
    codebook_weight: float = bounded(1.0, ge=0)
    pixelloss_weight: float = bounded(1.0, ge=0)
    disc_num_layers: int = bounded(3, ge=0)
    disc_in_channels: Optional[int] = bounded(None, ge=1)
    """Default: the model's output channels."""
    disc_factor: float = bounded(1.0, ge=0)
    disc_weight: float = bounded(0.8, ge=0)
    perceptual_weight: float = bounded(1.0, ge=0)
    use_actnorm: bool = False
    disc_conditional: bool = False
    """taming's conditional D needs a conditioning input, which no VQ task has: only false is accepted."""
    disc_ndf: int = bounded(64, ge=1)
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    disc_train_start: Optional[int] = bounded(None, ge=0)
    """Train D from this step (default: disc_start): D can warm up before G uses it."""
    nonfinite_d_weight_to_zero: bool = True
    """A NaN/Inf adaptive weight λ becomes 0 instead of poisoning the step."""
    adaptive_weight_before_start: bool = True
    """Compute λ (extra backward work) even while disc_factor is 0 — taming does; false is faster."""
    fast_adaptive_weight: bool = True
    """λ from ∂L/∂x̂ and the last layer's weight gradient, so LPIPS and D are back-propagated once per step
    instead of twice; the same values and gradients as taming's two autograd.grad calls (false)."""

    def __post_init__(self):
        problems((not self.disc_conditional,
                  "loss.disc_conditional=true: the VQ tasks have no conditioning input for a conditional "
                  "discriminator; set it to false"))


@dataclass
class MSELossConfig:
    """The VQ-VAE loss: total = mse(x, x̂) + vq_weight · vq_loss (rosinality 0.25; seed-002 pipeline 1.0)."""
    kind: Literal["mse"] = "mse"
    vq_weight: float = bounded(0.25, ge=0)


@dataclass
class VQTrainSection(ScaledLRSection):
    use_gan: Optional[bool] = None
    """The PatchGAN (loss.kind vqlpips only; default: on for vqlpips). false: λ·g_loss is 0 and D never trains."""
    disc_every: int = bounded(1, ge=1)
    """A D step every N batches (taming: 1; the seed-002 pipeline: 3)."""


def derive_image_keys(model, loss: Optional[VQLPIPSLossConfig], size: int) -> list[tuple[bool, str]]:
    """Fill ``resolution`` (model.ddconfig or model) from ``data.size`` and ``loss.disc_in_channels`` from the
    model's output channels; returns the (ok, message) checks for values set to something else."""
    ddconfig = getattr(model, "ddconfig", None)
    geometry, key = (ddconfig, "model.ddconfig") if ddconfig is not None else (model, "model")
    out_ch = (ddconfig.out_ch if ddconfig is not None
              else getattr(model, "output_channels", None) or model.in_channels)
    resolution = getattr(geometry, "resolution", None)
    checks = [(resolution in (None, size), f"{key}.resolution={resolution} differs from data.size={size} "
                                           "(attention placement depends on it; leave it unset to follow data.size)")]
    if hasattr(geometry, "resolution"):
        geometry.resolution = size
    if loss is not None:
        checks.append((loss.disc_in_channels in (None, out_ch),
                       f"loss.disc_in_channels={loss.disc_in_channels} must equal the model's output channels "
                       f"({out_ch}); leave it unset to follow them"))
        loss.disc_in_channels = out_ch
    return checks


ModelConfig = Union[VQGANModelConfig, VQVAE2ModelConfig, VqVaeModelConfig]
LossConfig = Union[VQLPIPSLossConfig, MSELossConfig]


@dataclass
class VQConfig(RunConfig):
    model: ModelConfig = field(default_factory=VQGANModelConfig)
    loss: LossConfig = field(default_factory=VQLPIPSLossConfig)
    perceptual: TamingPerceptualSection = field(default_factory=TamingPerceptualSection)
    data: ImageDataSection = field(default_factory=ImageDataSection)
    train: VQTrainSection = field(default_factory=VQTrainSection)

    def __post_init__(self):
        gan = isinstance(self.loss, VQLPIPSLossConfig)
        problems(*derive_image_keys(self.model, self.loss if gan else None, self.data.size),
                 (gan or not self.train.use_gan,
                  "train.use_gan=true needs loss.kind=vqlpips (the mse loss has no discriminator)"))
        if self.train.use_gan is None:
            self.train.use_gan = gan

    def frames_per_step(self) -> int:
        """Images the model sees per optimizer step (over all ranks): batch × frames per clip."""
        return self.train.batch_size * self.data.frames_per_sample
