"""The whole config of the latent StarGAN v2 family (``model.type: stargan_v2_latent``; seed 003).

Sections: ``model`` (network sizes), ``training`` (seed 003's optimisation section, incl. ``latent_scale``),
``loss`` (the seed's weights + the StarGAN v2 options), ``data`` (latent shards), ``train`` (the engine keys
every family shares) and ``visualization``. Defaults < file < ``--set``; unknown keys fail naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from vqfast.train.config import RunConfig, TrainSection, bounded, problems


@dataclass
class StarGANModelConfig:
    """Network sizes (seed 003 ``model:``; constructor defaults)."""
    type: Literal["stargan_v2_latent"] = "stargan_v2_latent"
    latent_channels: int = bounded(4, ge=1)
    style_dim: int = bounded(64, ge=1)
    base_dim: int = bounded(256, ge=1)
    """Generator width; the style encoder uses base_dim/2 → base_dim; D channels are capped at it."""
    n_res_blocks: int = bounded(4, ge=0)
    num_domains: int = bounded(2, ge=2)
    d_layers: int = bounded(3, ge=1)
    latent_dim: int = bounded(16, ge=1)
    """Dimension of the mapping network's noise z."""
    mapping_hidden_dim: int = bounded(512, ge=1)
    mapping_shared_layers: int = bounded(3, ge=1)
    d_dim: int = bounded(64, ge=1)
    """Channels of D's first conv."""
    d_spectral_norm: bool = False
    ema: bool = False
    """Keep EMA copies of G/E/F (StarGAN v2) and sample with them."""
    ema_beta: float = bounded(0.999, ge=0, lt=1)
    init: Literal["default", "he"] = "default"
    """default: PyTorch init + zero AdaIN fc (latent variant); he: StarGAN v2 he_init after the EMA copies."""
    norm: Literal["instance", "group"] = "instance"
    """instance: AdaIN / InstanceNorm (seed 003 ``exp_branch: baseline_AdaIN``); group: AdaGN / GroupNorm
    (``AdaGN_with_SN``, ``AdaGN_no_SN``)."""
    num_groups: int = bounded(32, ge=1)
    """GroupNorm groups (norm: group)."""
    style_mid_dim: Optional[int] = bounded(None, ge=1)
    """Width of the style encoder's first conv (unset: base_dim/2; seed 003: max(base_dim/2, 64))."""



@dataclass
class StarGANTrainingConfig:
    """Optimisation (seed 003 ``training:``)."""
    latent_scale: float = bounded(0.18215, gt=0)
    """Shards hold unscaled SD-VAE latents; both content and reference are multiplied by this before use."""
    lr_d: float = bounded(1e-4, ge=0)
    """Discriminator LR (the seed requires it; vqfast defaults to the StarGAN v2 value)."""
    lr_g: float = bounded(1e-4, ge=0)
    """Generator and style-encoder LR."""
    lr_mapping: float = bounded(1e-6, ge=0)
    betas: list[float] = bounded(factory=lambda: [0.0, 0.99], ge=0, lt=1)
    weight_decay: float = bounded(0.0, ge=0)
    """AdamW decoupled weight decay (both optimizers)."""
    optim_fused: bool = False
    """fused AdamW on CUDA."""
    use_amp: bool = True
    """Autocast on CUDA (ignored on CPU). R1 always runs in fp32 outside autocast."""
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    """fp16 adds a GradScaler."""
    lr_schedule: Literal["none", "cosine", "linear"] = "none"
    warmup_steps: int = bounded(0, ge=0)
    min_lr_ratio: float = bounded(0.0, ge=0, le=1)
    reuse_d_phase_forwards: bool = True
    """SPEC §7.6: reuse s_ref, s_lat, fake_ref, fake_lat of the D phase in the G phase (G/E/F unchanged in between);
    False recomputes them like the seed."""
    freeze_d_in_g_step: bool = True
    """D requires_grad off during the G backward (the seed leaves it on and discards the grads; same result)."""
    skip_oom_batches: bool = True
    """Seed: an out-of-memory error zeroes both optimizers and skips the batch."""
    init_from: Optional[str] = None
    """A seed-003 checkpoint (``{epoch, global_step, G, F, E, D, opt_g, opt_d, config}``, e.g. its
    ``ckpt/latest.pt``): G/F/E/D (and with init_optimizers the two AdamW states) are loaded before training."""
    init_optimizers: bool = True
    start_epoch: int = bounded(1, ge=1)
    """1-based epoch of this run's first step (λ_ds, R1 counter and the domain-folder sampler continue from it;
    a seed-003 resume sets it to the checkpoint's epoch + 1)."""
    start_step: int = bounded(0, ge=0)
    """Global step of this run's first step for the LR schedule (a seed-003 resume: the checkpoint's global_step);
    the schedule runs over start_step + train.max_steps."""
    compile: bool = False
    """torch.compile the nets (CUDA only; seed 003 ``use_compile``). Per net: compile_nets."""
    compile_nets: list[str] = field(default_factory=lambda: ["G", "F", "E"])
    """Which of G, F, E, D to compile (seed 003 compile_generator / _mapping_network / _style_encoder /
    _discriminator)."""
    compile_mode: str = "default"
    compile_dynamic: bool = False
    compile_fullgraph: bool = False
    compile_cudagraphs: bool = False
    allow_tf32: bool = False
    """CUDA matmul/cuDNN TF32 (seed 003 ``allow_tf32``)."""
    cudnn_benchmark: bool = False

    def __post_init__(self):
        bad = sorted(set(self.compile_nets) - {"G", "F", "E", "D"})
        problems((len(self.betas) == 2, f"training.betas={self.betas}: need two values"),
                 (not bad, f"training.compile_nets has {bad}; allowed: G, F, E, D"))


@dataclass
class StarGANLossConfig:
    """Loss weights (seed 003 ``loss:``; code defaults) and the StarGAN v2 options."""
    w_adv: float = bounded(1.0, ge=0)
    w_sty: float = bounded(1.0, ge=0)
    w_cyc: float = bounded(1.0, ge=0)
    w_id: float = bounded(0.0, ge=0)
    """Identity loss weight; 0 skips the identity forward (logged as 0)."""
    w_ds: float = bounded(1.0, ge=0)
    ds_decay_epochs: int = bounded(1, ge=0)
    """λ_ds reaches 0 at epoch ds_decay_epochs + 1 (the seed's YAML uses 20)."""
    ds_margin: Optional[float] = None
    """Clamp the diversity distance at this value (unset or <= 0: no clamp)."""
    w_r1: float = bounded(10.0, ge=0)
    r1_interval: int = bounded(16, ge=1)
    gan_loss: Literal["hinge", "bce"] = "hinge"
    """hinge: latent variant (D hinge without ½, G −mean); bce: StarGAN v2 non-saturating."""
    r1_half: bool = False
    """StarGAN v2 multiplies R1 by ½."""
    r1_counter: Literal["epoch", "global"] = "epoch"
    """epoch: R1 when the 1-based batch index within the epoch is a multiple of r1_interval (seed; epochs shorter
    than r1_interval never regularise, SPEC §6.12); global: the 1-based global step."""
    ds_schedule: Literal["epoch", "iteration"] = "epoch"
    """epoch: λ_ds(epoch) (seed); iteration: StarGAN v2 linear decay over ds_iter steps."""
    ds_iter: int = bounded(100000, ge=1)
    ds_detach_second: bool = False
    """StarGAN v2 detaches the second diversity fake."""


@dataclass
class StarGANDataConfig:
    """Latent shards (``.pt`` files of ``{key: N×C×H×W float (unscaled), label_key: N int64}``) or seed 003's
    per-domain folders of per-file latents (``layout: domain_folders``: ``root/<domain>/<file>.pt|.npy``)."""
    root: Optional[str] = None
    """Shard folder, glob or file; with layout domain_folders the folder holding one sub-folder per domain."""
    layout: Literal["shards", "domain_folders"] = "shards"
    """domain_folders: seed 003's layout and epoch sampler (data.domains names the sub-folders, in label order)."""
    epoch_size: Optional[int] = bounded(None, ge=1)
    """layout domain_folders: samples per epoch (unset: max files per domain × domains, as seed 003)."""
    synthetic: bool = False
    """With root unset, generate synthetic latent shards under run_dir/data/latents and record them here (the
    shipped config asks for this). Without it, an unset root is an error."""
    key: str = "latents"
    label_key: str = "labels"
    domains: list[str] = field(default_factory=list)
    """Domain names by label id (logs and sample tags); empty → domain_0, domain_1, ..."""
    loader: Literal["auto", "rust", "torch"] = "auto"
    """auto: vqfast.io.LatentShardLoader when the extension imports, else its Python reference (same batches)."""
    num_threads: Optional[int] = bounded(None, ge=1)
    prefetch: int = bounded(4, ge=1)
    reference_pool: int = bounded(64, ge=1)
    """Per-domain pool of reference latents (fed by a second shuffled loader) the targets are drawn from."""
    resolution: int = bounded(32, ge=8)
    """Latent size of generated shards (32 ↔ 256² images, 64 ↔ 512²)."""
    synthetic_per_domain: int = bounded(64, ge=1)
    synthetic_shards_per_domain: int = bounded(2, ge=1)

    def __post_init__(self):
        folders = self.layout == "domain_folders"
        problems((self.root is not None or self.synthetic,
                  "data.root is unset: set data.root to your latent shards (python -m vqfast.tools.encode_latents "
                  "makes them), or data.synthetic: true to train on generated toy latents"),
                 (not folders or bool(self.domains), "data.layout=domain_folders needs data.domains (sub-folder names)"),
                 (not folders or not self.synthetic, "data.synthetic generates shards; not with layout domain_folders"),
                 (folders or self.epoch_size is None, "data.epoch_size: only read with data.layout=domain_folders"))


@dataclass
class StarGANVisualizationConfig:
    num_samples: int = bounded(4, ge=1)
    vae_path: Optional[str] = None
    """Local diffusers AutoencoderKL folder (e.g. a stable-diffusion-v1-5 snapshot); unset → latent-channel
    visualisations."""
    vae_subfolder: Optional[str] = "vae"
    random_noise_seed: int = 0


@dataclass
class StarGANConfig(RunConfig):
    run_dir: str = "runs/stargan_v2_latent"
    seed: int = bounded(42, ge=0)
    model: StarGANModelConfig = field(default_factory=StarGANModelConfig)
    training: StarGANTrainingConfig = field(default_factory=StarGANTrainingConfig)
    loss: StarGANLossConfig = field(default_factory=StarGANLossConfig)
    data: StarGANDataConfig = field(default_factory=StarGANDataConfig)
    train: TrainSection = field(default_factory=TrainSection)
    visualization: StarGANVisualizationConfig = field(default_factory=StarGANVisualizationConfig)

    def __post_init__(self):
        problems((not self.data.domains or len(self.data.domains) == self.model.num_domains,
                  f"data.domains has {len(self.data.domains)} names but model.num_domains={self.model.num_domains}"))

    def domain_names(self) -> list[str]:
        return list(self.data.domains) or [f"domain_{i}" for i in range(self.model.num_domains)]
