"""QuantArt tasks: ``QuantArtStage1Task`` and ``QuantArtStage2Task`` (QuantArt taming/models/vqgan.py and
cond_transformer.py training steps on one engine).

Stage 1 is the VQ task with ``BaseVQGAN``: opt_ae = encoder + quant_conv [+ decoder side unless
``freeze_decoder``] [+ quantize], opt_disc = the image PatchGAN, both Adam(0.5, 0.9), taming's LR rule.
Frozen decoder parameters still receive gradients (the adaptive weight needs ``decoder.conv_out.weight``); they
are cleared after each step so they never accumulate.

Stage 2 per batch (steps = batches): G phase — ``transfer(content, style)``, ``Stage2Loss`` generator terms,
backward, step opt_ae (model_x2y only); D phase — the latent PatchGAN on sg(quant_ref) vs sg(quant_y), step
opt_disc. The D phase reuses the G phase's quant_y (``train.reuse_recon_for_d``, vqfast default); false re-runs
``transfer`` with the updated model_x2y as Lightning does. QuantArt runs the D phase every step (its loss is only
zeroed by disc_start / G_step) and so does this task: Adam and BatchNorm state evolve exactly as there.
Content images come from the engine's loader (``data.root``); style images from an independently shuffled
stream over ``model.style_root`` (batch ``step`` of it, so a resumed run sees the same pairs). Validation runs
the generator loss on the held-out content with the fixed sample styles: ``val/reverse_loss`` (content),
``val/style_loss``, ``val/total_loss``.

DDP (``wrap_ddp``): stage 1 as the VQ task (frozen decoder parameters left out of DDP); stage 2 wraps
``model_x2y``'s ``transfer`` (frozen stage-1 parts are not DDP parameters) and the latent D (D phase only).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from vqfast.data.unpaired import ImageStream, make_paintings
from vqfast.losses.quantart import Stage2Loss
from vqfast.train.engine import optim
from vqfast.train.engine.samples import grid, save_png
from vqfast.train.engine.task import CodeUsage, Logs, TaskBase, eval_mode, swap_attr
from vqfast.train.families.quantart.config import Stage2Config, Stage2LossConfig
from vqfast.train.families.quantart.models import build_stage1_model, build_stage2_model, load_stage2_discriminator
from vqfast.train.families.vq.task import VQTask

log = logging.getLogger("vqfast")
STYLE_SEED_OFFSET = 7919
"""The style stream shuffles independently of the content stream."""


class QuantArtStage1Task(VQTask):
    """VQTask with QuantArt's ``BaseVQGAN`` (same loop; QuantArt's frozen-decoder handling added)."""

    name = "quantart_stage1"

    def build_model(self, init_state=None) -> torch.nn.Module:
        return build_stage1_model(self.cfg.model, self.cfg.backend, init_state)

    def training_step(self, x: torch.Tensor, step: int) -> Logs:
        self.model.decoder.conv_out.weight.requires_grad_(True)  # QuantArt: the adaptive weight needs it
        logs = super().training_step(x, step)
        for p in self.model.frozen_parameters():  # got gradients, never stepped: do not let them accumulate
            p.grad = None
        return logs


def build_stage2_loss(lc: Stage2LossConfig, backend: str = "auto") -> Stage2Loss:
    return Stage2Loss(lc.disc_start, lc.codebook1_weight, lc.codebook2_weight, lc.G_step, lc.disc_num_layers,
                      lc.disc_in_channels, lc.disc_factor, lc.disc_weight, lc.reverse_weight, lc.style_weight,
                      lc.use_actnorm, False, lc.disc_ndf, lc.disc_loss, identity_weight=lc.identity_weight,
                      adaptive_disc_weight=lc.adaptive_disc_weight, backend=backend)


class QuantArtStage2Task(TaskBase):
    name = "quantart_stage2"
    progress_keys = ("train/total_loss", "train/style_loss")
    summary_keys = ("train/total_loss", "train/style_loss", "val/reverse_loss", "val/style_loss")

    @classmethod
    def prepare_data(cls, cfg: Stage2Config, run_dir: Path) -> None:
        """Content images as every image family; style images generated when the config asks for synthetic data."""
        super().prepare_data(cfg, run_dir)
        m = cfg.model
        if m.style_root is None:  # data.synthetic (checked at load time)
            root = Path(run_dir) / "data" / "style"
            if not root.is_dir() or not any(root.iterdir()):
                make_paintings(root, num_images=max(m.synthetic_style_images, cfg.train.batch_size),
                               size=cfg.data.size, seed=cfg.seed + 1)
            m.style_root = str(root.resolve())
            log.info("data.synthetic: generated flat-colour style 'paintings' at %s", m.style_root)

    def __init__(self, cfg: Stage2Config, device: torch.device):
        super().__init__(cfg, device)
        m, t = cfg.model, cfg.train
        self.model = build_stage2_model(m, cfg.backend).to(device)
        self.loss = build_stage2_loss(m.lossconfig, cfg.backend)
        self.discriminator = self.loss.discriminator
        load_stage2_discriminator(self.discriminator, m)  # fine-tuning from a whole stage-2 checkpoint
        self.loss.to(device)
        self.lr = t.generator_lr(t.batch_size)
        self.opt_ae = optim.adam(self.model.trainable_parameters(), self.lr, t.betas, t.weight_decay)
        self.opt_disc = optim.adam(self.discriminator.parameters(), t.disc_lr or self.lr, t.disc_betas,
                                   t.weight_decay)
        self.sched_ae = optim.scheduler(self.opt_ae, t)
        self.sched_disc = optim.scheduler(self.opt_disc, t, decay=t.decay_disc_lr)
        self.style = ImageStream(m.style_root, size=cfg.data.size, seed=cfg.seed + STYLE_SEED_OFFSET)
        sample_source = (ImageStream(m.val_style_root, size=cfg.data.size, seed=cfg.seed + STYLE_SEED_OFFSET)
                         if m.val_style_root is not None else self.style)
        self._sample_style = sample_source.first(m.sample_styles)  # uint8 (S, H, W, 3), fixed for every grid
        self.usage = CodeUsage(m.n_embed, device)
        self._transfer = self.model.transfer  # the DDP wrapper in wrap_ddp
        self._transfer_ddp = self._disc_ddp = None
        log.info("task quantart_stage2: model_x2y %.2fM trainable params (%d blocks), D on %d-ch latents, lr %.3g, "
                 "style images %s (%d)", sum(p.numel() for p in self.model.trainable_parameters()) / 1e6,
                 m.block_num, m.lossconfig.disc_in_channels, self.lr, self.style.root, len(self.style))

    def modules(self) -> dict:
        return {"model": self.model, "discriminator": self.discriminator}

    def train(self) -> None:
        self.model.train()  # frozen stage-1 parts stay in eval mode (StyleTransfer.train)
        self.loss.train()

    def quantizers(self) -> list[torch.nn.Module]:
        # frozen stage-1 codebooks: only the window usage of the stylised codes is reported, unless the output
        # codebook trains too (model.train_quantizers)
        return [self.model.quantize_dec] if self.cfg.model.train_quantizers else []

    def wrap_ddp(self, wrap_fn) -> None:
        trained = {id(p) for p in self.model.trainable_parameters()}
        ignore = [n for n, p in self.model.named_parameters() if id(p) not in trained]
        self._transfer = self._transfer_ddp = wrap_fn(self.model, method="transfer", ignore=ignore)
        self.discriminator.requires_grad_(True)
        self._disc_ddp = wrap_fn(self.discriminator)

    def style_images(self, uint8_images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) → normalised (B, 3, H, W) on the device."""
        return self.to_input(uint8_images.unsqueeze(1))

    def prepare_batch(self, batch, step: int) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
        """(content, style) normalised (B, 3, H, W) each; style = batch ``step`` of the style stream."""
        content, n = super().prepare_batch(batch, step)
        return (content, self.style_images(self.style.batch(step, n))), n

    # ---- step -----------------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], step: int) -> Logs:
        """One G step (opt_ae) and one D step (opt_disc); returns detached 0-dim tensors (no host sync)."""
        content, style = batch  # (B, 3, H, W) each
        accum = self.cfg.train.micro_batches()
        pairs = list(zip(content.chunk(accum), style.chunk(accum), strict=True))
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []

        def generator(k: int, pair):
            c, s = pair
            quant_x, quant_y, quant_ref, diff, idx_y, _ = self._transfer(c, s)  # (b, D, h, w) ...
            total, aeloss, part = self.loss.generator_loss(diff.float(), quant_ref.float(), quant_y.float(),
                                                           quant_x.float(), step, last_layer=self.model.last_layer)
            kept.append((quant_ref.detach(), quant_y.detach()))
            part["train/aeloss"] = aeloss.detach()
            if idx_y is not None:
                self.usage.add(idx_y)
            return total, part

        def discriminator(k: int, pair):
            quant_ref, quant_y = kept[k]
            if not self.cfg.train.reuse_recon_for_d:
                with torch.no_grad():
                    quant_y = self.model.transfer(*pair)[1]
            d_loss, part = self.loss.discriminator_loss(quant_ref.float(), quant_y.float(), step)
            part["train/discloss"] = d_loss.detach()
            return d_loss, part

        # G phase: only model_x2y gets gradients (frozen stage-1 parts have requires_grad=False, D is toggled off)
        self.discriminator.requires_grad_(False)
        logs = self.run_phase(self.opt_ae, self.sched_ae, self.model.trainable_parameters, pairs, generator,
                              self._transfer_ddp)
        self.discriminator.requires_grad_(True)
        # D phase: real = quantised style reference, fake = stylised latent (both detached)
        with swap_attr(self.loss, "discriminator", self._disc_ddp):
            logs.update(self.run_phase(self.opt_disc, self.sched_disc, self.discriminator.parameters, pairs,
                                       discriminator, self._disc_ddp))
        return logs

    # ---- validation and samples -----------------------------------------------------------------------------
    def _styles_for(self, n: int) -> torch.Tensor:
        idx = torch.arange(n) % self._sample_style.shape[0]
        return self.style_images(self._sample_style[idx])  # (n, 3, H, W)

    @torch.no_grad()
    def sample(self, run_dir: Path, step: int, writer) -> dict[str, float]:
        """Held-out content × the fixed sample styles: the generator's loss terms (content = reverse loss,
        style loss, total) and a content | style | stylised PNG grid."""
        x, d = self.heldout(), self.cfg.data
        style = self._styles_for(x.shape[0])
        with eval_mode(self.model), self.autocast():
            quant_x, quant_y, quant_ref, diff, _, _ = self.model.transfer(x, style)
            _, _, part = self.loss.generator_loss(diff.float(), quant_ref.float(), quant_y.float(),
                                                  quant_x.float(), step, split="val")
            out = self.model.decode(quant_y).float()
        image = grid(x, style, out, mean=d.mean, std=d.std)
        save_png(image, Path(run_dir) / "samples" / f"step_{step:08d}.png")
        if writer is not None:
            writer.image("samples/content|style|stylised", image, step)
        keys = ("val/total_loss", "val/reverse_loss", "val/style_loss")
        return dict(zip(keys, torch.stack([part[k].float() for k in keys]).tolist(), strict=True))
