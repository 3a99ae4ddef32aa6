"""The VQ tokenizer task: VQGAN / EMA-VQ / VQ-VAE / VQ-VAE-2 with taming's loss or the plain VQ-VAE loss.

Per batch (steps are batches): one model forward per micro-batch; G phase (opt_ae) with
VQLPIPSWithDiscriminator(optimizer_idx=0) or MSE+vq; D phase (opt_disc) every ``disc_every`` steps on the
detached G-phase reconstruction (``reuse_recon_for_d``; False re-runs the forward like Lightning). D params
are frozen during the G backward (Lightning's toggle). The D phase is skipped while its factor is 0
(step < disc_train_start): taming would run it with a zero loss.

DDP (``wrap_ddp``): the generator forward (``vq_forward``) goes through DDP (gradients all-reduced in the
last micro-batch's backward, ``no_sync`` before); the discriminator has its own DDP wrapper, used in the D
phase only (in the G phase its parameters are frozen and it is called unwrapped). taming's adaptive weight λ
is computed from each rank's own gradients (as taming under Lightning DDP). Checkpoints hold the unwrapped
modules.
"""
from __future__ import annotations

import contextlib
import logging

import torch

from vqfast.losses import MSEVQLoss, VQLPIPSWithDiscriminator
from vqfast.train import distributed as ddp
from vqfast.train import optim
from vqfast.train.config import Config
from vqfast.train.registry import build_model
from vqfast.train.samples import psnr
from vqfast.train.tasks._common import autocast_for, clip_grads, swap_attr

log = logging.getLogger("vqfast")


class VQTask:
    name = "vq"

    def __init__(self, cfg: Config, device: torch.device):
        self.cfg, self.device = cfg, device
        self.model = build_model(cfg.model, cfg.backend).to(device)
        lc = cfg.loss
        self.discriminator = None
        if lc.kind == "vqlpips":
            self.loss = VQLPIPSWithDiscriminator(
                lc.disc_start, lc.codebook_weight, lc.pixelloss_weight, lc.disc_num_layers, lc.disc_in_channels,
                lc.disc_factor, lc.disc_weight, lc.perceptual_weight, lc.use_actnorm, lc.disc_conditional,
                lc.disc_ndf, lc.disc_loss, perceptual_backbone=cfg.perceptual.backbone,
                perceptual_backbone_path=cfg.perceptual.backbone_path,
                nonfinite_d_weight_to_zero=lc.nonfinite_d_weight_to_zero,
                adaptive_weight_before_start=lc.adaptive_weight_before_start,
                disc_train_start=lc.disc_train_start, fast_adaptive_weight=lc.fast_adaptive_weight).to(device)
            self.discriminator = self.loss.discriminator
            if not cfg.train.use_gan:  # seed 002: use_gan=False → disc_factor 0 in G, no D step
                self.loss.disc_factor = 0.0
        else:
            self.loss = MSEVQLoss(lc.vq_weight).to(device)
        self.use_gan = cfg.train.use_gan and self.discriminator is not None
        frames = cfg.data.clip_len if cfg.data.kind == "video" else 1
        self.lr = optim.generator_lr(cfg, cfg.train.batch_size * frames)
        t = cfg.train
        self.opt_ae = optim.adam(self.model.ae_parameters(), self.lr, t.betas, t.weight_decay)
        self.sched_ae = optim.scheduler(self.opt_ae, cfg)
        self.opt_disc = self.sched_disc = None
        if self.use_gan:
            self.opt_disc = optim.adam(self.discriminator.parameters(), t.disc_lr or self.lr, t.disc_betas,
                                       t.weight_decay)
            self.sched_disc = optim.scheduler(self.opt_disc, cfg, decay=t.decay_disc_lr)
        self.vocab = int(self.model.vocab_size)
        self._code_counts = torch.zeros(self.vocab, dtype=torch.long, device=device)
        self._init_ddp_slots()
        log.info("task vq: model %s (%.2fM params), loss %s, lr %.3g, gan %s", type(self.model).__name__,
                 sum(p.numel() for p in self.model.parameters()) / 1e6, lc.kind, self.lr, self.use_gan)

    # ---- engine interface ------------------------------------------------------------------------
    def modules(self) -> dict:
        out = {"model": self.model}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator
        return out

    def optimizers(self) -> dict:
        return {k: v for k, v in (("opt_ae", self.opt_ae), ("opt_disc", self.opt_disc)) if v is not None}

    def schedulers(self) -> dict:
        return {k: v for k, v in (("sched_ae", self.sched_ae), ("sched_disc", self.sched_disc)) if v is not None}

    def train(self) -> None:
        self.model.train()
        self.loss.train()

    # ---- DDP ---------------------------------------------------------------------------------------
    def _init_ddp_slots(self) -> None:
        self._ae = ddp.Direct(self.model, "vq_forward")  # replaced by the DDP wrapper in wrap_ddp
        self._ae_ddp = self._disc_ddp = None

    def wrap_ddp(self, wrap_fn) -> None:
        """Wrap the generator (``vq_forward``) and the discriminator in DDP; only optimised parameters sync."""
        trained = {id(p) for g in self.opt_ae.param_groups for p in g["params"]}
        ignore = [n for n, p in self.model.named_parameters() if id(p) not in trained]
        self._ae = self._ae_ddp = wrap_fn(self.model, method="vq_forward", ignore=ignore)
        if self.use_gan:
            self.discriminator.requires_grad_(True)
            self._disc_ddp = wrap_fn(self.discriminator)

    def _sync(self, wrapper, last: bool):
        """DDP ``no_sync`` for every micro-batch but the last (one all-reduce per step)."""
        if wrapper is None or last:
            return contextlib.nullcontext()
        return wrapper.no_sync()

    def _disc_phase(self):
        """The loss calls its ``discriminator``: route it through DDP for the D step only."""
        return swap_attr(self.loss, "discriminator", self._disc_ddp)

    def _autocast(self):
        return autocast_for(self.cfg, self.device)

    def _clip(self, params) -> None:
        clip_grads(params, self.cfg.train.grad_clip)

    def training_step(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """x: ((B·T), C, H, W) in [-1, 1]. Returns detached 0-dim tensors (no host sync)."""
        accum = self.cfg.train.grad_accum
        chunks = x.chunk(accum)  # micro-batches
        logs: dict[str, torch.Tensor] = {}
        recons = []
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)
        self.opt_ae.zero_grad(set_to_none=True)
        for k, chunk in enumerate(chunks):
            with self._sync(self._ae_ddp, k == len(chunks) - 1):
                with self._autocast():
                    vq_loss, recon, perplexity, indices = self._ae(chunk)  # recon ((b t), C, H, W)
                    if self.discriminator is not None:
                        loss, part = self.loss.generator_loss(vq_loss, chunk, recon.float(), step,
                                                              last_layer=self.model.last_layer)
                    else:
                        loss, part = self.loss(vq_loss, chunk, recon.float())
                (loss / len(chunks)).backward()
            recons.append(recon.detach())
            part["train/perplexity"] = perplexity.detach().float()
            part["train/psnr"] = psnr(chunk, recon.detach().float(), self.cfg.data.mean, self.cfg.data.std)
            for k, v in part.items():
                logs[k] = logs.get(k, 0) + v.float() / len(chunks)
            codes = indices.reshape(-1)  # scatter_add: no host sync (CUDA bincount syncs on min/max)
            self._code_counts.scatter_add_(0, codes, torch.ones_like(codes, dtype=self._code_counts.dtype))
        self._clip(self.model.ae_parameters())
        self.opt_ae.step()
        self.sched_ae.step()
        if self.discriminator is not None:
            self.discriminator.requires_grad_(True)
        if self.use_gan and step % self.cfg.train.disc_every == 0 and step >= self.loss.disc_train_start:
            self.opt_disc.zero_grad(set_to_none=True)
            for k, (chunk, recon) in enumerate(zip(chunks, recons)):
                if not self.cfg.train.reuse_recon_for_d:
                    with torch.no_grad(), self._autocast():
                        recon = self.model.vq_forward(chunk)[1]
                with self._disc_phase(), self._sync(self._disc_ddp, k == len(chunks) - 1):
                    with self._autocast():
                        d_loss, part = self.loss.discriminator_loss(chunk, recon.float(), step)
                    (d_loss / len(chunks)).backward()
                for k, v in part.items():
                    logs[k] = logs.get(k, 0) + v.float() / len(chunks)
            self._clip(self.discriminator.parameters())
            self.opt_disc.step()
            self.sched_disc.step()  # the D schedule counts D steps
        return logs

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        try:
            with self._autocast():
                recon = self.model.vq_forward(x)[1]
        finally:
            self.model.train(was)
        return recon.float()

    def codebook_stats(self) -> dict[str, torch.Tensor]:
        """Window code usage over all ranks (one all-reduce) + the quantizers' (already global) health."""
        counts = ddp.all_reduce_sum_(self._code_counts).float()
        total = counts.sum().clamp_min(1)
        p = counts / total
        out = {"codebook/usage": (counts > 0).float().mean(),
               "codebook/window_perplexity": torch.exp(-(p * torch.log(p + 1e-10)).sum())}
        self._code_counts.zero_()
        quantizers = list(getattr(self.model, "quantizers", []))
        for i, q in enumerate(quantizers):
            fn = getattr(q, "codebook_metrics", None)
            if callable(fn):
                prefix = "codebook/" if len(quantizers) == 1 else f"codebook/level{i}/"
                for k, v in fn().items():
                    if isinstance(v, torch.Tensor) and v.numel() == 1:
                        out[prefix + k] = v.detach().float().reshape(())
        return out
