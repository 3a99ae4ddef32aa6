"""The whole config of the VQ family: taming VQGAN / EMA-VQ, VQ-VAE, VQ-VAE-2 (``model.type``).

Sections: run keys, ``model`` (one of three, told apart by ``model.type``), ``loss`` (``kind: vqlpips``
= taming's VQLPIPSWithDiscriminator, ``kind: losscalculator`` = the seed-002 pipeline's own GAN loss, or
``kind: mse`` = the VQ-VAE loss), ``perceptual`` (LPIPS backbone), ``data`` (images or video clips, or
the pipeline's file lists), ``train`` (engine + optimisation + taming's LR rule + GAN schedule).
Values that must agree are derived, not repeated: ``ddconfig.resolution`` / ``resolution`` default to
``data.size`` and ``loss.disc_in_channels`` to the model's output channels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Optional, Union

from vqfast.train.config import (
    EvalSection,
    ImageDataSection,
    RunConfig,
    ScaledLRSection,
    TamingPerceptualSection,
    bounded,
    problems,
)


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
class VQQuantizerConfig:
    """taming VectorQuantizer2 (``model.quantizer.type: vq``); size, β and legacy from model.n_embed/beta/legacy."""
    type: Literal["vq"] = "vq"
    rotation_trick: bool = False
    """The rotation trick (arXiv:2410.06424) instead of the identity straight-through."""
    restart_dead_codes: bool = False
    dead_code_steps: int = bounded(100, ge=1)
    kmeans_init: bool = False


@dataclass
class EMAQuantizerConfig:
    """taming EMAVectorQuantizer (``ema``); size, β, decay, eps from the model section."""
    type: Literal["ema"] = "ema"
    rotation_trick: bool = False
    restart_dead_codes: bool = False
    dead_code_steps: int = bounded(100, ge=1)
    kmeans_init: bool = False


@dataclass
class FSQQuantizerConfig:
    """FSQ (``fsq``): codebook size = prod(levels); projections when len(levels) != embed_dim."""
    type: Literal["fsq"] = "fsq"
    levels: list[int] = bounded(factory=lambda: [8, 5, 5, 5], ge=2)
    preserve_symmetry: bool = False


@dataclass
class RFSQQuantizerConfig:
    """Residual FSQ (``rfsq``)."""
    type: Literal["rfsq"] = "rfsq"
    levels: list[int] = bounded(factory=lambda: [8, 5, 5, 5], ge=2)
    num_quantizers: int = bounded(2, ge=1)
    quantize_dropout: bool = False


@dataclass
class LFQQuantizerConfig:
    """LFQ (``lfq``, MAGVIT-v2): codebook_size default 2^embed_dim; projections otherwise."""
    type: Literal["lfq"] = "lfq"
    codebook_size: Optional[int] = bounded(None, ge=2)
    entropy_loss_weight: float = bounded(0.1, ge=0)
    commitment_loss_weight: float = bounded(0.25, ge=0)
    diversity_gamma: float = bounded(1.0, ge=0)
    inv_temperature: float = bounded(100.0, gt=0)
    spherical: bool = False


@dataclass
class BSQQuantizerConfig:
    """BSQ (``bsq``, BSQ-ViT): embed_dim bits on the unit sphere."""
    type: Literal["bsq"] = "bsq"
    beta: float = bounded(0.25, ge=0)
    gamma0: float = bounded(1.0, ge=0)
    gamma: float = bounded(1.0, ge=0)
    zeta: float = bounded(1.0, ge=0)
    inv_temperature: float = bounded(1.0, gt=0)
    group_size: Optional[int] = bounded(None, ge=1)
    """Codebook entropy over groups of this many bits (BSQ-ViT's approximation); default: exact (embed_dim)."""


@dataclass
class RVQQuantizerConfig:
    """Residual VQ (``rvq``): model.n_embed codes per stage."""
    type: Literal["rvq"] = "rvq"
    num_quantizers: int = bounded(4, ge=1)
    shared_codebook: bool = False
    quantize_dropout: bool = False
    ema_update: bool = True
    decay: float = bounded(0.8, ge=0, le=1)
    commitment_weight: float = bounded(1.0, ge=0)
    rotation_trick: bool = False
    beam_size: int = bounded(1, ge=1)
    """Beam search over residual paths (1 = greedy per-stage argmin)."""


@dataclass
class SimVQQuantizerConfig:
    """SimVQ (``simvq``): model.n_embed frozen codes through a learned linear map."""
    type: Literal["simvq"] = "simvq"
    rotation_trick: bool = True
    input_to_quantize_commit_loss_weight: float = bounded(0.25, ge=0)
    commitment_weight: float = bounded(1.0, ge=0)


@dataclass
class IBQQuantizerConfig:
    """IBQ (``ibq``, SEED-Voken): model.n_embed codes, β from model.beta."""
    type: Literal["ibq"] = "ibq"
    use_entropy_loss: bool = False
    """SEED-Voken's entropy loss over softmax(z E^T / entropy_temperature), streamed (never N x K)."""
    entropy_temperature: float = bounded(0.01, gt=0)
    sample_minimization_weight: float = bounded(1.0, ge=0)
    batch_maximization_weight: float = bounded(1.0, ge=0)
    entropy_loss_weight: float = bounded(1.0, ge=0)


QuantizerConfig = Union[VQQuantizerConfig, EMAQuantizerConfig, FSQQuantizerConfig, RFSQQuantizerConfig,
                        LFQQuantizerConfig, BSQQuantizerConfig, RVQQuantizerConfig, SimVQQuantizerConfig,
                        IBQQuantizerConfig]
IMPLICIT_QUANTIZERS = ("fsq", "rfsq", "lfq", "bsq")


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
    remap: Optional[str] = None
    """taming ``remap``: a .npy array of used codebook rows; returned codes become positions in it."""
    unknown_index: Union[int, Literal["random", "extra"]] = "random"
    """With ``remap``: the code of a row outside it (taming: "random", "extra" or an integer)."""
    ignore_keys: list[str] = field(default_factory=list)
    ddconfig: DDConfig = field(default_factory=DDConfig)
    quantizer: Optional[QuantizerConfig] = None
    """The quantizer (``type: vq | ema | fsq | lfq | bsq | rvq | rfsq | simvq | ibq`` plus its arguments);
    unset: taming's (vq for model.type vqgan, ema for emavq)."""

    def __post_init__(self):
        q = self.quantizer
        if q is None:
            return
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in self.quantizer_kwargs()}
        moved = [k for k, v in self.quantizer_kwargs().items() if v != defaults[k]]
        problems((not moved, f"model.{', model.'.join(moved)}: these configure the built-in taming quantizer; with "
                             f"model.quantizer set, give them under model.quantizer (where its type reads them)"),
                 (self.type == "vqgan", f"model.quantizer.type={q.type!r} needs model.type=vqgan (model.type="
                                        f"{self.type!r} fixes taming's EMA quantizer; use quantizer.type ema)"),
                 (q.type not in IMPLICIT_QUANTIZERS or self.n_embed == 1024,
                  f"model.n_embed={self.n_embed}: model.quantizer.type={q.type!r} has an implicit codebook whose "
                  "size its own keys decide; leave model.n_embed unset"),
                 (q.type != "bsq" or self.embed_dim <= 62,
                  f"model.embed_dim={self.embed_dim}: BSQ indices need <= 62 bits"))

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
class PipelineGANLossConfig:
    """The seed-002 pipeline's own GAN loss for VqVae / VQVAE2 (``train/lossconfig.py::LossCalculator``, the
    non-taming path, SPEC §3.4): L1 + LPIPS + its PatchGAN, λ = 0.8·clamp(‖∇L_rec‖/(‖∇L_g‖+1e-4), 0, 100) on
    the decoder's last parameter, ramped by min(1, |t − disc_start| / (2·disc_start)), instance noise on D.
    A param.json's ``train_args`` ``disc_factor``, ``disc_start``, ``pixel_loss_factor``,
    ``perceptual_loss_factor`` land here (the pipeline's defaults)."""
    kind: Literal["losscalculator"] = "losscalculator"
    disc_factor: float = bounded(1.0, ge=0)
    disc_start: int = bounded(20000, ge=1)
    """≥ 1: the pipeline's λ ramp divides by 2·disc_start (0 raises ZeroDivisionError there)."""
    pixel_loss_factor: float = bounded(1.0, ge=0)
    perceptual_loss_factor: float = bounded(1.0, ge=0)
    disc_in_channels: Optional[int] = bounded(None, ge=1)
    """Default: the model's output channels (the pipeline: ``Discriminator(image_channels=output_channels)``)."""
    disc_num_layers: int = bounded(3, ge=0)
    disc_ndf: int = bounded(64, ge=1)
    instance_noise: float = bounded(0.01, ge=0)
    """σ₀ of the D inputs' noise, σ(t) = max(0, σ₀·(1 − 2t/train.max_steps))."""


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
    """A D step every N batches (taming: 1; the seed-002 pipeline: 3, a param.json's default)."""
    pipeline_checkpoint: Optional[str] = None
    """A seed-002 pipeline checkpoint (``checkpoint_step{N}.pth.tar``: ``steps, state_dict, optimizer,
    scheduler[, optimizer_disc, discriminator_state]``) to start from (param.json ``train_args.checkpoint_path``)."""
    pipeline_checkpoint_mode: Literal["resume", "init"] = "resume"
    """resume (the pipeline's behaviour): weights, optimizers, LR schedule and the step ``steps``; init: the
    weights only, training starts at step 0 with fresh optimizers."""
    use_wandb: bool = False
    """Also log the scalars to Weights & Biases (param.json ``use_wandb``) when wandb is installed (a warning
    otherwise); ``wandb_project`` names the project."""
    wandb_project: Optional[str] = None


@dataclass
class VQDataSection(ImageDataSection):
    """Images or video clips (the shared data section) plus the seed-002 pipeline's file lists."""
    NO_DATA_HINT: ClassVar[str] = ("data.root to your data folder or data.train_files to a list of videos / "
                                   "images (a param.json: data_process.train or data_args.training_data_files)")
    train_files: Optional[list[str]] = None
    """The training samples themselves (param.json ``data_args.training_data_files``): video files or frame
    folders (kind: video), image files (kind: images). They are linked, in this order, into
    run_dir/data/train_files, which becomes data.root."""
    val_files: Optional[list[str]] = None
    """Held-out samples likewise (``validation_data_files``), linked into run_dir/data/val_files (data.val_root)."""
    train_list: Optional[str] = None
    """A text file naming the training samples, one path per line (taming's ``training_images_list_file``,
    ``taming.data.custom.CustomTrain``; relative paths are taken from the working directory, as taming does);
    read into data.train_files."""
    val_list: Optional[str] = None
    """Held-out samples likewise (taming's ``test_images_list_file``), read into data.val_files."""

    def __post_init__(self):
        problems((not (self.train_list and self.train_files), "data.train_list and data.train_files both name the "
                                                              "training samples; keep one"),
                 (not (self.val_list and self.val_files), "data.val_list and data.val_files both name the held-out "
                                                          "samples; keep one"))
        super().__post_init__()

    def names_data(self) -> bool:
        return self.root is not None or bool(self.train_files) or self.train_list is not None


def derive_image_keys(model, loss, size: int) -> list[tuple[bool, str]]:
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
LossConfig = Union[VQLPIPSLossConfig, PipelineGANLossConfig, MSELossConfig]
GAN_LOSSES = (VQLPIPSLossConfig, PipelineGANLossConfig)


@dataclass
class VQConfig(RunConfig):
    model: ModelConfig = field(default_factory=VQGANModelConfig)
    loss: LossConfig = field(default_factory=VQLPIPSLossConfig)
    perceptual: TamingPerceptualSection = field(default_factory=TamingPerceptualSection)
    data: VQDataSection = field(default_factory=VQDataSection)
    train: VQTrainSection = field(default_factory=VQTrainSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self):
        gan = isinstance(self.loss, GAN_LOSSES)
        problems(*derive_image_keys(self.model, self.loss if gan else None, self.data.size),
                 (gan or not self.train.use_gan,
                  "train.use_gan=true needs loss.kind=vqlpips or losscalculator (the mse loss has no discriminator)"),
                 (not isinstance(self.loss, PipelineGANLossConfig) or self.train.use_gan is not False,
                  "loss.kind=losscalculator is the pipeline's use_gan path; without a GAN the pipeline trains "
                  "mse + vq: set loss.kind=mse (vq_weight 1.0) instead of train.use_gan=false"))
        if self.train.use_gan is None:
            self.train.use_gan = gan

    def frames_per_step(self) -> int:
        """Images the model sees per optimizer step (over all ranks): batch × frames per clip."""
        return self.train.batch_size * self.data.frames_per_sample
