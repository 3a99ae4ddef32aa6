"""The VQ tokenizer task: VQGAN / EMA-VQ / VQ-VAE / VQ-VAE-2 with taming's loss or the plain VQ-VAE loss.

Per batch (steps are batches): one model forward per micro-batch; G phase (opt_ae) with
VQLPIPSWithDiscriminator(optimizer_idx=0) (taming/modules/losses/vqperceptual.py) or MSE + vq; D phase
(opt_disc) every ``train.disc_every`` steps on the detached G-phase reconstruction (``reuse_recon_for_d``;
false re-runs the forward like taming under Lightning). D params are frozen during the G backward
(Lightning's ``toggle_optimizer``). The D phase is skipped while its factor is 0 (step < disc_train_start):
taming would run it with a zero loss.

DDP (``wrap_ddp``): the generator forward (``vq_forward``) goes through DDP (gradients all-reduced in the
last micro-batch's backward, ``no_sync`` before); the discriminator has its own DDP wrapper, used in the D
phase only (in the G phase its parameters are frozen and it is called unwrapped). taming's adaptive weight λ
is computed from each rank's own gradients (as taming under Lightning DDP). Checkpoints hold the unwrapped
modules.

The model contract (``vqfast.models.vqgan.VQModel``, ``vqvae.VqVae``/``VQVAE2``, QuantArt's ``BaseVQGAN``):
``vq_forward(x) -> (vq_loss, recon, perplexity, indices)``, ``ae_parameters()``, ``last_layer``,
``vocab_size``, ``quantizers`` (each with ``codebook_metrics()``).
"""
from __future__ import annotations

import logging

import torch

from vqfast.losses import MSEVQLoss, PipelineGANLoss, VQLPIPSWithDiscriminator
from vqfast.train.engine import optim
from vqfast.train.engine.samples import psnr
from vqfast.train.engine.task import CodeUsage, Logs, TaskBase, eval_mode, swap_attr
from vqfast.train.families.vq.config import PipelineGANLossConfig, VQConfig, VQLPIPSLossConfig
from vqfast.train.families.vq.models import build_model, load_taming_discriminator, read_taming_checkpoint
from vqfast.train.families.vq.pipeline import link_file_lists, load_pipeline_checkpoint, wandb_sinks

log = logging.getLogger("vqfast")


def build_vqlpips(lc: VQLPIPSLossConfig, perceptual) -> VQLPIPSWithDiscriminator:
    return VQLPIPSWithDiscriminator(
        lc.disc_start, lc.codebook_weight, lc.pixelloss_weight, lc.disc_num_layers, lc.disc_in_channels,
        lc.disc_factor, lc.disc_weight, lc.perceptual_weight, lc.use_actnorm, lc.disc_conditional, lc.disc_ndf,
        lc.disc_loss, perceptual_backbone=perceptual.backbone, perceptual_backbone_path=perceptual.backbone_path,
        nonfinite_d_weight_to_zero=lc.nonfinite_d_weight_to_zero,
        adaptive_weight_before_start=lc.adaptive_weight_before_start, disc_train_start=lc.disc_train_start,
        fast_adaptive_weight=lc.fast_adaptive_weight, perceptual_taming_dropout=perceptual.taming_dropout)


class VQTask(TaskBase):
    name = "vq"

    def __init__(self, cfg: VQConfig, device: torch.device):
        super().__init__(cfg, device)
        ckpt = getattr(cfg.model, "ckpt_path", None)
        init_state = read_taming_checkpoint(ckpt, "model.ckpt_path") if ckpt is not None else None  # read once
        self.model = self.build_model(init_state).to(device)
        lc, t = cfg.loss, cfg.train
        self.discriminator = None
        if isinstance(lc, VQLPIPSLossConfig):
            self.loss = build_vqlpips(lc, cfg.perceptual)
            self.discriminator = self.loss.discriminator
            if init_state is not None:  # taming fine-tuning keeps its trained D (QuantArt stage 1 from ImageNet)
                load_taming_discriminator(self.discriminator, init_state, cfg.model.ignore_keys, "model.ckpt_path")
            self.loss.to(device)
            if not t.use_gan:  # seed 002: use_gan=False → disc_factor 0 in G, no D step
                self.loss.disc_factor = 0.0
        elif isinstance(lc, PipelineGANLossConfig):  # seed 002's LossCalculator (VqVae / VQVAE2, use_gan)
            self.loss = PipelineGANLoss(
                lc.disc_in_channels, lc.disc_factor, lc.disc_start, lc.pixel_loss_factor, lc.perceptual_loss_factor,
                t.max_steps, lc.disc_num_layers, lc.disc_ndf, lc.instance_noise,
                perceptual_backbone=cfg.perceptual.backbone,
                perceptual_backbone_path=cfg.perceptual.backbone_path).to(device)
            self.discriminator = self.loss.discriminator
        else:
            self.loss = MSEVQLoss(lc.vq_weight).to(device)
        del init_state
        self.use_gan = bool(t.use_gan) and self.discriminator is not None
        self.lr = t.generator_lr(cfg.frames_per_step())
        self.opt_ae = optim.adam(self.model.ae_parameters(), self.lr, t.betas, t.weight_decay)
        self.sched_ae = optim.scheduler(self.opt_ae, t)
        self.opt_disc = self.sched_disc = None
        if self.use_gan:
            self.opt_disc = optim.adam(self.discriminator.parameters(), t.disc_lr or self.lr, t.disc_betas,
                                       t.weight_decay)
            self.sched_disc = optim.scheduler(self.opt_disc, t, decay=t.decay_disc_lr)
        # taming remap "extra" adds one code to the returned vocabulary
        self.usage = CodeUsage(max(self.model.vocab_size, *(getattr(q, "re_embed", 0) for q in self.model.quantizers)),
                               device)
        self._ae = self.model.vq_forward  # the DDP wrapper in wrap_ddp
        self._ae_ddp = self._disc_ddp = None
        log.info("task %s: model %s (%.2fM params), loss %s, lr %.3g, gan %s", self.name, type(self.model).__name__,
                 sum(p.numel() for p in self.model.parameters()) / 1e6, lc.kind, self.lr, self.use_gan)
        self._initial_step = 0
        if t.pipeline_checkpoint is not None:
            self._initial_step = load_pipeline_checkpoint(self, t.pipeline_checkpoint, t.pipeline_checkpoint_mode)

    @classmethod
    def prepare_data(cls, cfg, run_dir) -> None:
        link_file_lists(cfg.data, run_dir)  # data.train_files / val_files (seed-002 file lists) → folders
        super().prepare_data(cfg, run_dir)

    def initial_step(self) -> int:
        return self._initial_step

    def metric_sinks(self, run_dir) -> list:
        return wandb_sinks(self.cfg, run_dir)

    def gan_last_layer(self) -> torch.Tensor | None:
        """The parameter the adaptive GAN weight differentiates: taming's decoder last-layer weight, or for the
        pipeline's LossCalculator the last trainable parameter of ``decoder.parameters()``."""
        if isinstance(self.loss, PipelineGANLoss):
            params = [p for p in self.model.decoder.parameters() if p.requires_grad]
            return params[-1] if params else None
        return self.model.last_layer

    def build_model(self, init_state=None) -> torch.nn.Module:
        return build_model(self.cfg.model, self.cfg.backend, init_state)

    def modules(self) -> dict:
        out = {"model": self.model}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator
        return out

    def train(self) -> None:
        self.model.train()
        self.loss.train()  # as taming: the loss is a submodule of the Lightning module

    def wrap_ddp(self, wrap_fn) -> None:
        """Wrap the generator (``vq_forward``) and the discriminator in DDP; only optimised parameters sync."""
        trained = {id(p) for g in self.opt_ae.param_groups for p in g["params"]}
        ignore = [n for n, p in self.model.named_parameters() if id(p) not in trained]
        self._ae = self._ae_ddp = wrap_fn(self.model, method="vq_forward", ignore=ignore)
        if self.use_gan:
            self.discriminator.requires_grad_(True)
            self._disc_ddp = wrap_fn(self.discriminator)

    # ---- step -----------------------------------------------------------------------------------------------
    def training_step(self, x: torch.Tensor, step: int) -> Logs:
        """x: ((B·T), C, H, W) in [-1, 1]. Returns detached 0-dim tensors (no host sync)."""
        chunks = list(x.chunk(self.cfg.train.micro_batches()))  # micro-batches
        recons: list[torch.Tensor] = []
        mean, std = self.cfg.data.mean, self.cfg.data.std

        def generator(k: int, chunk: torch.Tensor):
            vq_loss, recon, perplexity, indices = self._ae(chunk)  # recon ((b t), C, H, W)
            if self.discriminator is not None:
                loss, part = self.loss.generator_loss(vq_loss, chunk, recon.float(), step,
                                                      last_layer=self.gan_last_layer())
            else:
                loss, part = self.loss(vq_loss, chunk, recon.float())
            recons.append(recon.detach())
            part["train/perplexity"] = perplexity.detach()
            part["train/psnr"] = psnr(chunk, recon.detach().float(), mean, std)
            self.usage.add(indices)
            return loss, part

        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)
        logs = self.run_phase(self.opt_ae, self.sched_ae, self.model.ae_parameters, chunks, generator, self._ae_ddp)
        if self.discriminator is not None:
            self.discriminator.requires_grad_(True)
        logs["train/aeloss"] = logs["train/total_loss"]  # taming VQModel.training_step's names
        if self.use_gan and step % self.cfg.train.disc_every == 0 and step >= self.loss.disc_train_start:
            logs.update(self.discriminator_step(chunks, recons, step))
            logs["train/discloss"] = logs["train/disc_loss"]
        return logs

    def discriminator_step(self, chunks: list, recons: list, step: int) -> Logs:
        def discriminator(k: int, chunk: torch.Tensor):
            recon = recons[k]
            if not self.cfg.train.reuse_recon_for_d:
                with torch.no_grad():
                    recon = self.model.vq_forward(chunk)[1]
            return self.loss.discriminator_loss(chunk, recon.float(), step)

        with swap_attr(self.loss, "discriminator", self._disc_ddp):  # D through DDP in the D phase only
            return self.run_phase(self.opt_disc, self.sched_disc, self.discriminator.parameters, chunks,
                                  discriminator, self._disc_ddp)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_forward(lambda: self.model.vq_forward(x)[1], self.model)

    def validation_losses(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, Logs]:
        """taming ``VQModel.validation_step`` on the held-out batch: the loss's generator and discriminator
        terms with split "val" (``val/rec_loss`` = mean |x - x̂| + w_p·LPIPS, ``val/aeloss``, ``val/discloss``,
        ...), model and loss in eval mode, no graph (so, as in taming, ``val/d_weight`` is 0)."""
        with eval_mode(self.model, self.loss), torch.no_grad(), self.autocast():
            vq_loss, recon, _, _ = self.model.vq_forward(x)
            recon = recon.float()
            if self.discriminator is None:
                loss, logs = self.loss(vq_loss, x, recon, split="val")
            else:
                loss, logs = self.loss.generator_loss(vq_loss, x, recon, step, last_layer=None, split="val")
                d_loss, d_logs = self.loss.discriminator_loss(x, recon, step, split="val")
                logs.update(d_logs)
                logs["val/discloss"] = d_loss
        logs["val/aeloss"] = loss
        return recon, logs

    def sample(self, run_dir, step: int, writer) -> dict[str, float]:
        """Held-out reconstructions: taming's validation scalars, ``val/psnr`` and an input | reconstruction grid."""
        x, d = self.heldout(), self.cfg.data
        recon, logs = self.validation_losses(x, step)
        logs["val/psnr"] = psnr(x, recon, d.mean, d.std)
        self.save_grid(run_dir, step, writer, x, recon)
        keys = list(logs)
        out = dict(zip(keys, torch.stack([logs[k].detach().float().reshape(()) for k in keys]).tolist(), strict=True))
        out.update(self.eval_scalars(step))  # the eval: section (vqfast.eval), when this is one of its steps
        return out
