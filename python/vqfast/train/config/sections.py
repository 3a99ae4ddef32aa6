"""Config sections shared by several families, each defined once.

A family's whole config composes these with its own sections (``vqfast.train.families.<family>.config``);
a family includes only the sections and keys it reads, so setting any other key is an "unknown key" error.
Per-field bounds are field metadata (``bounded``); cross-field rules sit in ``__post_init__``.

Contract keys (every config): ``run_dir, seed, backend, data.root, train.max_steps, train.batch_size,
train.log_every, train.ckpt_every, train.sample_every``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, Optional

from vqfast.train.config.schema import bounded, problems


@dataclass
class TrainSection:
    """What the engine loop reads (every family)."""
    max_steps: int = bounded(100000, ge=0)
    """Number of batches (optimizer steps); steps are counted in batches."""
    batch_size: int = bounded(4, ge=1)
    """Samples (clips, images, latents) per optimizer step over ALL ranks (global batch). Under torchrun each
    rank loads batch_size / world_size (must divide evenly, also by the micro-batches of grad_accum), so a run
    gives the same updates (up to float rounding) on 1 GPU or N: change GPUs, keep the config."""
    log_every: int = bounded(50, ge=1)
    ckpt_every: int = bounded(5000, ge=1)
    sample_every: int = bounded(1000, ge=1)
    keep_checkpoints: int = bounded(3, ge=1)
    """Periodic checkpoints kept (``last.pt`` is always kept)."""
    device: str = "auto"
    """auto: cuda when available (cuda:LOCAL_RANK under torchrun), else cpu."""
    progress: bool = True
    """A progress bar (tqdm) on a terminal; plain log lines otherwise."""
    export_safetensors: bool = False
    """Also write the final weights as run_dir/model.safetensors."""
    max_bad_steps: int = bounded(20, ge=0)
    """Steps with non-finite losses or gradients are skipped (no optimizer update, logged with the step and
    the term); after this many consecutive ones the run stops with an error (exit 3). 0 = never stop."""
    overwrite: bool = False
    """A fresh run (no --resume) into a run_dir that holds checkpoints stops with an error unless this is
    true; then the old checkpoints, samples and logs are deleted first."""

    def micro_batches(self) -> int:
        """Micro-batches per optimizer step (gradient accumulation); the batch splits evenly into them."""
        return 1


@dataclass
class OptimSection(TrainSection):
    """Generator/discriminator optimisation of the image families (VQ, QuantArt, DinoVQ)."""
    lr: Optional[float] = bounded(None, gt=0)
    """Absolute generator LR (unset: the family's rule)."""
    betas: list[float] = bounded(factory=lambda: [0.5, 0.9], ge=0, lt=1)
    disc_lr: Optional[float] = bounded(None, gt=0)
    """Discriminator LR (unset: the generator LR)."""
    disc_betas: list[float] = bounded(factory=lambda: [0.5, 0.9], ge=0, lt=1)
    weight_decay: float = bounded(0.0, ge=0)
    scheduler: Literal["none", "exponential"] = "none"
    lr_decay: float = bounded(0.99, gt=0, le=1)
    """exponential: LR × lr_decay every lr_decay_every optimizer steps (seed 002: 0.99 per 1000)."""
    lr_decay_every: int = bounded(1000, ge=1)
    warmup_steps: int = bounded(0, ge=0)
    decay_disc_lr: bool = False
    grad_accum: int = bounded(1, ge=1)
    """Micro-batches per optimizer step: train.batch_size is split into grad_accum parts (same effective batch)."""
    grad_clip: float = bounded(0.0, ge=0)
    """Clip the gradient norm of each optimizer's parameters (0 = off)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    reuse_recon_for_d: bool = True
    """The D step reuses the G-phase reconstruction (detached); false re-runs the forward (Lightning semantics)."""

    def micro_batches(self) -> int:
        return self.grad_accum

    def __post_init__(self):
        problems((len(self.betas) == 2, f"train.betas={self.betas}: need two values"),
                 (len(self.disc_betas) == 2, f"train.disc_betas={self.disc_betas}: need two values"),
                 (self.batch_size % self.grad_accum == 0,
                  f"train.batch_size={self.batch_size} is not divisible by train.grad_accum={self.grad_accum}"))


@dataclass
class ScaledLRSection(OptimSection):
    """taming's learning-rate rule (``main.py``): lr = images per optimizer step · base_learning_rate."""
    base_learning_rate: float = bounded(4.5e-6, gt=0)
    scale_lr: bool = True
    """true: lr = base_learning_rate × images per optimizer step over all ranks (taming's
    accumulate_grad_batches · n_gpu · batch_size, i.e. train.batch_size here, × frames per clip);
    false: lr = base_learning_rate. train.lr, when set, wins."""

    def generator_lr(self, images_per_step: int) -> float:
        if self.lr is not None:
            return self.lr
        return images_per_step * self.base_learning_rate if self.scale_lr else self.base_learning_rate


@dataclass
class ImageDataSection:
    """Images or video clips from folders (VQ, QuantArt, DinoVQ)."""
    root: Optional[str] = None
    """Folder of videos (one sub-folder of numbered frames per video) or, with kind: images, of images."""
    synthetic: bool = False
    """With root unset, generate a small synthetic dataset under run_dir/data and record its path here (the
    shipped configs ask for this). Without it, an unset root is an error: data is never substituted."""
    kind: Literal["video", "images"] = "video"
    size: int = bounded(256, ge=8)
    """Square training resolution: frames are scaled to cover it, then centre-cropped."""
    clip_len: Optional[int] = bounded(None, ge=1)
    """Frames per clip (kind: video; default 8). Images are 1-frame samples."""
    frame_stride: int = bounded(1, ge=1)
    loader: Literal["auto", "rust", "python"] = "auto"
    """auto: the Rust loader (vqfast.io) when the extension imports, else its Python reference (same
    samples, order and skip rule); rust: the Rust loader or an error."""
    num_threads: Optional[int] = bounded(None, ge=1)
    prefetch: int = bounded(4, ge=1)
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = bounded(factory=lambda: [0.5, 0.5, 0.5], gt=0)
    val_root: Optional[str] = None
    """Held-out data for validation metrics and sample grids (unset: the first training batch)."""
    synthetic_videos: Optional[int] = bounded(None, ge=1)
    """Generated videos (kind: video; default 12)."""
    synthetic_frames: Optional[int] = bounded(None, ge=1)
    """Frames per generated video (kind: video; default 16)."""
    synthetic_images: Optional[int] = bounded(None, ge=1)
    """Generated images (kind: images; default 48)."""
    on_error: Literal["raise", "skip"] = "raise"
    """A clip/image that cannot be read: raise (an error naming the file) or skip (replaced by the next
    sample of the rank's epoch order, logged and counted in the data/skipped_items metric)."""

    NO_DATA_HINT: ClassVar[str] = "data.root to your data folder"
    """What the no-data error tells the user to set (a family's subclass names its other data keys)."""

    def names_data(self) -> bool:
        """Whether the section names training data (a family's subclass may accept file lists too)."""
        return self.root is not None

    def __post_init__(self):
        video = self.kind == "video"
        wrong_kind = [k for k in (("clip_len", "synthetic_videos", "synthetic_frames") if not video
                                  else ("synthetic_images",)) if getattr(self, k) is not None]
        problems((len(self.mean) == len(self.std),
                  f"data.mean has {len(self.mean)} entries but data.std has {len(self.std)}"),
                 (not wrong_kind, f"{', '.join('data.' + k for k in wrong_kind)}: not read with data.kind={self.kind}"),
                 (video or self.frame_stride == 1, "data.frame_stride: not read with data.kind=images"),
                 (self.names_data() or self.synthetic,
                  f"data.root is unset: set {self.NO_DATA_HINT}, or data.synthetic: true to train on a "
                  "generated toy dataset"))
        if video:
            self.clip_len = self.clip_len or 8
            self.synthetic_videos = self.synthetic_videos or 12
            self.synthetic_frames = self.synthetic_frames or 16
        else:  # images: 1-frame samples (clip_len stays unset, so the resolved config reloads)
            self.synthetic_images = self.synthetic_images or 48

    @property
    def frames_per_sample(self) -> int:
        return self.clip_len if self.kind == "video" else 1


@dataclass
class PerceptualSection:
    """The LPIPS backbone (VGG16): ImageNet weights from a file, never downloaded."""
    backbone: Literal["imagenet", "random"] = "imagenet"
    """imagenet: torchvision vgg16-397923af.pth from backbone_path or the torch hub cache; random: tests only."""
    backbone_path: Optional[str] = None


EVAL_METRICS = ("rfid", "psnr", "ssim", "lpips", "usage")


@dataclass
class EvalSection:
    """Validation with ``vqfast.eval`` during training (the reconstructing families): every ``every`` steps (at a
    sample step; rank 0) the model reconstructs the held-out folder and ``val/<metric>`` is logged to metrics.jsonl
    and TensorBoard. Off while ``metrics`` is empty."""
    metrics: list[str] = field(default_factory=list)
    """Any of rfid, psnr, ssim, lpips, usage (e.g. [psnr, ssim, usage]); empty: no evaluation."""
    every: int = bounded(5000, ge=1)
    """Steps between evaluations; a multiple of train.sample_every (evaluation runs in the sample hook)."""
    root: Optional[str] = None
    """Held-out folder of images or video-frame folders (unset: data.val_root; one of them is required)."""
    limit: Optional[int] = bounded(None, ge=1)
    """Evaluate the first N images of the folder (unset: all)."""
    batch_size: int = bounded(16, ge=1)
    inception_path: Optional[str] = None
    """FID Inception weights (pt_inception-2015-12-05-6726825d.pth; unset: the torch hub cache)."""
    inception_sha256: Optional[str] = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
    """Expected sha256 of the Inception file (the published one); null skips the check (test weights only)."""
    lpips_net: Literal["vgg", "alex"] = "vgg"
    lpips_backbone: Optional[str] = None
    """torchvision backbone file for LPIPS (unset: the torch hub cache; 'random': smoke tests only)."""
    preprocess: Literal["train", "imagenet"] = "train"

    def __post_init__(self):
        bad = [m for m in self.metrics if m not in EVAL_METRICS]
        problems((not bad, f"eval.metrics: {bad} not among {list(EVAL_METRICS)}"),
                 (len(set(self.metrics)) == len(self.metrics), f"eval.metrics={self.metrics}: a metric twice"))


@dataclass
class TamingPerceptualSection(PerceptualSection):
    """LPIPS of taming's VQLPIPSWithDiscriminator (VQ family, QuantArt stage 1)."""
    taming_dropout: bool = False
    """true: LPIPS follows the trainer's train/eval mode as in taming, so its lin layers' Dropout(0.5) is live
    while training (taming's LPIPS is a child of the Lightning module); false: LPIPS stays in eval mode (the
    deterministic, intended metric)."""


@dataclass
class RunConfig:
    """Keys every config has; a family's whole config extends this with its sections."""
    run_dir: str = "runs/default"
    seed: int = bounded(0, ge=0)
    backend: Literal["auto", "triton", "torch"] = "auto"
    train: TrainSection = field(default_factory=TrainSection)
    cpu_overrides: dict = field(default_factory=dict)
    """``{dotted.key: value}`` applied (between the file and ``--set``) only when training runs on CPU:
    lets a GPU-sized config also smoke-run on a laptop. Logged, and visible in the resolved config.yaml."""
    source: Optional[str] = field(default=None, init=False)
    """Where this config came from (set by the loader; not a key)."""
