"""The latent StarGAN v2 task (SPEC §4.2, seed 003): one D update and one G/E/F update per batch.

Per step (``step`` = global 0-based batch count; epoch and in-epoch batch index follow from it):
1. content, x_ref = latents × latent_scale; z_trg, z₁, z₂ ~ N(0, I).
2. D phase (autocast on CUDA): s_ref = E(x_ref, y_trg), s_lat = F(z_trg, y_trg), fake_ref/lat = G(content, ·);
   real = D(x_ref, y_trg) once; d_loss = ½(L_D(real, D(sg fake_ref)) + L_D(real, D(sg fake_lat))).
3. Lazy R1 when the 1-based batch index is a multiple of r1_interval: fp32, autocast off, on x_ref;
   d_loss += w_r1·r1_interval·r1 (r1 logged raw, 0 on other steps).
4. opt_d step. 5. G phase with D frozen (reusing step-2 forwards, SPEC §7.6, unless disabled):
   g_loss = w_adv·g_adv + w_sty·sty + w_cyc·cyc + w_id·id − λ_ds·ds, ref and latent paths summed.
6. opt_g step (G, E, F groups), EMA update if enabled, LR schedulers step.
Returns detached 0-dim tensors ``d_loss, g_loss, g_adv, sty, ds, cyc, id, r1, lambda_ds`` (no host sync).

DDP (``wrap_ddp``): G, E, F and D each get a DDP wrapper; during the D phase all four run wrapped, during the
G phase G/E/F run wrapped and D (frozen) unwrapped. The per-rank batch is ``train.batch_size / world_size``;
target domains and the reference pool draw from per-rank seeds. ``extra_state`` holds the grad scaler and
the target-domain generator and the reference pool (buffers, RNG, loader position), so a resumed run draws
the same references as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Optional

import torch

from vqfast.data.latents import ReferencePool, build_latent_loader, check_labels, list_shards, make_latent_shards
from vqfast.losses import stargan as L
from vqfast.models.stargan import LatentStarGAN
from vqfast.train.stargan_config import StarGANConfig

log = logging.getLogger("vqfast")

LOG_KEYS = ("d_loss", "g_loss", "g_adv", "sty", "ds", "cyc", "id", "r1", "lambda_ds")


def _lr_lambda(schedule: str, warmup: int, total: int, min_ratio: float):
    def factor(s: int) -> float:
        warm = min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0
        if schedule == "none":
            return warm
        progress = min(max((s - warmup) / max(1, total - warmup), 0.0), 1.0)
        if schedule == "cosine":
            decay = 0.5 * (1 + math.cos(math.pi * progress))
        else:
            decay = 1.0 - progress
        return warm * (min_ratio + (1 - min_ratio) * decay)
    return factor


class StarGANLatentTask:
    name = "stargan_v2_latent"
    progress_keys = ("g_loss", "d_loss")

    def __init__(self, cfg: StarGANConfig, device: torch.device | str = "cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        m, t = cfg.model, cfg.training
        self.nets = LatentStarGAN(
            latent_channels=m.latent_channels, style_dim=m.style_dim, base_dim=m.base_dim,
            n_res_blocks=m.n_res_blocks, num_domains=m.num_domains, d_layers=m.d_layers, latent_dim=m.latent_dim,
            mapping_hidden_dim=m.mapping_hidden_dim, mapping_shared_layers=m.mapping_shared_layers, d_dim=m.d_dim,
            d_spectral_norm=m.d_spectral_norm, ema=m.ema, ema_beta=m.ema_beta, init=m.init,
            backend=cfg.backend).to(self.device)
        n = self.nets
        betas = (float(t.betas[0]), float(t.betas[1]))
        fused = {"fused": True} if t.optim_fused and self.device.type == "cuda" else {}
        self.opt_d = torch.optim.AdamW(n.discriminator.parameters(), lr=t.lr_d, betas=betas,
                                       weight_decay=t.weight_decay, **fused)
        self.opt_g = torch.optim.AdamW([
            {"params": list(n.generator.parameters()), "lr": t.lr_g, "name": "G"},
            {"params": list(n.style_encoder.parameters()), "lr": t.lr_g, "name": "E"},
            {"params": list(n.mapping.parameters()), "lr": t.lr_mapping, "name": "F"},
        ], lr=t.lr_g, betas=betas, weight_decay=t.weight_decay, **fused)
        factor = _lr_lambda(t.lr_schedule, t.warmup_steps, cfg.train.max_steps, t.min_lr_ratio)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, factor)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, factor)
        self.amp_enabled = t.use_amp and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if t.amp_dtype == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_enabled and t.amp_dtype == "fp16" else None
        if t.use_amp and not self.amp_enabled:
            log.info("training.use_amp is ignored on %s: running fp32", self.device.type)
        self.steps_per_epoch: Optional[int] = None
        self.loader = None
        self.pool: Optional[ReferencePool] = None
        self.renderer = None
        self._target_gen = torch.Generator().manual_seed(cfg.seed + 17)
        self._raw_nets: dict = {}
        self._ddp_nets: dict = {}
        self._epoch_hint = 0
        self._zero = torch.zeros((), device=self.device)
        log.info("task stargan_v2_latent: G %.2fM, E %.2fM, F %.2fM, D %.2fM params, %d domains, amp %s",
                 *(sum(p.numel() for p in net.parameters()) / 1e6 for net in
                   (n.generator, n.style_encoder, n.mapping, n.discriminator)), m.num_domains,
                 t.amp_dtype if self.amp_enabled else "off")

    # ---- engine interface ------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        n = self.nets
        out = {"G": n.generator, "E": n.style_encoder, "F": n.mapping, "D": n.discriminator}
        if n.has_ema:
            out.update(G_ema=n.generator_ema, E_ema=n.style_encoder_ema, F_ema=n.mapping_ema)
        return out

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def schedulers(self) -> dict:
        return {"sched_g": self.sched_g, "sched_d": self.sched_d}

    def train(self) -> None:
        self.nets.train()

    # ---- DDP / resume ---------------------------------------------------------------------------
    _NETS = ("generator", "style_encoder", "mapping", "discriminator")

    def wrap_ddp(self, wrap_fn) -> None:
        self._raw_nets = {k: getattr(self.nets, k) for k in self._NETS}
        for net in self._raw_nets.values():
            net.requires_grad_(True)
        self._ddp_nets = {k: wrap_fn(m) for k, m in self._raw_nets.items()}

    @contextlib.contextmanager
    def _phase(self, phase: str):
        """D phase: every net through DDP; G phase: D (frozen) unwrapped."""
        if not self._ddp_nets:
            yield
            return
        for k, wrapped in self._ddp_nets.items():
            if not (phase == "g" and k == "discriminator"):
                setattr(self.nets, k, wrapped)
        try:
            yield
        finally:
            for k, raw in self._raw_nets.items():
                setattr(self.nets, k, raw)

    def extra_state(self) -> dict:
        out = {"target_gen": self._target_gen.get_state()}
        if self.pool is not None:
            out["reference_pool"] = self.pool.state_dict()
        if self.scaler is not None:
            out["scaler"] = self.scaler.state_dict()
        return out

    def load_extra_state(self, state: dict) -> None:
        if "target_gen" in state:
            self._target_gen.set_state(state["target_gen"])
        if self.pool is not None and "reference_pool" in state:
            self.pool.load_state_dict(state["reference_pool"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def codebook_stats(self) -> dict[str, torch.Tensor]:
        return {}

    # ---- data ------------------------------------------------------------------------------------
    def ensure_dataset(self, run_dir: str | Path) -> None:
        """data.root unset → generate synthetic latent shards under run_dir/data/latents and record the path."""
        d = self.cfg.data
        if d.root is not None:
            return
        root = Path(run_dir) / "data" / "latents"
        if not root.exists() or not any(root.glob("*.pt")):
            make_latent_shards(root, num_domains=self.cfg.model.num_domains, per_domain=d.synthetic_per_domain,
                               shards_per_domain=d.synthetic_shards_per_domain,
                               channels=self.cfg.model.latent_channels, resolution=d.resolution, seed=self.cfg.seed,
                               key=d.key, label_key=d.label_key)
        d.root = str(root.resolve())
        log.info("data.root was unset: generated synthetic latent shards (%d domains) at %s",
                 self.cfg.model.num_domains, d.root)

    def build_loader(self, *, rank: int = 0, world_size: int = 1):
        """The content loader (LatentShardLoader when available) and the reference pool; sets steps_per_epoch."""
        d, bs = self.cfg.data, self.cfg.train.batch_size // world_size  # global batch split over ranks
        self._target_gen.manual_seed(self.cfg.seed + 17 + 7919 * rank)
        if d.root is None:
            raise ValueError("data.root is unset: call ensure_dataset(run_dir) first")
        paths = list_shards(d.root)
        check_labels(paths, d.label_key, self.cfg.model.num_domains)  # before any training: name the bad shard
        common = dict(loader=d.loader, key=d.key, label_key=d.label_key, batch_size=bs, rank=rank,
                      world_size=world_size, drop_last=True, num_threads=d.num_threads, prefetch=d.prefetch)
        self.loader = build_latent_loader(paths, shuffle=True, seed=self.cfg.seed, **common)
        ref_loader = build_latent_loader(paths, shuffle=True, seed=self.cfg.seed + 1 + rank, **common)
        self.pool = ReferencePool(ref_loader, self.cfg.model.num_domains, d.reference_pool, key=d.key,
                                  label_key=d.label_key, seed=self.cfg.seed + 7 + rank)
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise ValueError(f"data.root={d.root!r} yields no full batch of train.batch_size={bs}")
        if self.cfg.loss.r1_counter == "epoch" and self.steps_per_epoch < self.cfg.loss.r1_interval:
            log.warning("an epoch has %d batches < loss.r1_interval=%d: with loss.r1_counter='epoch' R1 never runs "
                        "(SPEC §6.12); set loss.r1_counter=global", self.steps_per_epoch, self.cfg.loss.r1_interval)
        return self.loader

    def prepare_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loader dict → {content, y_src, x_ref, y_trg} on the device, latents × latent_scale.

        Target domain uniform among the others; reference drawn from the target domain's pool.
        """
        d, scale = self.cfg.data, self.cfg.training.latent_scale
        content = batch[d.key]                                                    # (B, C, H, W) unscaled
        y_src = batch[d.label_key].long().cpu()                                   # (B,)
        n_dom = self.cfg.model.num_domains
        if self.pool is None:
            raise ValueError("prepare_batch needs the reference pool: call build_loader() first")
        shift = torch.randint(1, n_dom, y_src.shape, generator=self._target_gen)  # (B,)
        y_trg = (y_src + shift) % n_dom                                           # (B,)
        x_ref = self.pool.draw(y_trg)                                             # (B, C, H, W) unscaled
        dev = self.device
        return {"content": content.to(dev, torch.float32, non_blocking=True) * scale,
                "x_ref": x_ref.to(dev, torch.float32, non_blocking=True) * scale,
                "y_src": y_src.to(dev), "y_trg": y_trg.to(dev)}

    # ---- schedule ------------------------------------------------------------------------------------
    def position(self, step: int) -> tuple[int, int]:
        """(epoch 1-based, batch index within the epoch 1-based) of global 0-based ``step``."""
        spe = self.steps_per_epoch
        if not spe:
            return self._epoch_hint + 1, step + 1
        return step // spe + 1, step % spe + 1

    def lambda_ds(self, step: int) -> float:
        lc = self.cfg.loss
        if lc.ds_schedule == "iteration":
            return L.lambda_ds_iteration(step, lc.w_ds, lc.ds_iter)
        return L.lambda_ds_epoch(self.position(step)[0], lc.w_ds, lc.ds_decay_epochs)

    def on_epoch_start(self, epoch: int) -> None:
        """Optional hook (engine's 0-based epoch); only used when no loader was built (steps_per_epoch unknown)."""
        self._epoch_hint = int(epoch)

    def is_r1_step(self, step: int) -> bool:
        lc = self.cfg.loss
        k = self.position(step)[1] if lc.r1_counter == "epoch" else step + 1
        return k % lc.r1_interval == 0

    # ---- step ------------------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_enabled:
            return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _step(self, opt: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(opt)
        else:
            opt.step()

    def _styles_and_fakes(self, content, x_ref, y_trg, z_trg):
        n = self.nets
        s_ref = n.style_encoder(x_ref, y_trg)                                     # (B, S)
        s_lat = n.mapping(z_trg, y_trg)                                           # (B, S)
        fake_ref = n.generator(content, s_ref)                                    # (B, C, H, W)
        fake_lat = n.generator(content, s_lat)                                    # (B, C, H, W)
        return s_ref, s_lat, fake_ref, fake_lat

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """One SPEC §4.2 step on a loader dict (or a ``prepare_batch`` result); ``step`` = batches done so far."""
        if "content" not in batch:
            batch = self.prepare_batch(batch)
        try:
            return self._training_step(batch, step)
        except torch.cuda.OutOfMemoryError:
            if self._ddp_nets:  # ranks would disagree on the step: DDP cannot skip a batch on one rank
                raise
            if not self.cfg.training.skip_oom_batches:
                raise
            self.opt_d.zero_grad(set_to_none=True)
            self.opt_g.zero_grad(set_to_none=True)
            self.nets.discriminator.requires_grad_(True)
            torch.cuda.empty_cache()
            log.warning("out of memory at step %d: batch skipped (training.skip_oom_batches)", step)
            return {}

    def _training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        cfg, lc, n = self.cfg, self.cfg.loss, self.nets
        content, x_ref = batch["content"], batch["x_ref"]                         # (B, C, H, W) scaled
        y_src, y_trg = batch["y_src"], batch["y_trg"]                             # (B,)
        z_trg, z_1, z_2 = torch.randn(3, content.shape[0], cfg.model.latent_dim, device=self.device)  # (B, Z) each
        lam = self.lambda_ds(step)
        reuse = cfg.training.reuse_d_phase_forwards

        # ---- D phase ----
        with self._phase("d"):  # every net through DDP (no-op single-process)
            with self._autocast():
                with contextlib.nullcontext() if reuse else torch.no_grad():
                    s_ref, s_lat, fake_ref, fake_lat = self._styles_and_fakes(content, x_ref, y_trg, z_trg)
                real = n.discriminator(x_ref, y_trg)                                  # (B, 1, h, w)
                d_loss = L.discriminator_loss(real, n.discriminator(fake_ref.detach(), y_trg),
                                              n.discriminator(fake_lat.detach(), y_trg), lc.gan_loss)
            if self.is_r1_step(step):
                with torch.autocast(device_type=self.device.type, enabled=False):
                    x_r1 = x_ref.detach().float().requires_grad_(True)                # (B, C, H, W) fp32
                    r1 = L.r1_penalty(n.discriminator(x_r1, y_trg), x_r1, half=lc.r1_half)
                d_loss = d_loss + L.r1_weight(lc.w_r1, lc.r1_interval) * r1
            else:
                r1 = self._zero
            self.opt_d.zero_grad(set_to_none=True)
            self._backward(d_loss)
            self._step(self.opt_d)

        # ---- G phase (D frozen) ----
        freeze = cfg.training.freeze_d_in_g_step
        if freeze:
            n.discriminator.requires_grad_(False)
        try:
            with self._phase("g"):  # G/E/F through DDP, frozen D unwrapped
                with self._autocast():
                    if not reuse:
                        s_ref, s_lat, fake_ref, fake_lat = self._styles_and_fakes(content, x_ref, y_trg, z_trg)
                    g_adv = (L.generator_adv_loss(n.discriminator(fake_ref, y_trg), lc.gan_loss)
                             + L.generator_adv_loss(n.discriminator(fake_lat, y_trg), lc.gan_loss))
                    sty = (L.style_reconstruction_loss(n.style_encoder(fake_ref, y_trg), s_ref)
                           + L.style_reconstruction_loss(n.style_encoder(fake_lat, y_trg), s_lat))
                    fake_1 = n.generator(content, n.mapping(z_1, y_trg))                # (B, C, H, W)
                    fake_2 = n.generator(content, n.mapping(z_2, y_trg))                # (B, C, H, W)
                    ds = L.diversity_loss(fake_1, fake_2, lc.ds_margin, detach_second=lc.ds_detach_second)
                    s_src = n.style_encoder(content, y_src)                             # (B, S)
                    cyc = (L.cycle_consistency_loss(n.generator(fake_ref, s_src), content)
                           + L.cycle_consistency_loss(n.generator(fake_lat, s_src), content))
                    idt = L.identity_loss(n.generator(content, s_src), content) if lc.w_id > 0 else self._zero
                    g_loss = L.generator_loss(g_adv=g_adv, sty=sty, cyc=cyc, ds=ds, id=idt, w_adv=lc.w_adv,
                                              w_sty=lc.w_sty, w_cyc=lc.w_cyc, w_id=lc.w_id, lambda_ds=lam)
                self.opt_g.zero_grad(set_to_none=True)
                self._backward(g_loss)
                self._step(self.opt_g)
        finally:
            if freeze:
                n.discriminator.requires_grad_(True)
        if self.scaler is not None:
            self.scaler.update()
        n.update_ema()
        self.sched_d.step()
        self.sched_g.step()
        values = (d_loss, g_loss, g_adv, sty, ds, cyc, idt, r1)
        logs = {k: v.detach().float().reshape(()) for k, v in zip(LOG_KEYS, values)}
        logs["lambda_ds"] = torch.full((), lam, device=self.device)
        return logs

    # ---- samples ---------------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, content: torch.Tensor, y_trg: torch.Tensor, *, x_ref: Optional[torch.Tensor] = None,
                  z: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scaled latents (B, C, H, W) → translated (B, C, H, W) with the sampling nets (EMA when enabled);
        style from x_ref (reference-guided) or z (latent-guided)."""
        G, E, F_ = self.nets.sampling_nets()
        s = E(x_ref, y_trg) if x_ref is not None else F_(z, y_trg)               # (B, S)
        return G(content, s).float()

    def sample(self, run_dir: str | Path, step: int, writer=None) -> Path:
        """PNG grid under run_dir/samples: content | per target domain (reference, ref-guided, latent-guided)."""
        from vqfast.train.samples import save_png
        from vqfast.train.stargan_samples import SampleRenderer, tile_rows

        vis = self.cfg.visualization
        if self.pool is None:
            raise ValueError("sample() needs the data: call ensure_dataset(run_dir) and build_loader() first")
        if self.renderer is None:
            self.renderer = SampleRenderer(vis.vae_path, vis.vae_subfolder, self.cfg.training.latent_scale,
                                           self.device)
        heldout = self._heldout()
        content = heldout["content"]                                              # (k, C, H, W) scaled
        k = content.shape[0]
        g = torch.Generator().manual_seed(vis.random_noise_seed)
        was = self.nets.training
        self.nets.eval()
        try:
            rows = [self.renderer(content)]
            for d in range(self.cfg.model.num_domains):
                y = torch.full((k,), d, dtype=torch.long)
                x_ref = self.pool.draw(y, pull=False, generator=g).to(self.device) * self.cfg.training.latent_scale
                y = y.to(self.device)
                z = torch.randn(k, self.cfg.model.latent_dim, generator=g).to(self.device)
                rows += [self.renderer(x_ref), self.renderer(self.translate(content, y, x_ref=x_ref)),
                         self.renderer(self.translate(content, y, z=z))]
        finally:
            self.nets.train(was)
        image = tile_rows(rows)
        path = Path(run_dir) / "samples" / f"step_{step:08d}.png"
        save_png(image, path)
        if writer is not None:
            writer.image(f"samples/content|ref,ref_out,lat_out per domain ({self.renderer.kind})", image, step)
        return path

    def _heldout(self) -> dict[str, torch.Tensor]:
        if not hasattr(self, "_heldout_batch"):
            d = self.cfg.data
            loader = build_latent_loader(list_shards(d.root), loader=d.loader, key=d.key, label_key=d.label_key,
                                         batch_size=self.cfg.visualization.num_samples, shuffle=False,
                                         drop_last=False, prefetch=1)
            batch = next(iter(loader))
            self._heldout_batch = {"content": batch[d.key].to(self.device, torch.float32)
                                   * self.cfg.training.latent_scale,
                                   "y_src": batch[d.label_key].long().to(self.device)}
        return self._heldout_batch
