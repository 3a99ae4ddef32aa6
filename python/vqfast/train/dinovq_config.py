"""Typed config of the DinoVQ family (the ``model:`` section with ``type: dinovq``; SPEC §5.1/§5.2).

Field names are the seed-004 ``DinoVQModel`` constructor kwargs; the teacher lives in ``model.teacher``.
Training knobs come from the shared ``train:`` section (``lr`` unset → the seed's 1e-4 AdamW; ``betas``,
``weight_decay``, ``disc_lr``, ``disc_every``, ``reuse_recon_for_d``, ``grad_accum``, ``grad_clip``,
``precision``). ``model.use_gan`` switches the GAN (``train.use_gan`` is not read by this family).
Unknown keys are rejected naming the key (``DinoVQModelConfig.from_dict`` or the engine's loader).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from vqfast.train.errors import ConfigError


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
    random_dim: int | None = None
    """Random teacher width (default: model.dino_dim)."""
    random_depth: int = 2
    random_heads: int = 4
    random_seed: int = 0


@dataclass
class DinoVQModelConfig:
    type: str = "dinovq"
    # image / encoder
    img_size: int = 224
    """Square input size; must equal data.size."""
    patch_size: int = 16
    in_chans: int = 3
    out_chans: int = 3
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    ffn_ratio: float = 4.0
    num_register_tokens: int = 4
    pos_embed: Literal["rope", "learned"] = "rope"
    pos_embed_rope_base: float = 100.0
    layerscale_init: float | None = 1e-5
    # VQ
    codebook_size: int = 8192
    codebook_dim: int | None = None
    """None = encoder_embed_dim; otherwise linear project-in/out around the quantiser."""
    vq_decay: float = 0.99
    vq_eps: float = 1e-5
    vq_commitment_weight: float = 0.25
    kmeans_init: bool = True
    kmeans_iters: int = 20
    restart_dead_codes: bool = True
    dead_code_steps: int = 100
    """A code unused for this many training steps is dead (replaced when restart_dead_codes)."""
    l2_normalize_codes: bool = False
    """VQ-KD style: l2-normalise the (projected) tokens before the lookup."""
    residual_grad: Literal["none", "encoder"] = "none"
    """none: r = z − e has no encoder gradient under STE (reference); encoder: r = z − sg(e)."""
    precision: Literal["ieee", "tf32", "bf16"] = "ieee"
    """nearest_code precision."""
    # DINO decoder
    dino_decoder_depth: int = 8
    dino_decoder_num_heads: int = 12
    dino_decoder_dim: int | None = None
    dino_dim: int = 768
    # image decoder
    image_decoder_dim: int = 512
    image_decoder_depth: int = 8
    image_decoder_num_heads: int = 8
    # losses (seed-004 API)
    dino_loss_weight: float = 1.0
    recon_loss_weight: float = 1.0
    vq_loss_weight: float = 1.0
    use_perceptual: bool = False
    perceptual_weight: float = 1.0
    vgg_ckpt_path: str | None = None
    """VGG16 weights for LPIPS (default: perceptual.backbone_path / the torch hub cache)."""
    perceptual_backbone: Literal["imagenet", "random"] | None = None
    """Default: perceptual.backbone."""
    use_gan: bool = False
    disc_start: int = 10000
    disc_weight: float = 0.5
    disc_dim: int = 64
    disc_num_layers: int = 3
    disc_adaptive_weight: bool = False
    nonfinite_adaptive_to_zero: bool = True
    """A NaN/Inf adaptive weight becomes 0 (SPEC §6.4); False keeps the reference's clamp-only behaviour."""
    teacher: DinoTeacherConfig = field(default_factory=DinoTeacherConfig)

    def __post_init__(self):
        problems = []
        if self.img_size % self.patch_size:
            problems.append(f"model.img_size={self.img_size} is not divisible by model.patch_size={self.patch_size}")
        for dim_key, heads_key in (("encoder_embed_dim", "encoder_num_heads"),
                                   ("image_decoder_dim", "image_decoder_num_heads")):
            dim, heads = getattr(self, dim_key), getattr(self, heads_key)
            if heads < 1 or dim % heads:
                problems.append(f"model.{dim_key}={dim} is not divisible by model.{heads_key}={heads}")
            elif self.pos_embed == "rope" and (dim // heads) % 4:
                problems.append(f"model.{dim_key}/{heads_key} = head dim {dim // heads} must be divisible by 4 "
                                "for pos_embed=rope")
        dino_dim = self.dino_decoder_dim or self.encoder_embed_dim
        if self.dino_decoder_num_heads < 1 or dino_dim % self.dino_decoder_num_heads:
            problems.append(f"DINO decoder width {dino_dim} (model.dino_decoder_dim or encoder_embed_dim) is not "
                            f"divisible by model.dino_decoder_num_heads={self.dino_decoder_num_heads}")
        for key in ("codebook_size", "kmeans_iters", "dead_code_steps", "patch_size", "dino_dim"):
            if getattr(self, key) < 1:
                problems.append(f"model.{key}={getattr(self, key)} must be >= 1")
        if self.codebook_dim is not None and self.codebook_dim < 1:
            problems.append(f"model.codebook_dim={self.codebook_dim} must be >= 1 or null")
        if self.disc_start < 0:
            problems.append(f"model.disc_start={self.disc_start} must be >= 0")
        if not 0.0 <= self.vq_decay <= 1.0:
            problems.append(f"model.vq_decay={self.vq_decay} must be in [0, 1]")
        for key in ("dino_loss_weight", "recon_loss_weight", "vq_loss_weight", "perceptual_weight", "disc_weight"):
            if getattr(self, key) < 0:
                problems.append(f"model.{key}={getattr(self, key)} must be >= 0")
        if problems:
            raise ConfigError("; ".join(problems))

    def model_kwargs(self) -> dict:
        """Constructor kwargs of ``vqfast.models.dinovq.DinoVQModel`` (without the teacher)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("type", "teacher")}
        out["perceptual_backbone"] = out["perceptual_backbone"] or "imagenet"
        return out

    @classmethod
    def from_dict(cls, data: dict, where: str = "<dict>") -> DinoVQModelConfig:
        """Build from a mapping; every unknown or mistyped key is reported in one ConfigError."""
        from vqfast.train.schema import from_dict, raise_if
        errors: list[str] = []
        cfg = from_dict(cls, dict(data), errors, where, prefix="model.")
        raise_if(errors, where)
        return cfg


def build_dinovq(cfg: DinoVQModelConfig, backend: str = "auto"):
    """Registry builder: ``DinoVQModel`` from the typed config."""
    from vqfast.models.dinovq import DinoVQModel
    return DinoVQModel(**cfg.model_kwargs(), backend=backend)
