"""Typed config of the latent StarGAN v2 family (``model.type: stargan_v2_latent``; SPEC §4.2, seed 003).

Sections: ``model`` (network sizes), ``training`` (the seed's optimisation keys incl. ``latent_scale``),
``loss`` (the seed's weights + the StarGAN v2 options), ``data`` (latent shards; unset root → generated),
``train`` (the engine contract keys: max_steps, batch_size, log_every, ckpt_every, sample_every) and
``visualization``. Defaults < file < ``--set``; unknown keys fail naming the key and the file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Optional

from vqfast.train.errors import ConfigError

log = logging.getLogger("vqfast")

FAMILY = "stargan_v2_latent"


@dataclass
class StarGANModelConfig:
    """Network sizes (seed 003 ``model:``; constructor defaults)."""
    type: str = FAMILY
    latent_channels: int = 4
    style_dim: int = 64
    base_dim: int = 256
    """Generator width; the style encoder uses base_dim/2 → base_dim; D channels are capped at it."""
    n_res_blocks: int = 4
    num_domains: int = 2
    d_layers: int = 3
    latent_dim: int = 16
    """Dimension of the mapping network's noise z."""
    mapping_hidden_dim: int = 512
    mapping_shared_layers: int = 3
    d_dim: int = 64
    """Channels of D's first conv."""
    d_spectral_norm: bool = False
    ema: bool = False
    """Keep EMA copies of G/E/F (StarGAN v2) and sample with them."""
    ema_beta: float = 0.999
    init: Literal["default", "he"] = "default"
    """default: PyTorch init + zero AdaIN fc (latent variant); he: StarGAN v2 he_init after the EMA copies."""

    def __post_init__(self):
        problems = [f"model.{k}={getattr(self, k)}" for k in
                    ("latent_channels", "style_dim", "base_dim", "d_layers", "latent_dim", "mapping_hidden_dim",
                     "mapping_shared_layers", "d_dim") if getattr(self, k) < 1]
        if problems:
            raise ConfigError(f"{', '.join(problems)}: must be >= 1")
        if self.num_domains < 2:
            raise ConfigError(f"model.num_domains={self.num_domains}: StarGAN needs >= 2 domains")
        if self.n_res_blocks < 0:
            raise ConfigError(f"model.n_res_blocks={self.n_res_blocks}: must be >= 0")
        if not 0.0 <= self.ema_beta < 1.0:
            raise ConfigError(f"model.ema_beta={self.ema_beta}: must be in [0, 1)")


@dataclass
class StarGANTrainingConfig:
    """Optimisation (seed 003 ``training:``)."""
    latent_scale: float = 0.18215
    """Shards hold unscaled SD-VAE latents; both content and reference are multiplied by this before use."""
    lr_d: float = 1e-4
    """Discriminator LR (the seed requires it; vqfast defaults to the StarGAN v2 value)."""
    lr_g: float = 1e-4
    """Generator and style-encoder LR."""
    lr_mapping: float = 1e-6
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (both optimizers)."""
    optim_fused: bool = False
    """fused AdamW on CUDA."""
    use_amp: bool = True
    """Autocast on CUDA (ignored on CPU). R1 always runs in fp32 outside autocast."""
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    """fp16 adds a GradScaler."""
    lr_schedule: Literal["none", "cosine", "linear"] = "none"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    reuse_d_phase_forwards: bool = True
    """SPEC §7.6: reuse s_ref, s_lat, fake_ref, fake_lat of the D phase in the G phase (G/E/F unchanged in between);
    False recomputes them like the seed."""
    freeze_d_in_g_step: bool = True
    """D requires_grad off during the G backward (the seed leaves it on and discards the grads; same result)."""
    skip_oom_batches: bool = True
    """Seed: an out-of-memory error zeroes both optimizers and skips the batch."""

    def __post_init__(self):
        if self.latent_scale <= 0:
            raise ConfigError(f"training.latent_scale={self.latent_scale}: must be > 0")
        if len(self.betas) != 2:
            raise ConfigError(f"training.betas={self.betas}: need two values")
        for k in ("lr_d", "lr_g", "lr_mapping", "weight_decay", "warmup_steps", "min_lr_ratio"):
            if getattr(self, k) < 0:
                raise ConfigError(f"training.{k}={getattr(self, k)}: must be >= 0")


@dataclass
class StarGANLossConfig:
    """Loss weights (seed 003 ``loss:``; code defaults) and the StarGAN v2 options."""
    w_adv: float = 1.0
    w_sty: float = 1.0
    w_cyc: float = 1.0
    w_id: float = 0.0
    """Identity loss weight; 0 skips the identity forward (logged as 0)."""
    w_ds: float = 1.0
    ds_decay_epochs: int = 1
    """λ_ds reaches 0 at epoch ds_decay_epochs + 1 (the seed's YAML uses 20)."""
    ds_margin: Optional[float] = None
    """Clamp the diversity distance at this value (unset or <= 0: no clamp)."""
    w_r1: float = 10.0
    r1_interval: int = 16
    gan_loss: Literal["hinge", "bce"] = "hinge"
    """hinge: latent variant (D hinge without ½, G −mean); bce: StarGAN v2 non-saturating."""
    r1_half: bool = False
    """StarGAN v2 multiplies R1 by ½."""
    r1_counter: Literal["epoch", "global"] = "epoch"
    """epoch: R1 when the 1-based batch index within the epoch is a multiple of r1_interval (seed; epochs shorter
    than r1_interval never regularise, SPEC §6.12); global: the 1-based global step."""
    ds_schedule: Literal["epoch", "iteration"] = "epoch"
    """epoch: λ_ds(epoch) (seed); iteration: StarGAN v2 linear decay over ds_iter steps."""
    ds_iter: int = 100000
    ds_detach_second: bool = False
    """StarGAN v2 detaches the second diversity fake."""

    def __post_init__(self):
        if self.r1_interval < 1:
            raise ConfigError(f"loss.r1_interval={self.r1_interval}: must be >= 1")
        if self.ds_decay_epochs < 0 or self.ds_iter < 1:
            raise ConfigError(f"loss.ds_decay_epochs={self.ds_decay_epochs}, loss.ds_iter={self.ds_iter}: need "
                              "ds_decay_epochs >= 0 and ds_iter >= 1")
        for k in ("w_adv", "w_sty", "w_cyc", "w_id", "w_ds", "w_r1"):
            if getattr(self, k) < 0:
                raise ConfigError(f"loss.{k}={getattr(self, k)}: must be >= 0")


@dataclass
class StarGANDataConfig:
    """Latent shards: ``.pt`` files of ``{key: N×C×H×W float (unscaled), label_key: N int64}``."""
    root: Optional[str] = None
    """Shard folder, glob or file. Unset: synthetic shards are generated under run_dir/data and recorded here."""
    key: str = "latents"
    label_key: str = "labels"
    domains: list[str] = field(default_factory=list)
    """Domain names by label id (for logs and samples); empty → domain_0, domain_1, ..."""
    loader: Literal["auto", "rust", "torch"] = "auto"
    """auto: vqfast.io.LatentShardLoader when importable, else the in-memory torch loader."""
    num_threads: Optional[int] = None
    prefetch: int = 4
    reference_pool: int = 64
    """Per-domain pool of reference latents (fed by a second shuffled loader) the targets are drawn from."""
    resolution: int = 32
    """Latent size of generated shards (32 ↔ 256² images, 64 ↔ 512²)."""
    synthetic_per_domain: int = 64
    synthetic_shards_per_domain: int = 2

    def __post_init__(self):
        if self.resolution < 8 or self.reference_pool < 1 or self.prefetch < 1:
            raise ConfigError(f"data.resolution={self.resolution}, data.reference_pool={self.reference_pool}, "
                              f"data.prefetch={self.prefetch}: need resolution >= 8, pool >= 1, prefetch >= 1")
        if self.synthetic_per_domain < 1 or self.synthetic_shards_per_domain < 1:
            raise ConfigError("data.synthetic_per_domain and data.synthetic_shards_per_domain must be >= 1")


@dataclass
class StarGANTrainConfig:
    """Engine loop keys (contract)."""
    max_steps: int = 100000
    """Number of batches."""
    batch_size: int = 8
    """Global batch over all ranks; under torchrun each rank loads batch_size / world_size."""
    log_every: int = 50
    ckpt_every: int = 5000
    sample_every: int = 1000
    keep_checkpoints: int = 3
    device: str = "auto"
    progress: bool = True
    export_safetensors: bool = False
    max_bad_steps: int = 20
    """Consecutive non-finite steps (skipped, logged) before the run stops; 0 = never stop."""

    def __post_init__(self):
        if self.max_bad_steps < 0:
            raise ConfigError(f"train.max_bad_steps={self.max_bad_steps}: must be >= 0 (0 = never stop)")
        problems = [f"train.{k}={getattr(self, k)}" for k in
                    ("batch_size", "log_every", "ckpt_every", "sample_every", "keep_checkpoints")
                    if getattr(self, k) < 1]
        if self.max_steps < 0:
            problems.append(f"train.max_steps={self.max_steps}")
        if problems:
            raise ConfigError(f"{', '.join(problems)}: must be positive (max_steps >= 0)")


@dataclass
class StarGANVisualizationConfig:
    num_samples: int = 4
    vae_path: Optional[str] = None
    """Local diffusers AutoencoderKL folder (e.g. a stable-diffusion-v1-5 snapshot); unset or diffusers missing →
    latent-channel visualisations."""
    vae_subfolder: Optional[str] = "vae"
    random_noise_seed: int = 0


@dataclass
class StarGANConfig:
    run_dir: str = "runs/stargan_v2_latent"
    seed: int = 42
    backend: Literal["auto", "triton", "torch"] = "auto"
    model: StarGANModelConfig = field(default_factory=StarGANModelConfig)
    training: StarGANTrainingConfig = field(default_factory=StarGANTrainingConfig)
    loss: StarGANLossConfig = field(default_factory=StarGANLossConfig)
    data: StarGANDataConfig = field(default_factory=StarGANDataConfig)
    train: StarGANTrainConfig = field(default_factory=StarGANTrainConfig)
    visualization: StarGANVisualizationConfig = field(default_factory=StarGANVisualizationConfig)
    cpu_overrides: dict = field(default_factory=dict)
    """``{dotted.key: value}`` applied only when training runs on CPU (see vqfast.train.loading)."""
    source: Optional[str] = None

    def __post_init__(self):
        if self.model.type != FAMILY:
            raise ConfigError(f"model.type={self.model.type!r}: this config class is for {FAMILY!r}")
        if self.data.domains and len(self.data.domains) != self.model.num_domains:
            raise ConfigError(f"data.domains has {len(self.data.domains)} names but model.num_domains="
                              f"{self.model.num_domains}")

    def domain_names(self) -> list[str]:
        return list(self.data.domains) or [f"domain_{i}" for i in range(self.model.num_domains)]


def is_stargan_raw(raw: dict) -> bool:
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        return False
    return str(model.get("type", "")).lower().replace("_", "").replace("-", "") == "starganv2latent"


def build_stargan_config(raw: dict, where: str) -> StarGANConfig:
    """dict → StarGANConfig; every unknown/mistyped key is collected into one ConfigError naming ``where``."""
    from vqfast.train.schema import from_dict, raise_if

    raw = dict(raw)
    model = raw.get("model")
    if isinstance(model, dict):
        raw["model"] = dict(model, type=FAMILY)
    errors: list[str] = []
    cfg = from_dict(StarGANConfig, raw, errors, where)
    raise_if(errors, where)
    cfg.source = where
    return cfg


def load_stargan_config(path: str | Path, overrides: Iterable[str] = ()) -> StarGANConfig:
    """Read a YAML (path or shipped name), apply ``cpu_overrides`` (on CPU) and ``--set`` overrides, validate.

    The shared loader (``vqfast.train.loading.load_config``) dispatches StarGAN configs here by model type.
    """
    from vqfast.train.loading import load_config

    cfg = load_config(path, overrides)
    if not isinstance(cfg, StarGANConfig):
        raise ConfigError(f"{path}: model.type={cfg.model.type!r} is not {FAMILY!r}")
    return cfg
