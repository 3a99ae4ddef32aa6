"""The whole config of the DinoVQ family (``model.type: dinovq``; seed 004's DinoVQModel).

``model`` field names are seed 004's ``DinoVQModel`` constructor kwargs; the teacher lives in ``model.teacher``.
``train`` holds the engine and optimisation keys (``lr`` unset → seed 004's AdamW at 1e-4; ``betas``,
``weight_decay``, ``disc_lr``, ``disc_every``, ``reuse_recon_for_d``, ``grad_accum``, ``grad_clip``,
``precision``); ``model.use_gan`` switches the GAN. Derived: ``model.img_size`` follows ``data.size``,
``model.vgg_ckpt_path`` / ``perceptual_backbone`` follow the ``perceptual`` section.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Optional

from vqfast.train.config import (
    EvalSection,
    ImageDataSection,
    OptimSection,
    PerceptualSection,
    RunConfig,
    bounded,
    problems,
)


@dataclass
class DinoTeacherConfig:
    """Where ``dino_features_gt`` comes from (see ``vqfast.data.dino``)."""
    kind: Literal["auto", "precomputed", "dinov2_hub", "timm", "random"] = "auto"
    """auto: shards under ``<feature_root or data.root>/dino_features`` if present, else dinov2_hub if hub_dir
    is set, else timm if timm_model is set, else the random teacher when data.root was generated under the
    run directory; otherwise an error naming the options."""
    feature_root: str | None = None
    """Folder whose ``dino_features/`` holds precomputed shards (default: data.root)."""
    hub_dir: str | None = None
    """Local clone of facebookresearch/dinov2 (torch.hub source='local'; nothing is downloaded)."""
    hub_model: str = "dinov2_vitb14"
    timm_model: str | None = None
    checkpoint: str | None = None
    """Teacher weights file (torch.load weights_only)."""
    random_dim: Optional[int] = bounded(None, ge=1)
    """Random teacher width (default: model.dino_dim)."""
    random_depth: int = bounded(2, ge=1)
    random_heads: int = bounded(4, ge=1)
    random_seed: int = 0


LOSS_KEYS = ("dino_loss_weight", "recon_loss_weight", "vq_loss_weight", "use_perceptual", "perceptual_weight",
             "vgg_ckpt_path", "perceptual_backbone", "use_gan", "disc_start", "disc_weight", "disc_dim",
             "disc_num_layers", "disc_adaptive_weight", "nonfinite_adaptive_to_zero", "fast_adaptive_weight")


@dataclass
class DinoVQModelConfig:
    type: Literal["dinovq"] = "dinovq"
    # image / encoder
    img_size: Optional[int] = bounded(None, ge=1)
    """Square input size; default: data.size."""
    patch_size: int = bounded(16, ge=1)
    in_chans: int = bounded(3, ge=1)
    out_chans: int = bounded(3, ge=1)
    encoder_embed_dim: int = bounded(768, ge=1)
    encoder_depth: int = bounded(12, ge=1)
    encoder_num_heads: int = bounded(12, ge=1)
    ffn_ratio: float = bounded(4.0, gt=0)
    num_register_tokens: int = bounded(4, ge=0)
    pos_embed: Literal["rope", "learned"] = "rope"
    pos_embed_rope_base: float = bounded(100.0, gt=0)
    pos_embed_rope_shift_coords: Optional[float] = bounded(None, ge=0)
    """DINOv3 RoPE train-time augmentation of the encoder: coords += U(−s, s) per axis (unset: off)."""
    pos_embed_rope_jitter_coords: Optional[float] = bounded(None, ge=1)
    """coords ×= exp(U(−log j, log j)) per axis (unset: off)."""
    pos_embed_rope_rescale_coords: Optional[float] = bounded(2.0, ge=1)
    """coords ×= exp(U(−log r, log r)), one factor (seed 004's ViT: 2; unset: off)."""
    layerscale_init: Optional[float] = bounded(1e-5, gt=0)
    # VQ
    codebook_size: int = bounded(8192, ge=1)
    codebook_dim: Optional[int] = bounded(None, ge=1)
    """None = encoder_embed_dim; otherwise linear project-in/out around the quantiser."""
    vq_decay: float = bounded(0.99, ge=0, le=1)
    vq_eps: float = bounded(1e-5, gt=0)
    vq_commitment_weight: float = bounded(0.25, ge=0)
    kmeans_init: bool = True
    kmeans_iters: int = bounded(20, ge=1)
    restart_dead_codes: bool = True
    dead_code_rule: Literal["ema", "steps"] = "ema"
    """ema: a code is dead when its EMA count falls below threshold_ema_dead_code (seed 004's lucidrains
    VectorQuantize); steps: when unused for dead_code_steps training steps. Dead codes are replaced by batch
    tokens when restart_dead_codes."""
    threshold_ema_dead_code: Optional[float] = bounded(None, gt=0)
    """dead_code_rule ema: the EMA-count threshold (default 1.0, seed 004); not read with the steps rule."""
    dead_code_steps: Optional[int] = bounded(None, ge=1)
    """dead_code_rule steps: a code unused for this many training steps is dead (default 100); not read with the
    ema rule."""
    orthogonal_reg_weight: float = bounded(0.0, ge=0)
    """lucidrains' orthogonal regulariser on the codebook, added to the VQ loss (seed 004: 1e-3; 0 = off). The EMA
    codebook takes no gradient, so it shifts the logged loss only, as in the reference."""
    orthogonal_reg_active_codes_only: bool = True
    orthogonal_reg_max_codes: Optional[int] = bounded(512, ge=2)
    l2_normalize_codes: bool = False
    """VQ-KD style: l2-normalise the (projected) tokens before the lookup."""
    residual_grad: Literal["none", "encoder"] = "none"
    """none: r = z − e has no encoder gradient under STE (reference); encoder: r = z − sg(e)."""
    precision: Literal["ieee", "tf32", "bf16"] = "ieee"
    """nearest_code precision."""
    # DINO decoder
    dino_decoder_depth: int = bounded(8, ge=1)
    dino_decoder_num_heads: int = bounded(12, ge=1)
    dino_decoder_dim: Optional[int] = bounded(None, ge=1)
    dino_dim: int = bounded(768, ge=1)
    # image decoder
    image_decoder_dim: int = bounded(512, ge=1)
    image_decoder_depth: int = bounded(8, ge=1)
    image_decoder_num_heads: int = bounded(8, ge=1)
    # losses (seed-004 API)
    dino_loss_weight: float = bounded(1.0, ge=0)
    recon_loss_weight: float = bounded(1.0, ge=0)
    vq_loss_weight: float = bounded(1.0, ge=0)
    use_perceptual: bool = False
    perceptual_weight: float = bounded(1.0, ge=0)
    vgg_ckpt_path: Optional[str] = None
    """VGG16 weights for LPIPS; default: perceptual.backbone_path (else the torch hub cache)."""
    perceptual_backbone: Optional[Literal["imagenet", "random"]] = None
    """Default: perceptual.backbone."""
    use_gan: bool = False
    disc_start: int = bounded(10000, ge=0)
    disc_weight: float = bounded(0.5, ge=0)
    disc_dim: int = bounded(64, ge=1)
    disc_num_layers: int = bounded(3, ge=0)
    disc_adaptive_weight: bool = False
    nonfinite_adaptive_to_zero: bool = True
    """A NaN/Inf adaptive weight becomes 0; False keeps the reference's clamp-only behaviour."""
    fast_adaptive_weight: bool = True
    """SPEC §7.5: the adaptive weight's two gradient norms from one pass through LPIPS and D (same value and
    gradients as the reference's two autograd.grad calls + full backward); false: the reference path."""
    teacher: DinoTeacherConfig = field(default_factory=DinoTeacherConfig)

    def __post_init__(self):
        checks = []
        for dim_key, heads_key in (("encoder_embed_dim", "encoder_num_heads"),
                                   ("image_decoder_dim", "image_decoder_num_heads")):
            dim, heads = getattr(self, dim_key), getattr(self, heads_key)
            checks += [(dim % heads == 0, f"model.{dim_key}={dim} is not divisible by model.{heads_key}={heads}"),
                       (self.pos_embed != "rope" or dim % heads or (dim // heads) % 4 == 0,
                        f"model.{dim_key}/{heads_key} = head dim {dim // heads} must be divisible by 4 for "
                        "pos_embed=rope")]
        dino_dim = self.dino_decoder_dim or self.encoder_embed_dim
        checks.append((dino_dim % self.dino_decoder_num_heads == 0,
                       f"DINO decoder width {dino_dim} (model.dino_decoder_dim or encoder_embed_dim) is not "
                       f"divisible by model.dino_decoder_num_heads={self.dino_decoder_num_heads}"))
        unread = "dead_code_steps" if self.dead_code_rule == "ema" else "threshold_ema_dead_code"
        checks.append((getattr(self, unread) is None,
                       f"model.{unread} is not read with model.dead_code_rule={self.dead_code_rule}; drop it or set "
                       f"dead_code_rule: {'steps' if unread == 'dead_code_steps' else 'ema'}"))
        problems(*checks)

    def loss_kwargs(self) -> dict:
        """Constructor kwargs of ``vqfast.losses.dinovq.DinoVQLoss`` (seed 004's loss keys)."""
        return {name: getattr(self, name) for name in LOSS_KEYS} | {"out_chans": self.out_chans}

    def network_kwargs(self) -> dict:
        """Constructor kwargs of ``vqfast.models.dinovq.DinoVQModel`` (the networks: no loss, no teacher)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("type", "teacher", *LOSS_KEYS)}
        for key in ("threshold_ema_dead_code", "dead_code_steps"):  # the rule's unread one: the model default
            if out[key] is None:
                del out[key]
        return out


@dataclass
class DinoVQTrainSection(OptimSection):
    """Both optimizers come from one factory (seed 004's ``get_optimizer``, lucidrains' form): Adam when
    weight_decay is 0, else AdamW with decay on ≥2-D parameters only (``group_wd_params``)."""
    lr: Optional[float] = bounded(1e-4, gt=0)
    """Generator LR (seed 004: 1e-4)."""
    betas: list[float] = bounded(factory=lambda: [0.9, 0.99], ge=0, lt=1)
    """get_optimizer's betas (both optimizers)."""
    disc_betas: Optional[list[float]] = bounded(None, ge=0, lt=1)
    """Unset: the generator's betas (seed 004 builds D's optimizer with the same get_optimizer)."""
    eps: float = bounded(1e-8, gt=0)
    group_wd_params: bool = True
    """With weight_decay > 0: no decay on biases/norm weights (< 2-D), as get_optimizer."""
    disc_every: int = bounded(1, ge=1)
    """A D step every N batches (with model.use_gan)."""

    def __post_init__(self):
        if self.disc_betas is None:
            self.disc_betas = list(self.betas)
        super().__post_init__()


@dataclass
class DinoVQConfig(RunConfig):
    model: DinoVQModelConfig = field(default_factory=DinoVQModelConfig)
    perceptual: PerceptualSection = field(default_factory=PerceptualSection)
    data: ImageDataSection = field(default_factory=ImageDataSection)
    train: DinoVQTrainSection = field(default_factory=DinoVQTrainSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self):
        m, size = self.model, self.data.size
        problems((m.img_size in (None, size),
                  f"model.img_size={m.img_size} differs from data.size={size}; leave it unset to follow data.size"),
                 (size % m.patch_size == 0, f"data.size={size} is not divisible by model.patch_size={m.patch_size}"))
        m.img_size = size
        m.vgg_ckpt_path = m.vgg_ckpt_path or self.perceptual.backbone_path
        m.perceptual_backbone = m.perceptual_backbone or self.perceptual.backbone
