"""Typed training configs (defaults < file < ``--set``). One dataclass per section / model family.

Every config has the contract keys ``run_dir, seed, backend, data.root, train.max_steps,
train.batch_size, train.log_every, train.ckpt_every, train.sample_every``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from vqfast.train.errors import ConfigError


@dataclass
class DDConfig:
    """taming ``ddconfig`` (SPEC §1.1); defaults = the f16 256² ImageNet VQGAN."""
    ch: int = 128
    out_ch: int = 3
    ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    attn_resolutions: list[int] = field(default_factory=lambda: [16])
    dropout: float = 0.0
    resamp_with_conv: bool = True
    in_channels: int = 3
    resolution: int = 256
    z_channels: int = 256
    double_z: bool = False
    use_attn: bool = True


@dataclass
class VQGANModelConfig:
    """VQModel (``type: vqgan``) or EMAVQ (``type: emavq``)."""
    type: str = "vqgan"
    n_embed: int = 1024
    embed_dim: int = 256
    beta: float = 0.25
    legacy: bool = True
    """taming's β placement: True = β on the codebook term (reference default, SPEC §6.2)."""
    decay: float = 0.99
    """EMA decay (emavq only)."""
    eps: float = 1e-5
    ckpt_path: Optional[str] = None
    """taming checkpoint to initialise from (non-strict, ``ignore_keys`` prefixes dropped)."""
    ignore_keys: list[str] = field(default_factory=list)
    ddconfig: DDConfig = field(default_factory=DDConfig)


@dataclass
class VQVAE2ModelConfig:
    """Multi-level VQ-VAE-2 (``type: vqvae2``); defaults = the pipeline's (SPEC §3.1)."""
    type: str = "vqvae2"
    in_channels: int = 3
    hidden_channels: int = 128
    res_channels: int = 64
    nb_res_layers: int = 2
    nb_levels: int = 2
    embed_dim: int = 64
    nb_entries: int = 512
    scaling_rates: list[int] = field(default_factory=lambda: [4, 2])
    decay: float = 0.99
    eps: float = 1e-5


@dataclass
class VqVaeModelConfig:
    """Single-level VQ-VAE (``type: vqvae``, seed 002's ``VqVae``)."""
    type: str = "vqvae"
    input_channels: int = 3
    output_channels: int = 3
    vocab_size: int = 8192
    n_init: int = 128
    commitment_cost: float = 0.25
    decay: float = 0.99
    ch: int = 128
    ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    attn_resolutions: list[int] = field(default_factory=lambda: [16])
    resolution: int = 256
    dropout: float = 0.0


@dataclass
class LossConfig:
    """``kind: vqlpips`` = taming VQLPIPSWithDiscriminator (its constructor args); ``kind: mse`` = VQ-VAE loss."""
    kind: Literal["vqlpips", "mse"] = "vqlpips"
    disc_start: int = 10000
    codebook_weight: float = 1.0
    pixelloss_weight: float = 1.0
    disc_num_layers: int = 3
    disc_in_channels: int = 3
    disc_factor: float = 1.0
    disc_weight: float = 0.8
    perceptual_weight: float = 1.0
    use_actnorm: bool = False
    disc_conditional: bool = False
    disc_ndf: int = 64
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    disc_train_start: Optional[int] = None
    """Train D from this step (default: disc_start) — lets D warm up before G uses it (SPEC §6.3)."""
    nonfinite_d_weight_to_zero: bool = True
    adaptive_weight_before_start: bool = True
    """Compute λ (2 extra partial backwards) even while disc_factor is 0 — taming does; False is faster."""
    fast_adaptive_weight: bool = True
    """SPEC §7.5: λ from ∂L/∂x̂ and the last layer's weight gradient, so LPIPS and D are back-propagated once
    per step instead of twice; same values and gradients as taming's path (False) up to rounding."""
    vq_weight: float = 0.25
    """kind=mse: total = mse + vq_weight · vq_loss (rosinality 0.25; seed-002 pipeline 1.0)."""

    def __post_init__(self):
        if self.disc_start < 0:
            raise ConfigError(f"loss.disc_start={self.disc_start} must be >= 0")


@dataclass
class PerceptualConfig:
    backbone: Literal["imagenet", "random"] = "imagenet"
    """imagenet: torchvision vgg16-397923af.pth from backbone_path or the torch hub cache; random: tests only."""
    backbone_path: Optional[str] = None


@dataclass
class DataConfig:
    root: Optional[str] = None
    """Folder of videos (one sub-folder of numbered frames per video) or of images. Unset: a small
    synthetic dataset is generated under ``run_dir/data`` and recorded here."""
    kind: Literal["video", "images"] = "video"
    size: int = 256
    clip_len: int = 8
    frame_stride: int = 1
    loader: Literal["auto", "rust", "python"] = "auto"
    """auto: vqfast.io.VideoClipLoader (Rust) when available for video data, else the Python loader."""
    num_threads: Optional[int] = None
    prefetch: int = 4
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    val_root: Optional[str] = None
    """Held-out data for PSNR and sample grids (generated along with synthetic data)."""
    synthetic_videos: int = 12
    synthetic_frames: int = 16
    on_error: Literal["raise", "skip"] = "raise"
    """A clip/image that cannot be read (corrupt or missing frame): ``raise`` stops with an error naming the
    file; ``skip`` replaces it by the next clip (deterministic), logs a warning and counts it in the
    ``data/skipped_items`` metric. Passed to ``vqfast.io.VideoClipLoader`` when it supports the option."""

    def __post_init__(self):
        if self.size < 8 or self.clip_len < 1 or self.frame_stride < 1:
            raise ConfigError(f"data.size={self.size}, data.clip_len={self.clip_len}, "
                              f"data.frame_stride={self.frame_stride}: need size >= 8, clip_len >= 1, stride >= 1")


@dataclass
class TrainConfig:
    max_steps: int = 100000
    """Number of batches (steps are counted in batches, SPEC §6.6)."""
    batch_size: int = 4
    """Clips per optimizer step over ALL ranks (global batch); the model sees batch_size · clip_len frames.
    Under torchrun each rank loads batch_size / world_size of them (must divide evenly, also by grad_accum),
    so a run gives the same updates (up to float rounding) on 1 GPU or N: change GPUs, keep the config."""
    log_every: int = 50
    ckpt_every: int = 5000
    sample_every: int = 1000
    keep_checkpoints: int = 3
    lr: Optional[float] = None
    """Absolute generator LR; unset → scale_lr rule (or base_learning_rate if scale_lr is false)."""
    base_learning_rate: float = 4.5e-6
    scale_lr: bool = True
    """taming: lr = grad_accum · world_size · batch_size · base_learning_rate."""
    disc_lr: Optional[float] = None
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    disc_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    weight_decay: float = 0.0
    use_gan: bool = True
    disc_every: int = 1
    """D step every N batches (taming: 1; seed 002 claims 3)."""
    reuse_recon_for_d: bool = True
    """D step reuses the G-phase reconstruction (detached); False re-runs the forward (Lightning semantics)."""
    scheduler: Literal["none", "exponential"] = "none"
    lr_decay: float = 0.99
    lr_decay_every: int = 1000
    warmup_steps: int = 0
    decay_disc_lr: bool = False
    grad_accum: int = 1
    grad_clip: float = 0.0
    precision: Literal["fp32", "bf16"] = "fp32"
    device: str = "auto"
    progress: bool = True
    export_safetensors: bool = False
    """Also write the final model weights as run_dir/model.safetensors."""
    max_bad_steps: int = 20
    """Steps with non-finite losses or gradients are skipped (no optimizer update, logged with the step and
    the term); after this many consecutive ones the run stops with an error. 0 = never stop."""

    def __post_init__(self):
        problems = []
        if self.max_bad_steps < 0:
            problems.append(f"train.max_bad_steps={self.max_bad_steps} (>= 0; 0 = never stop)")
        for name in ("max_steps", "batch_size", "log_every", "ckpt_every", "sample_every", "disc_every",
                     "grad_accum", "lr_decay_every", "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, int) and value < (0 if name == "max_steps" else 1):
                problems.append(f"train.{name}={value}")
        if problems:
            raise ConfigError(f"{', '.join(problems)}: must be positive (max_steps >= 0)")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"train.batch_size={self.batch_size} is not divisible by "
                              f"train.grad_accum={self.grad_accum}")


@dataclass
class Config:
    run_dir: str = "runs/default"
    seed: int = 0
    backend: Literal["auto", "triton", "torch"] = "auto"
    model: Any = field(default_factory=VQGANModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cpu_overrides: dict = field(default_factory=dict)
    """``{dotted.key: value}`` applied (between the file and ``--set``) only when training runs on CPU:
    lets a GPU-sized config also smoke-run on a laptop. Logged, and visible in the resolved config.yaml."""
    source: Optional[str] = None
    """Where this config came from (informational; set by the loader)."""


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)
