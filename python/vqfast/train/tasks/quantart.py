"""QuantArt tasks for the shared engine (SPEC §2): ``QuantArtStage1Task`` and ``QuantArtStage2Task``.

Stage 1 is the VQ task with ``BaseVQGAN``: opt_ae = encoder + quant_conv [+ decoder side unless
``freeze_decoder``] [+ quantize], opt_disc = the image PatchGAN, both Adam(0.5, 0.9), taming's LR rule.
Frozen decoder parameters still receive gradients (adaptive weight needs ``decoder.conv_out.weight``); they are
cleared after each step so they never accumulate.

Stage 2 per batch (steps = batches): G phase — ``transfer(content, style)``, ``Stage2Loss`` generator terms,
backward, step opt_ae (model_x2y only); D phase — the latent PatchGAN on sg(quant_ref) vs sg(quant_y), step
opt_disc. The D phase reuses the G phase's quant_y (``train.reuse_recon_for_d``, vqfast default); false re-runs
``transfer`` with the updated model_x2y as Lightning does. QuantArt runs the D phase every step (its loss is only
zeroed by disc_start / G_step) and so does this task: Adam and BatchNorm state evolve exactly as there.

Data: the engine hands either a content tensor ((B), 3, H, W) — then the style batch comes from the task's own
independently shuffled style stream (batch ``step`` of ``model.style_root``) — or a dict
``{"content", "style"}`` of uint8 (B, H, W, 3) / normalised tensors (``vqfast.data.unpaired.UnpairedImages``).

DDP (``wrap_ddp``): stage 1 as the VQ task (frozen decoder parameters left out of DDP); stage 2 wraps
``model_x2y``'s ``transfer`` (frozen stage-1 parts are not DDP parameters) and the latent D (D phase only).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from vqfast.data.unpaired import ImageStream, make_paintings
from vqfast.losses.quantart import Stage2Loss
from vqfast.models.quantart import BaseVQGAN, Stage1CheckpointError, StyleTransfer
from vqfast.train import distributed as ddp
from vqfast.train import optim
from vqfast.train.config import Config
from vqfast.train.errors import CheckpointError, ConfigError
from vqfast.train.quantart_config import QuantArtStage1Config, QuantArtStage2Config
from vqfast.train.quantart_samples import rows_grid
from vqfast.train.samples import save_png
from vqfast.train.tasks.vq import VQTask

__all__ = ["QuantArtStage1Task", "QuantArtStage2Task", "build_stage1_model", "build_stage2_model"]

from vqfast.train.tasks._common import autocast_for, clip_grads, swap_attr

log = logging.getLogger("vqfast")
_STYLE_SEED_OFFSET = 7919


def _dd(cfg) -> dict:
    return dict(vars(cfg.ddconfig))


def build_stage1_model(cfg: QuantArtStage1Config, backend: str = "auto") -> BaseVQGAN:
    if not isinstance(cfg, QuantArtStage1Config):
        raise ConfigError(f"quantart_stage1 needs a QuantArtStage1Config, got {type(cfg).__name__}")
    try:
        return BaseVQGAN(_dd(cfg), cfg.n_embed, cfg.embed_dim, beta=cfg.beta, legacy=cfg.legacy, backend=backend,
                         ckpt_path=cfg.ckpt_path, ignore_keys=tuple(cfg.ignore_keys), use_quantize=cfg.use_quantize,
                         freeze_decoder=cfg.freeze_decoder, ckpt_quantize=cfg.ckpt_quantize)
    except Stage1CheckpointError as exc:
        raise CheckpointError(str(exc)) from exc


def build_stage2_model(cfg: QuantArtStage2Config, backend: str = "auto", *, load_checkpoints: bool = True
                       ) -> StyleTransfer:
    """StyleTransfer from the config; stage-1 checkpoints loaded (or a warning when unset)."""
    if not isinstance(cfg, QuantArtStage2Config):
        raise ConfigError(f"quantart_stage2 needs a QuantArtStage2Config, got {type(cfg).__name__}")
    enc = cfg.checkpoint_encoder if load_checkpoints else None
    dec = cfg.checkpoint_decoder if load_checkpoints else None
    if load_checkpoints:
        unset = [k for k, v in (("model.checkpoint_encoder", enc), ("model.checkpoint_decoder", dec)) if v is None]
        if unset and cfg.require_checkpoints:
            raise ConfigError(f"{', '.join(unset)} unset but model.require_checkpoints is true: give the content "
                              "(checkpoint_encoder) and style (checkpoint_decoder) stage-1 checkpoints")
        if unset:
            log.warning("quantart_stage2: %s unset — stage-1 parts start from RANDOM weights; stylised outputs are "
                        "meaningless until you give trained stage-1 checkpoints", " and ".join(unset))
    try:
        return StyleTransfer(_dd(cfg), cfg.n_embed, cfg.embed_dim, checkpoint_encoder=enc, checkpoint_decoder=dec,
                             use_residual=cfg.use_residual, use_conv=cfg.use_conv, use_selfatt=cfg.use_selfatt,
                             block_num=cfg.block_num, variant=cfg.variant, beta=cfg.beta, legacy=cfg.legacy,
                             backend=backend)
    except Stage1CheckpointError as exc:
        raise CheckpointError(str(exc)) from exc


def build_stage2_loss(cfg: QuantArtStage2Config, backend: str = "auto") -> Stage2Loss:
    lc = cfg.lossconfig
    return Stage2Loss(lc.disc_start, lc.codebook1_weight, lc.codebook2_weight, lc.G_step, lc.disc_num_layers,
                      lc.disc_in_channels, lc.disc_factor, lc.disc_weight, lc.reverse_weight, lc.style_weight,
                      lc.use_actnorm, False, lc.disc_ndf, lc.disc_loss, identity_weight=lc.identity_weight,
                      adaptive_disc_weight=lc.adaptive_disc_weight, backend=backend)


def to_model_input(images: torch.Tensor, mean, std, device) -> torch.Tensor:
    """uint8 (B, H, W, C) → float (B, C, H, W) normalised; float tensors pass through (already normalised)."""
    if images.dtype != torch.uint8:
        return images.to(device, non_blocking=True)
    if images.dim() != 4:
        raise ValueError(f"expected uint8 images (B, H, W, C), got shape {tuple(images.shape)}")
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)  # (B, C, H, W)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


# ---------------------------------------------------------------------------------------------------------------
class QuantArtStage1Task(VQTask):
    """VQTask with QuantArt's ``BaseVQGAN`` (same loop; QuantArt's frozen-decoder handling added)."""

    name = "quantart_stage1"

    def __init__(self, cfg: Config, device: torch.device):
        lc = cfg.loss
        if lc.kind != "vqlpips":
            raise ConfigError(f"loss.kind={lc.kind!r}: QuantArt stage 1 trains with the VQLPIPS loss ('vqlpips')")
        if lc.disc_in_channels != cfg.model.ddconfig.out_ch:
            raise ConfigError(f"loss.disc_in_channels={lc.disc_in_channels} must equal "
                              f"model.ddconfig.out_ch={cfg.model.ddconfig.out_ch}")
        # the registry builds BaseVQGAN for this family; frozen decoder parameters stay out of opt_ae and DDP
        super().__init__(cfg, device)
        log.info("task quantart_stage1: use_quantize=%s, freeze_decoder=%s", cfg.model.use_quantize,
                 cfg.model.freeze_decoder)

    def training_step(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        self.model.decoder.conv_out.weight.requires_grad_(True)  # QuantArt: adaptive weight needs it (SPEC §6.5)
        logs = super().training_step(x, step)
        for p in self.model.frozen_parameters():  # got gradients, never stepped: do not let them accumulate
            p.grad = None
        return logs


# ---------------------------------------------------------------------------------------------------------------
class QuantArtStage2Task:
    name = "quantart_stage2"
    progress_keys = ("train/total_loss", "train/style_loss")

    def __init__(self, cfg: Config, device: torch.device):
        self.cfg, self.device = cfg, device
        mc, t = cfg.model, cfg.train
        if not isinstance(mc, QuantArtStage2Config):
            raise ConfigError(f"quantart_stage2 needs model config QuantArtStage2Config, got {type(mc).__name__}")
        self.model = build_stage2_model(mc, cfg.backend).to(device)
        self.loss = build_stage2_loss(mc, cfg.backend).to(device)
        self.discriminator = self.loss.discriminator
        self.lr = optim.generator_lr(cfg, t.batch_size)
        self.opt_ae = optim.adam(self.model.trainable_parameters(), self.lr, t.betas, t.weight_decay)
        self.opt_disc = optim.adam(self.discriminator.parameters(), t.disc_lr or self.lr, t.disc_betas,
                                   t.weight_decay)
        self.sched_ae = optim.scheduler(self.opt_ae, cfg)
        self.sched_disc = optim.scheduler(self.opt_disc, cfg, decay=t.decay_disc_lr)
        self.style = ImageStream(self._style_root(), size=cfg.data.size, seed=cfg.seed + _STYLE_SEED_OFFSET)
        self._sample_style = self.style.first(mc.sample_styles)  # uint8 (S, H, W, 3), fixed for every grid
        self.vocab = int(mc.n_embed)
        self._code_counts = torch.zeros(self.vocab, dtype=torch.long, device=device)
        self._steps_done = 0
        self._transfer = ddp.Direct(self.model, "transfer")
        self._disc_ddp = None
        log.info("task quantart_stage2: model_x2y %.2fM trainable params (%d blocks), D on %d-ch latents, lr %.3g, "
                 "style images %s (%d)", sum(p.numel() for p in self.model.trainable_parameters()) / 1e6,
                 mc.block_num, mc.lossconfig.disc_in_channels, self.lr, self.style.root, len(self.style))

    def _style_root(self) -> Path:
        mc, cfg = self.cfg.model, self.cfg
        if mc.style_root is not None:
            return Path(mc.style_root)
        root = Path(cfg.run_dir) / "data" / "style"
        if not root.is_dir() or not any(root.iterdir()):
            make_paintings(root, num_images=max(mc.synthetic_style_images, cfg.train.batch_size), size=cfg.data.size,
                           seed=cfg.seed + 1)
        mc.style_root = str(root.resolve())
        log.info("model.style_root was unset: using generated flat-colour paintings at %s", mc.style_root)
        cfg_file = Path(cfg.run_dir) / "config.yaml"
        if cfg_file.is_file() and ddp.is_main():  # keep the run's resolved config truthful about the style data used
            from vqfast.train.loading import config_to_yaml
            cfg_file.write_text(config_to_yaml(cfg), encoding="utf-8")
        return root

    # ---- engine interface ------------------------------------------------------------------------------------
    def modules(self) -> dict:
        return {"model": self.model, "discriminator": self.discriminator}

    def optimizers(self) -> dict:
        return {"opt_ae": self.opt_ae, "opt_disc": self.opt_disc}

    def schedulers(self) -> dict:
        return {"sched_ae": self.sched_ae, "sched_disc": self.sched_disc}

    def train(self) -> None:
        self.model.train()  # frozen stage-1 parts stay in eval mode (StyleTransfer.train)
        self.loss.train()

    def wrap_ddp(self, wrap_fn) -> None:
        trained = {id(p) for p in self.model.trainable_parameters()}
        ignore = [n for n, p in self.model.named_parameters() if id(p) not in trained]
        self._transfer = wrap_fn(self.model, method="transfer", ignore=ignore)
        self.discriminator.requires_grad_(True)
        self._disc_ddp = wrap_fn(self.discriminator)

    def _disc_phase(self):
        """The loss calls its ``discriminator``: route it through DDP for the D step only."""
        return swap_attr(self.loss, "discriminator", self._disc_ddp)

    def _autocast(self):
        return autocast_for(self.cfg, self.device)

    def _clip(self, params) -> None:
        clip_grads(params, self.cfg.train.grad_clip)

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        return to_model_input(images, self.cfg.data.mean, self.cfg.data.std, self.device)

    def split_batch(self, batch, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(content, style), each (B, 3, H, W) normalised on the device."""
        if isinstance(batch, dict):
            missing = [k for k in ("content", "style") if k not in batch]
            if missing:
                raise KeyError(f"quantart_stage2 batch lacks {missing}; has {sorted(batch)}")
            return self._input(batch["content"]), self._input(batch["style"])
        if isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(b, torch.Tensor) for b in batch):
            return self._input(batch[0]), self._input(batch[1])
        content = batch.to(self.device, non_blocking=True)  # ((B), 3, H, W) from the engine's image loader
        return content, self._input(self.style.batch(step, content.shape[0]))

    def training_step(self, batch, step: int) -> dict[str, torch.Tensor]:
        """One G step (opt_ae) and one D step (opt_disc); returns detached 0-dim tensors (no host sync)."""
        content, style = self.split_batch(batch, step)  # (B, 3, H, W) each
        accum = self.cfg.train.grad_accum
        pairs = list(zip(content.chunk(accum), style.chunk(accum)))
        logs: dict[str, torch.Tensor] = {}

        def add(part: dict) -> None:
            for k, v in part.items():
                logs[k] = logs.get(k, 0) + v.float() / len(pairs)

        # G phase: only model_x2y gets gradients (frozen stage-1 parts have requires_grad=False, D is toggled off)
        self.discriminator.requires_grad_(False)
        self.opt_ae.zero_grad(set_to_none=True)
        kept = []
        for c, s in pairs:
            with self._autocast():
                quant_x, quant_y, quant_ref, diff, idx_y, _ = self._transfer(c, s)  # (b, D, h, w) ...
                total, aeloss, part = self.loss.generator_loss(diff.float(), quant_ref.float(), quant_y.float(),
                                                               quant_x.float(), step,
                                                               last_layer=self.model.last_layer)
            (total / len(pairs)).backward()
            kept.append((quant_ref.detach(), quant_y.detach()))
            part["train/aeloss"] = aeloss.detach()
            add(part)
            if idx_y is not None:
                codes = idx_y.reshape(-1)  # scatter_add: no host sync (CUDA bincount syncs on min/max)
                self._code_counts.scatter_add_(0, codes, torch.ones_like(codes, dtype=self._code_counts.dtype))
        self._clip(self.model.trainable_parameters())
        self.opt_ae.step()
        self.sched_ae.step()
        self.discriminator.requires_grad_(True)

        # D phase: real = quantised style reference, fake = stylised latent (both detached)
        self.opt_disc.zero_grad(set_to_none=True)
        for (c, s), (quant_ref, quant_y) in zip(pairs, kept):
            if not self.cfg.train.reuse_recon_for_d:
                with torch.no_grad(), self._autocast():
                    quant_y = self.model.transfer(c, s)[1]
            with self._disc_phase():
                with self._autocast():
                    d_loss, part = self.loss.discriminator_loss(quant_ref.float(), quant_y.float(), step)
                (d_loss / len(pairs)).backward()
            part["train/discloss"] = d_loss.detach()
            add(part)
        self._clip(self.discriminator.parameters())
        self.opt_disc.step()
        self.sched_disc.step()
        self._steps_done = step + 1
        return logs

    # ---- samples / metrics -----------------------------------------------------------------------------------
    @torch.no_grad()
    def stylise(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Decoded stylised images (B, 3, H, W) for normalised content/style batches of equal size."""
        was = self.model.training
        self.model.eval()
        try:
            with self._autocast():
                out = self.model(content, style)
        finally:
            self.model.train(was)
        return out.float()

    def _styles_for(self, n: int) -> torch.Tensor:
        idx = torch.arange(n) % self._sample_style.shape[0]
        return self._input(self._sample_style[idx])  # (n, 3, H, W)

    @torch.no_grad()
    def sample_grid(self, content: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H', W'): rows content | style | stylised (fixed style images, cycled over the columns)."""
        style = self._styles_for(content.shape[0])
        out = self.stylise(content, style)
        return rows_grid([content, style, out], self.cfg.data.mean, self.cfg.data.std)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Engine sample hook: stylises the held-out content with the fixed styles, writes the
        content | style | stylised grid to run_dir/samples/stylised_step_*.png and returns the stylised images."""
        style = self._styles_for(x.shape[0])
        out = self.stylise(x, style)
        grid = rows_grid([x, style, out], self.cfg.data.mean, self.cfg.data.std)
        save_png(grid, Path(self.cfg.run_dir) / "samples" / f"stylised_step_{self._steps_done:08d}.png")
        return out

    def codebook_stats(self) -> dict[str, torch.Tensor]:
        counts = ddp.all_reduce_sum_(self._code_counts).float()  # window usage over all ranks
        p = counts / counts.sum().clamp_min(1)
        out = {"codebook/usage": (counts > 0).float().mean(),
               "codebook/window_perplexity": torch.exp(-(p * torch.log(p + 1e-10)).sum())}
        self._code_counts.zero_()
        return out
