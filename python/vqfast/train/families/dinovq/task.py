"""The DinoVQ task (seed 004's training step): ViT VQ tokenizer distilled from DINO teacher features.

Batches (``prepare_batch``): the engine's images ((B, C, H, W) model input) and their file paths; teacher
features come from the frozen online teacher, or are looked up by path in the precomputed shards
(``vqfast.data.dino.DinoFeatureStore``) when the teacher is ``precomputed``.

Per batch (steps are batches):
* G phase: D frozen (requires_grad False), one forward per micro-batch, ``total_loss`` backward,
  AdamW step over the generator parameters. The generator optimizer holds only the generator's
  parameters (the seed passes ``model.parameters()``, incl. D, relying on requires_grad toggling and
  ``zero_grad(set_to_none=True)`` — same result with weight decay 0, safe with > 0).
* D phase (``model.use_gan``, every ``train.disc_every`` steps, only once w_gan(t) > 0): hinge loss on
  the **generator-phase reconstruction, detached** (``train.reuse_recon_for_d``, default). The seed
  re-runs the forward for the D step, which costs a second forward and a second EMA/dead-code update on
  the same batch and shows D the reconstruction of the *updated* generator; ``reuse_recon_for_d: false``
  reproduces that (forward re-run without a graph). Before disc_start the seed's D loss is exactly 0,
  so skipping the D phase changes no parameter (only Adam's step counter).
Logged values are detached 0-dim tensors (no host sync).

DDP (``wrap_ddp``): ``generator_step`` runs through DDP over the generator parameters (the discriminator
inside ``model.loss_fn`` is left out), the discriminator has its own DDP wrapper used in the D phase only.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from vqfast.data.dino import (
    DinoFeatureStore,
    TeacherUnavailableError,
    build_teacher,
    find_feature_shards,
    teacher_options_help,
)
from vqfast.errors import ConfigError
from vqfast.losses.dinovq import DISCRIMINATOR_KEYS
from vqfast.train.engine import optim
from vqfast.train.engine.task import CodeUsage, Logs, TaskBase, swap_attr
from vqfast.train.families.dinovq.config import DinoVQConfig
from vqfast.train.families.dinovq.model import build_dinovq

log = logging.getLogger("vqfast")


def _is_generated(cfg: DinoVQConfig) -> bool:
    """data.root was generated for this run (data.synthetic, under run_dir/data)."""
    if not cfg.data.synthetic:
        return False
    try:
        Path(cfg.data.root).resolve().relative_to((Path(cfg.run_dir) / "data").resolve())
        return True
    except ValueError:
        return False


def resolve_teacher(cfg: DinoVQConfig, grid: tuple[int, int]):
    """(online teacher module or None, DinoFeatureStore or None) for ``model.teacher``."""
    mc = cfg.model
    t = mc.teacher
    kind = t.kind
    feature_root = t.feature_root or cfg.data.root
    if kind == "auto":
        if feature_root and find_feature_shards(feature_root):
            kind = "precomputed"
        elif t.hub_dir:
            kind = "dinov2_hub"
        elif t.timm_model:
            kind = "timm"
        elif _is_generated(cfg):
            kind = "random"
        else:
            raise TeacherUnavailableError(f"model.teacher.kind=auto found no teacher for data.root={cfg.data.root!r}. "
                                          + teacher_options_help(feature_root))
    log.info("DinoVQ teacher: %s", kind)
    if kind == "precomputed":
        if not feature_root:
            raise TeacherUnavailableError("model.teacher.kind=precomputed needs data.root or model.teacher.feature_root. "
                                          + teacher_options_help())
        store = DinoFeatureStore(feature_root)
        if store.dim != mc.dino_dim or store.grid != grid:
            raise TeacherUnavailableError(f"precomputed DINO features have grid {store.grid} and dim {store.dim}; "
                                          f"the model needs grid {grid} (img_size/patch_size) and model.dino_dim="
                                          f"{mc.dino_dim}")
        return None, store
    teacher = build_teacher(kind, img_size=(mc.img_size, mc.img_size), grid=grid, hub_dir=t.hub_dir,
                            hub_model=t.hub_model, timm_model=t.timm_model, checkpoint=t.checkpoint,
                            input_mean=cfg.data.mean, input_std=cfg.data.std,
                            random_dim=t.random_dim or mc.dino_dim, random_depth=t.random_depth,
                            random_heads=t.random_heads, seed=t.random_seed)
    if teacher.dim != mc.dino_dim:
        raise TeacherUnavailableError(f"teacher {teacher.name} gives {teacher.dim}-d features but model.dino_dim="
                                      f"{mc.dino_dim}; set model.dino_dim={teacher.dim}")
    return teacher, None


def get_optimizer(params, lr: float, wd: float, betas, eps: float = 1e-8, group_wd_params: bool = True):
    """seed 004's one optimizer factory for G and D, in the form of lucidrains' ``get_optimizer``
    (``DALLE2-pytorch/dalle2_pytorch/optimizer.py``): Adam when ``wd == 0``, else AdamW with weight decay on
    ≥2-D parameters only (``group_wd_params``)."""
    params = list(params)
    if not params:
        raise ConfigError("an optimizer would have no trainable parameters (is everything frozen?)")
    betas = (float(betas[0]), float(betas[1]))
    if wd == 0:
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)
    if group_wd_params:
        params = [{"params": [p for p in params if p.ndim >= 2]},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas, eps=eps)


class DinoVQTask(TaskBase):
    name = "dinovq"
    progress_keys = ("train/total_loss", "train/recon_loss")
    summary_keys = ("train/total_loss", "train/recon_loss", "train/dino_loss", "val/psnr")

    def __init__(self, cfg: DinoVQConfig, device: torch.device):
        super().__init__(cfg, device)
        mc, t = cfg.model, cfg.train
        self.model = build_dinovq(mc, cfg.backend).to(device)
        self.teacher, self.store = resolve_teacher(cfg, self.model.grid)
        if self.store is not None and cfg.data.kind != "images":
            raise ConfigError("precomputed DINO features are looked up by image file: set data.kind: images (a "
                              "folder of images) or use an online teacher (model.teacher.kind)")
        if self.teacher is not None:
            self.teacher.to(device)
        self.lr = t.lr
        self.opt_ae = get_optimizer(self.model.generator_parameters(), self.lr, t.weight_decay, t.betas, t.eps,
                                    t.group_wd_params)
        self.sched_ae = optim.scheduler(self.opt_ae, t)
        self.discriminator = self.model.discriminator
        self.opt_disc = self.sched_disc = None
        if self.discriminator is not None:  # the same factory (seed 004); betas follow train.betas unless set
            self.opt_disc = get_optimizer(self.discriminator.parameters(), t.disc_lr or self.lr, t.weight_decay,
                                          t.disc_betas, t.eps, t.group_wd_params)
            self.sched_disc = optim.scheduler(self.opt_disc, t, decay=t.decay_disc_lr)
        self.usage = CodeUsage(self.model.vocab_size, device)
        self._gen = self.model.generator_step  # the DDP wrapper in wrap_ddp
        self._gen_ddp = self._disc_ddp = None
        log.info("task dinovq: %.2fM generator params, codebook %d, grid %s, lr %.3g, gan %s, perceptual %s",
                 sum(p.numel() for p in self.model.generator_parameters()) / 1e6, self.model.vocab_size,
                 self.model.grid, self.lr, self.discriminator is not None, mc.use_perceptual)

    def modules(self) -> dict:
        return {"model": self.model}  # the discriminator is model.loss_fn.discriminator (in its state_dict)

    def quantizers(self) -> list[torch.nn.Module]:
        return [self.model.quantize]

    def wrap_ddp(self, wrap_fn) -> None:
        trained = {id(p) for p in self.model.generator_parameters()}
        ignore = [n for n, p in self.model.named_parameters() if id(p) not in trained]
        self._gen = self._gen_ddp = wrap_fn(self.model, method="generator_step", ignore=ignore)
        if self.discriminator is not None:
            self.discriminator.requires_grad_(True)
            self._disc_ddp = wrap_fn(self.discriminator)

    def prepare_batch(self, batch, step: int) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
        """(images (B, C, H, W), teacher features (B, h, w, D)); precomputed features are looked up by path."""
        _, paths = batch
        x, n = super().prepare_batch(batch, step)
        if self.store is not None:
            feats = self.store.lookup(paths)  # one row per image (video frames: use image folders)
        else:
            feats = self.teacher(x)  # (B, h, w, D), no grad
        return (x, feats.to(self.device, torch.float32, non_blocking=True)), n

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], step: int) -> Logs:
        x, feats = batch
        accum = self.cfg.train.micro_batches()
        chunks = list(zip(x.chunk(accum), feats.chunk(accum), strict=True))  # micro-batches
        recons: list[torch.Tensor] = []
        model = self.model

        def generator(k: int, chunk):
            losses, out = self._gen(*chunk, step)
            recons.append(out["reconstructed_imgs"].detach())
            part = {f"train/{name}": v for name, v in losses.items()}
            part["train/perplexity"] = out["perplexity"]
            self.usage.add(out["indices"])
            return losses["total_loss"], part

        def discriminator(k: int, chunk):
            reuse = recons[k] if self.cfg.train.reuse_recon_for_d else None
            d = model.compute_loss(*chunk, "discriminator", step, reconstructed_imgs=reuse)
            part = {f"train/{name}": torch.as_tensor(d[name], dtype=torch.float32, device=self.device)
                    for name in DISCRIMINATOR_KEYS}
            return d["disc_loss"], part

        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)  # D frozen during the G step (seed 004)
        logs = self.run_phase(self.opt_ae, self.sched_ae, model.generator_parameters, chunks, generator,
                              self._gen_ddp)
        if self.discriminator is None:
            return logs
        self.discriminator.requires_grad_(True)
        if step % self.cfg.train.disc_every or model.loss_fn.gan_weight(step) == 0:
            return logs
        with swap_attr(model.loss_fn, "discriminator", self._disc_ddp):  # D through DDP in the D phase only
            logs.update(self.run_phase(self.opt_disc, self.sched_disc, self.discriminator.parameters, chunks,
                                       discriminator, self._disc_ddp))
        return logs

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_forward(lambda: self.model.reconstruct(x), self.model)
