"""``DinoVQModel`` — ViT VQ tokenizer distilled from DINO features (seed 004, SPEC §5.1).

Forward (B×3×H×W, L = (H/p)·(W/p) patch tokens):
    z = ViT(x)                                   (B, L, D)
    z_c = proj_in(z) [l2-normalised if l2_normalize_codes]        (B, L, Dc)   (identity when Dc = D)
    q = EMA-VQ(z_c) (straight-through value), e = proj_out(q)     (B, L, D)
    r = z − e                                     residual, see ``residual_grad``
    f̂ = DinoFeatureDecoder(e)                    (B, h, w, dino_dim)   — codes only
    x̂ = ImageDecoder(ConcatFusion(e, r))         (B, out_chans, H, W)

``residual_grad`` (SPEC §5.1 caveat):
  * ``"none"`` (reference): e is the straight-through output e = z + sg(q − z), so r = z − e = sg(z − q)
    carries **no** gradient to the encoder; the encoder learns only through e (STE) and the VQ loss.
  * ``"encoder"``: r = z − sg(e): the pixel loss reaches the encoder through r as well (value unchanged).

Quantiser: ``vqfast.quantize.EMAVectorQuantizer`` (channels-last tokens; nearest code via
``vqfast.ops.nearest_code``, EMA via ``vqfast.ops.ema_update_``; Triton on CUDA), commitment loss
β·mse(sg(q), z_c), k-means init on the first training batch. Dead codes (``dead_code_rule``):
  * ``"ema"`` (seed 004's lucidrains ``VectorQuantize(threshold_ema_dead_code=1)``, ``EuclideanCodebook.
    expire_codes_``): after the EMA update, every code whose EMA count ``cluster_size`` is below
    ``threshold_ema_dead_code`` is replaced by a random token of the batch, its count reset to the threshold and
    its EMA sum to token × threshold (``replace``); no host sync (masked ``torch.where``). Without k-means init
    the EMA counts start at 1 as lucidrains' (taming's EMA starts them at 0, which would expire every code).
  * ``"steps"``: vqfast's rule — a code unused for ``dead_code_steps`` training steps is replaced.
Orthogonal regulariser (``orthogonal_reg_weight`` > 0; lucidrains ``orthogonal_loss_fn``, eq. 2 of
arXiv:2112.00384): Σ cos²(W_i, W_j)/n² − 1/n over the codes used in the batch (``orthogonal_reg_active_codes_only``),
at most ``orthogonal_reg_max_codes`` of them sampled, added to the VQ loss in training. Under EMA the codebook is a
buffer, so (as in the reference with ``learnable_codebook=False``) the term shifts the loss value only.
RoPE coordinate augmentation of the encoder (``pos_embed_rope_{shift,jitter,rescale}_coords``; the seed's
DINOv3-style ViT uses rescale_coords 2) in training mode.

``compute_loss`` returns exactly the SPEC §5.2 keys; the D phase can reuse the generator-phase
reconstruction (``reconstructed_imgs=``), otherwise it re-runs the forward (reference semantics, which
also repeats the EMA update) without building a graph.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vqfast.errors import InputError
from vqfast.models.vit import PosEmbed, TokenTransformer, ViTEncoder
from vqfast.quantize import EMAVectorQuantizer
from vqfast.quantize.base import ddp_active

log = logging.getLogger("vqfast")

RESIDUAL_GRADS = ("none", "encoder")
UPDATE_TYPES = ("generator", "discriminator")
DEAD_CODE_RULES = ("ema", "steps")


@torch.no_grad()
def expire_codes_(quantizer: EMAVectorQuantizer, z_flat: torch.Tensor, threshold: float) -> None:
    """lucidrains ``EuclideanCodebook.expire_codes_`` + ``replace`` on an EMA quantizer: codes with EMA count
    ``cluster_size < threshold`` take a random token of the batch (count := threshold, EMA sum := token ×
    threshold). Under DDP the counts are already global; the sampled tokens come from rank 0."""
    emb = quantizer.embedding
    dead = emb.cluster_size < threshold                                        # (K,) bool
    pick = torch.randint(0, z_flat.shape[0], (quantizer.n_embed,), device=z_flat.device)
    sample = z_flat.detach().float().index_select(0, pick)                     # (K, D)
    if quantizer.sync_ddp and ddp_active():
        torch.distributed.broadcast(sample, 0)
    emb.weight.copy_(torch.where(dead[:, None], sample.to(emb.weight.dtype), emb.weight))
    emb.embed_avg.copy_(torch.where(dead[:, None], sample * threshold, emb.embed_avg))
    emb.cluster_size.copy_(torch.where(dead, torch.full_like(emb.cluster_size, threshold), emb.cluster_size))
    quantizer._last_metrics["dead_codes"] = dead.sum().float()
    quantizer.restarted_codes.add_(dead.sum())
    quantizer.steps_unused.masked_fill_(dead, 0)


def orthogonal_loss(codebook: torch.Tensor, indices: torch.Tensor, active_only: bool = True,
                    max_codes: int | None = 512) -> torch.Tensor:
    """lucidrains ``orthogonal_loss_fn`` (one head): Σ_ij cos²(W_i, W_j)/n² − 1/n over the codes used by
    ``indices`` (all codes without ``active_only``), at most ``max_codes`` drawn at random — fixed-size masks
    instead of ``torch.unique``/``randperm`` on a data-dependent count, so no host sync."""
    K = codebook.shape[0]
    active = torch.ones(K, dtype=torch.bool, device=codebook.device)
    if active_only:
        active = torch.zeros_like(active).index_fill_(0, indices.long(), True)  # (K,)
    if max_codes is not None and max_codes < K:
        score = torch.rand(K, device=codebook.device).masked_fill(~active, -1.0)  # inactive codes last
        pick = score.topk(max_codes).indices                                      # (M,)
        codebook, active = codebook.index_select(0, pick), active.index_select(0, pick)
    normed = F.normalize(codebook.float(), dim=-1)                               # (M, D)
    v = active.float()                                                            # (M,)
    n = v.sum().clamp_min(1.0)
    sim2 = (normed @ normed.t()).square()                                         # (M, M)
    return (sim2 * v[:, None] * v[None, :]).sum() / n.square() - 1.0 / n


class DinoFeatureDecoder(nn.Module):
    """Codes (B, L, D) → predicted teacher features (B, L, dino_dim)."""

    def __init__(self, in_dim: int, dim: int, depth: int, num_heads: int, out_dim: int, grid, pos_embed: PosEmbed,
                 rope_base: float, ffn_ratio: float, layerscale_init: float | None):
        super().__init__()
        self.proj_in = nn.Linear(in_dim, dim)
        self.transformer = TokenTransformer(dim, depth, num_heads, grid, pos_embed=pos_embed, rope_base=rope_base,
                                            ffn_ratio=ffn_ratio, layerscale_init=layerscale_init)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.head(self.transformer(self.proj_in(e)))  # (B, L, out_dim)


class ConcatFusion(nn.Module):
    """concat(e, r) → Linear: (B, L, 2D) → (B, L, out_dim)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(2 * dim, out_dim)

    def forward(self, e: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([e, r], dim=-1))  # (B, L, out_dim)


class ImageDecoder(nn.Module):
    """Tokens (B, L, dim) → transformer → per-token p×p×C pixels → (B, C, H, W)."""

    def __init__(self, dim: int, depth: int, num_heads: int, grid, patch_size: int, out_chans: int,
                 pos_embed: PosEmbed, rope_base: float, ffn_ratio: float, layerscale_init: float | None):
        super().__init__()
        self.grid, self.patch_size, self.out_chans = tuple(grid), patch_size, out_chans
        self.transformer = TokenTransformer(dim, depth, num_heads, grid, pos_embed=pos_embed, rope_base=rope_base,
                                            ffn_ratio=ffn_ratio, layerscale_init=layerscale_init)
        self.to_pixels = nn.Linear(dim, patch_size * patch_size * out_chans)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B = tokens.shape[0]
        gh, gw = self.grid
        p, C = self.patch_size, self.out_chans
        pix = self.to_pixels(self.transformer(tokens))  # (B, L, p·p·C)
        pix = pix.reshape(B, gh, gw, p, p, C).permute(0, 5, 1, 3, 2, 4)  # (B, C, gh, p, gw, p)
        return pix.reshape(B, C, gh * p, gw * p)  # (B, C, H, W)


class DinoVQModel(nn.Module):
    def __init__(self, img_size: Sequence[int] | int = (224, 224), patch_size: int = 16, in_chans: int = 3,
                 out_chans: int = 3, *,
                 # encoder (ViT)
                 encoder_embed_dim: int = 768, encoder_depth: int = 12, encoder_num_heads: int = 12,
                 ffn_ratio: float = 4.0, num_register_tokens: int = 4, pos_embed: PosEmbed = "rope",
                 pos_embed_rope_base: float = 100.0, layerscale_init: float | None = 1e-5,
                 # VQ
                 codebook_size: int = 8192, codebook_dim: int | None = None, vq_decay: float = 0.99,
                 vq_eps: float = 1e-5, vq_commitment_weight: float = 0.25, kmeans_init: bool = True,
                 kmeans_iters: int = 20, restart_dead_codes: bool = True, dead_code_steps: int = 100,
                 dead_code_rule: str = "ema", threshold_ema_dead_code: float = 1.0,
                 orthogonal_reg_weight: float = 0.0, orthogonal_reg_active_codes_only: bool = True,
                 orthogonal_reg_max_codes: int | None = 512,
                 l2_normalize_codes: bool = False, residual_grad: str = "none", backend: str = "auto",
                 precision: str = "ieee", pos_embed_rope_shift_coords: float | None = None,
                 pos_embed_rope_jitter_coords: float | None = None, pos_embed_rope_rescale_coords: float | None = 2.0,
                 # DINO decoder
                 dino_decoder_depth: int = 8, dino_decoder_num_heads: int = 12, dino_decoder_dim: int | None = None,
                 dino_dim: int = 768,
                 # image decoder
                 image_decoder_dim: int = 512, image_decoder_depth: int = 8, image_decoder_num_heads: int = 8,
                 # the seed's losses: a vqfast.losses.dinovq.DinoVQLoss (built by the caller; models and losses
                 # never import each other)
                 loss_fn: nn.Module | None = None):
        super().__init__()
        img_size = (int(img_size), int(img_size)) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        if len(img_size) != 2:
            raise InputError(f"img_size={img_size} must be an int or (H, W)")
        if residual_grad not in RESIDUAL_GRADS:
            raise InputError(f"residual_grad={residual_grad!r} is not one of {RESIDUAL_GRADS}")
        if dead_code_rule not in DEAD_CODE_RULES:
            raise InputError(f"dead_code_rule={dead_code_rule!r} is not one of {DEAD_CODE_RULES}")
        if not threshold_ema_dead_code > 0 or orthogonal_reg_weight < 0:
            raise InputError(f"threshold_ema_dead_code={threshold_ema_dead_code} must be > 0 and "
                             f"orthogonal_reg_weight={orthogonal_reg_weight} >= 0")
        self.expire_by_ema = restart_dead_codes and dead_code_rule == "ema"
        self.threshold_ema_dead_code = float(threshold_ema_dead_code)
        self.orthogonal_reg_weight = float(orthogonal_reg_weight)
        self.orthogonal_reg_active_codes_only = bool(orthogonal_reg_active_codes_only)
        self.orthogonal_reg_max_codes = orthogonal_reg_max_codes
        self.img_size, self.patch_size = img_size, int(patch_size)
        self.residual_grad = residual_grad
        self.l2_normalize_codes = bool(l2_normalize_codes)
        D = int(encoder_embed_dim)
        Dc = int(codebook_dim) if codebook_dim else D
        self.encoder = ViTEncoder(img_size, patch_size, in_chans, D, encoder_depth, encoder_num_heads,
                                  pos_embed=pos_embed, rope_base=pos_embed_rope_base, ffn_ratio=ffn_ratio,
                                  layerscale_init=layerscale_init, num_register_tokens=num_register_tokens,
                                  rope_augment={"shift_coords": pos_embed_rope_shift_coords,
                                                "jitter_coords": pos_embed_rope_jitter_coords,
                                                "rescale_coords": pos_embed_rope_rescale_coords})
        self.grid = self.encoder.grid
        self.proj_in = nn.Linear(D, Dc) if Dc != D else nn.Identity()
        self.proj_out = nn.Linear(Dc, D) if Dc != D else nn.Identity()
        self.quantize = EMAVectorQuantizer(codebook_size, Dc, beta=vq_commitment_weight, decay=vq_decay, eps=vq_eps,
                                           backend=backend, precision=precision, layout="channels_last",
                                           dead_code_steps=dead_code_steps,
                                           restart_dead_codes=restart_dead_codes and dead_code_rule == "steps",
                                           kmeans_init=kmeans_init, kmeans_iters=kmeans_iters)
        if dead_code_rule == "ema" and not kmeans_init:  # lucidrains' EMA counts start at 1 (taming's at 0)
            self.quantize.embedding.cluster_size.fill_(1.0)
        self.quantizers = [self.quantize]  # what the engine's codebook_stats looks for
        self.vocab_size = int(codebook_size)
        self.dino_decoder = DinoFeatureDecoder(D, dino_decoder_dim or D, dino_decoder_depth, dino_decoder_num_heads,
                                               dino_dim, self.grid, pos_embed, pos_embed_rope_base, ffn_ratio,
                                               layerscale_init)
        self.fusion = ConcatFusion(D, image_decoder_dim)
        self.image_decoder = ImageDecoder(image_decoder_dim, image_decoder_depth, image_decoder_num_heads, self.grid,
                                          patch_size, out_chans, pos_embed, pos_embed_rope_base, ffn_ratio,
                                          layerscale_init)
        self.dino_dim = int(dino_dim)
        self.loss_fn = loss_fn

    def _loss(self) -> nn.Module:
        if self.loss_fn is None:
            raise InputError("this DinoVQModel was built without a loss_fn (vqfast.losses.dinovq.DinoVQLoss); "
                             "build it with vqfast.train.families.dinovq.model.build_dinovq to train it")
        return self.loss_fn

    # ---- parameters ---------------------------------------------------------------------------------
    @property
    def use_gan(self) -> bool:
        return self.loss_fn is not None and self.loss_fn.use_gan

    @property
    def discriminator(self) -> nn.Module | None:
        return self.loss_fn.discriminator if self.loss_fn is not None else None

    @property
    def last_layer(self) -> torch.Tensor:
        """W of the adaptive GAN weight: the pixel head's weight (x̂ depends on W only through it)."""
        return self.image_decoder.to_pixels.weight

    def generator_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the generator: everything except the discriminator and LPIPS (the seed
        passes model.parameters(), which relies on requires_grad toggling)."""
        skip = {id(p) for p in self.loss_fn.parameters()} if self.loss_fn is not None else set()
        return [p for p in self.parameters() if id(p) not in skip and p.requires_grad]

    # ---- forward ------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)  # (B, L, D)
        z_c = self.proj_in(z)  # (B, L, Dc)
        if self.l2_normalize_codes:
            z_c = F.normalize(z_c, dim=-1)
        q, vq_loss, (perplexity, _, indices) = self.quantize(z_c)  # (B, L, Dc), (), (), (B·L,)
        if self.training and self.expire_by_ema:
            expire_codes_(self.quantize, z_c.reshape(-1, z_c.shape[-1]), self.threshold_ema_dead_code)
        if self.training and self.orthogonal_reg_weight > 0:
            vq_loss = vq_loss + self.orthogonal_reg_weight * orthogonal_loss(
                self.quantize.embedding.weight, indices.reshape(-1), self.orthogonal_reg_active_codes_only,
                self.orthogonal_reg_max_codes)
        e = self.proj_out(q)  # (B, L, D)
        return {"z": z, "e": e, "indices": indices.view(z.shape[0], -1), "vq_loss": vq_loss,
                "perplexity": perplexity}

    def decode(self, e: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return self.image_decoder(self.fusion(e, r))  # (B, C, H, W)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.encode(x)
        z, e = out["z"], out["e"]
        r = z - e if self.residual_grad == "none" else z - e.detach()  # (B, L, D)
        B = x.shape[0]
        gh, gw = self.grid
        dino = self.dino_decoder(e).reshape(B, gh, gw, self.dino_dim)  # (B, h, w, dino_dim)
        out.update(r=r, dino_features=dino, reconstructed_imgs=self.decode(e, r),
                   avg_usage=self.quantize.codebook_metrics()["active_codes"].float() / self.vocab_size)
        return out

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)["reconstructed_imgs"]

    # ---- loss ---------------------------------------------------------------------------------------
    def _check_targets(self, dino_features_gt: torch.Tensor, B: int) -> torch.Tensor:
        gh, gw = self.grid
        t = dino_features_gt
        if t.dim() == 3 and t.shape[1] == gh * gw:
            t = t.reshape(t.shape[0], gh, gw, t.shape[-1])
        if t.dim() != 4 or tuple(t.shape[:3]) != (B, gh, gw) or t.shape[-1] != self.dino_dim:
            raise InputError(f"dino_features_gt has shape {tuple(dino_features_gt.shape)}; expected "
                             f"({B}, {gh * gw}, {self.dino_dim}) or ({B}, {gh}, {gw}, {self.dino_dim}) "
                             "(teacher grid must match the patch grid, teacher dim must equal dino_dim)")
        return t

    def generator_step(self, imgs: torch.Tensor, dino_features_gt: torch.Tensor, global_step: int):
        """(the seed's losses dict, forward outputs) — the task uses the outputs for metrics/D reuse."""
        target = self._check_targets(dino_features_gt, imgs.shape[0])
        out = self(imgs)
        losses = self._loss().generator(out["dino_features"], target, out["reconstructed_imgs"], imgs,
                                        out["vq_loss"], global_step, self.last_layer)
        return losses, out

    def compute_loss(self, imgs: torch.Tensor, dino_features_gt: torch.Tensor, update_type: str = "generator",
                     global_step: int = 0, *, reconstructed_imgs: torch.Tensor | None = None) -> dict:
        """Seed-004 API. ``update_type="generator"``: total_loss and the unweighted/weighted terms.
        ``"discriminator"``: disc_loss, disc_weight, logits_real, logits_fake (zeros without GAN);
        pass ``reconstructed_imgs`` (the G-phase x̂) to skip the reference's second forward."""
        if update_type not in UPDATE_TYPES:
            raise InputError(f"update_type={update_type!r} is not one of {UPDATE_TYPES}")
        if update_type == "generator":
            return self.generator_step(imgs, dino_features_gt, global_step)[0]
        if self.use_gan and reconstructed_imgs is None:
            with torch.no_grad():  # reference re-runs the forward; the D loss only sees sg(x̂)
                reconstructed_imgs = self(imgs)["reconstructed_imgs"]
        if reconstructed_imgs is None:
            reconstructed_imgs = imgs
        return self._loss().discriminator_loss(imgs, reconstructed_imgs, global_step)
