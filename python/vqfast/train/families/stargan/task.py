"""The latent StarGAN v2 task (seed 003's training step): one D update and one G/E/F update per batch.

Per step (``step`` = global 0-based batch count; epoch and in-epoch batch index follow from it):
1. content, x_ref = latents × latent_scale; z_trg, z₁, z₂ ~ N(0, I).
2. D phase (autocast on CUDA): s_ref = E(x_ref, y_trg), s_lat = F(z_trg, y_trg), fake_ref/lat = G(content, ·);
   real = D(x_ref, y_trg) once; d_loss = ½(L_D(real, D(sg fake_ref)) + L_D(real, D(sg fake_lat))).
3. Lazy R1 when the 1-based batch index is a multiple of r1_interval: fp32, autocast off, on x_ref;
   d_loss += w_r1·r1_interval·r1 (r1 logged raw, 0 on other steps).
4. opt_d step. 5. G phase with D frozen (reusing step-2 forwards, ``training.reuse_d_phase_forwards``):
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
from pathlib import Path
from typing import Optional

import torch

from vqfast.data.latents import (
    DomainFolderLatents,
    ReferencePool,
    build_latent_loader,
    check_labels,
    domain_files,
    list_shards,
    make_latent_shards,
)
from vqfast.errors import CheckpointError, DataError, VQFastError
from vqfast.losses import stargan as losses
from vqfast.models.stargan import ORIGINAL_NETS, LatentStarGAN, convert_original_state_dict
from vqfast.train.engine.optim import LRFactor
from vqfast.train.engine.samples import save_png, tile_rows
from vqfast.train.engine.task import Logs, TaskBase, eval_mode
from vqfast.train.families.stargan.config import StarGANConfig, StarGANModelConfig
from vqfast.train.families.stargan.samples import SampleRenderer

log = logging.getLogger("vqfast")


class _Offset(LRFactor):
    """``LRFactor`` evaluated at ``s + offset`` (a resumed seed-003 run continues its global-step schedule); plain
    attributes only, so ``LambdaLR.state_dict()`` stays loadable with ``weights_only``."""

    def __init__(self, *, offset: int = 0, **kw):
        super().__init__(**kw)
        self.offset = offset

    def __call__(self, s: int) -> float:
        return super().__call__(s + self.offset)


LOG_KEYS = ("d_loss", "g_loss", "g_adv", "sty", "ds", "cyc", "id", "r1", "lambda_ds")


def build_nets(m: StarGANModelConfig, backend: str = "auto", device: torch.device | str = "cpu") -> LatentStarGAN:
    """The four networks (+ EMA copies) of a ``model`` section."""
    return LatentStarGAN(
        latent_channels=m.latent_channels, style_dim=m.style_dim, base_dim=m.base_dim, n_res_blocks=m.n_res_blocks,
        num_domains=m.num_domains, d_layers=m.d_layers, latent_dim=m.latent_dim,
        mapping_hidden_dim=m.mapping_hidden_dim, mapping_shared_layers=m.mapping_shared_layers, d_dim=m.d_dim,
        d_spectral_norm=m.d_spectral_norm, ema=m.ema, ema_beta=m.ema_beta, init=m.init, backend=backend,
        norm=m.norm, num_groups=m.num_groups, style_mid_dim=m.style_mid_dim).to(device)


def load_original_nets(nets: LatentStarGAN, obj, what: str) -> None:
    """G/F/E/D of a seed-003 checkpoint payload into ``nets`` (EMA copies, when kept, start from them)."""
    missing = [k for k in ORIGINAL_NETS if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise CheckpointError(f"{what} is not a seed-003 checkpoint: no {missing} entries "
                              f"(it has: {sorted(obj) if isinstance(obj, dict) else type(obj).__name__})")
    for key, attr in ORIGINAL_NETS.items():
        try:
            getattr(nets, attr).load_state_dict(convert_original_state_dict(key, obj[key]), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{what}: {key!r} does not match the network built from the config: "
                                  f"{str(exc).splitlines()[0][:300]}") from exc
    if nets.has_ema:
        for ema, net in ((nets.generator_ema, nets.generator), (nets.style_encoder_ema, nets.style_encoder),
                         (nets.mapping_ema, nets.mapping)):
            ema.load_state_dict(net.state_dict())


class StarGANLatentTask(TaskBase):
    name = "stargan_v2_latent"
    progress_keys = ("g_loss", "d_loss")
    summary_keys = ("g_loss", "d_loss")

    def __init__(self, cfg: StarGANConfig, device: torch.device | str = "cpu"):
        super().__init__(cfg, torch.device(device))
        t = cfg.training
        self.nets = build_nets(cfg.model, cfg.backend, self.device)
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
        if t.init_from is not None:  # before the schedulers: LambdaLR records the optimizers' initial LRs
            self._load_original(t.init_from)
        factor = _Offset(warmup_steps=t.warmup_steps, schedule=t.lr_schedule, total=t.start_step + cfg.train.max_steps,
                         min_ratio=t.min_lr_ratio, offset=t.start_step)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, factor)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, factor)
        self._cuda_options()
        self.amp_enabled = t.use_amp and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if t.amp_dtype == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_enabled and t.amp_dtype == "fp16" else None
        if t.use_amp and not self.amp_enabled:
            log.info("training.use_amp is ignored on %s: running fp32", self.device.type)
        self.steps_per_epoch: Optional[int] = None
        self.loader = None
        self.folders: Optional[DomainFolderLatents] = None
        self.pool: Optional[ReferencePool] = None
        vis = cfg.visualization  # built now: a vae_path that does not load fails before training
        self.renderer = SampleRenderer(vis.vae_path, vis.vae_subfolder, t.latent_scale, self.device)
        self._target_gen = torch.Generator().manual_seed(cfg.seed + 17)
        self._raw_nets: dict = {}
        self._ddp_nets: dict = {}
        self._zero = torch.zeros((), device=self.device)
        log.info("task stargan_v2_latent: G %.2fM, E %.2fM, F %.2fM, D %.2fM params, domains %s, amp %s",
                 *(sum(p.numel() for p in net.parameters()) / 1e6 for net in
                   (n.generator, n.style_encoder, n.mapping, n.discriminator)), ", ".join(cfg.domain_names()),
                 t.amp_dtype if self.amp_enabled else "off")

    # ---- seed-003 checkpoints and CUDA options -----------------------------------------------------
    def _load_original(self, path: str) -> None:
        """G/F/E/D (+ opt_g/opt_d) of a seed-003 checkpoint (``trainer.py`` ``_save_checkpoint``)."""
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as exc:
            raise CheckpointError(f"training.init_from={path!r} does not exist") from exc
        except Exception as exc:
            raise CheckpointError(f"training.init_from={path!r} cannot be read ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200]})") from exc
        load_original_nets(self.nets, obj, f"training.init_from={path!r}")
        loaded = ["G", "F", "E", "D"]
        if self.cfg.training.init_optimizers:
            for key, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
                if key not in obj:
                    raise CheckpointError(f"training.init_from={path!r} has no {key!r}; set "
                                          "training.init_optimizers: false to load the weights only")
                try:
                    opt.load_state_dict(obj[key])
                except (ValueError, KeyError) as exc:
                    raise CheckpointError(f"training.init_from={path!r}: {key!r} does not match: {exc}") from exc
                loaded.append(key)
        log.info("training.init_from: loaded %s from seed-003 checkpoint %s (epoch %s, global_step %s)",
                 ", ".join(loaded), path, obj.get("epoch"), obj.get("global_step"))

    def _cuda_options(self) -> None:
        t = self.cfg.training
        if self.device.type != "cuda":
            if t.compile:
                log.warning("training.compile applies on CUDA only: running eager on %s", self.device.type)
            return
        torch.backends.cuda.matmul.allow_tf32 = t.allow_tf32
        torch.backends.cudnn.allow_tf32 = t.allow_tf32
        torch.backends.cudnn.benchmark = t.cudnn_benchmark
        if t.compile:
            import torch._inductor.config as inductor_config
            inductor_config.triton.cudagraphs = t.compile_cudagraphs
            for key in t.compile_nets:  # in place: state_dict keys stay unprefixed
                getattr(self.nets, ORIGINAL_NETS[key]).compile(mode=t.compile_mode, dynamic=t.compile_dynamic,
                                                              fullgraph=t.compile_fullgraph)
            log.info("torch.compile: %s (mode %s)", ", ".join(t.compile_nets), t.compile_mode)

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

    def export_state(self) -> dict[str, torch.Tensor]:
        return self.nets.state_dict()

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

    def codebook_stats(self) -> Logs:
        return {}

    # ---- data ------------------------------------------------------------------------------------
    @classmethod
    def prepare_data(cls, cfg: StarGANConfig, run_dir: Path) -> None:
        """data.synthetic with data.root unset: generate latent shards under run_dir/data/latents, record them."""
        d = cfg.data
        if d.layout == "domain_folders":
            try:
                domain_files(d.root, cfg.domain_names())
            except VQFastError as exc:
                raise DataError(f"data.root={d.root!r} (layout domain_folders): {exc}") from exc
            return
        if d.root is not None:
            return
        root = Path(run_dir) / "data" / "latents"
        if not root.exists() or not any(root.glob("*.pt")):
            make_latent_shards(root, num_domains=cfg.model.num_domains, per_domain=d.synthetic_per_domain,
                               shards_per_domain=d.synthetic_shards_per_domain, channels=cfg.model.latent_channels,
                               resolution=d.resolution, seed=cfg.seed, key=d.key, label_key=d.label_key)
        d.root = str(root.resolve())
        log.info("data.synthetic: generated latent shards (%d domains) at %s", cfg.model.num_domains, d.root)

    def build_loader(self, *, batch_size: int, rank: int = 0, world_size: int = 1):
        """The content loader (LatentShardLoader or its Python reference) and the reference pool."""
        d, bs = self.cfg.data, batch_size
        self._target_gen.manual_seed(self.cfg.seed + 17 + 7919 * rank)
        if d.layout == "domain_folders":
            self.folders = self.loader = DomainFolderLatents(
                d.root, self.cfg.domain_names(), batch_size=bs, epoch_size=d.epoch_size, reader=d.loader,
                epoch_base=self.cfg.training.start_epoch, rank=rank, world_size=world_size)
            self.steps_per_epoch = len(self.loader)
            if self.steps_per_epoch == 0:
                raise DataError(f"data.root={d.root!r}: an epoch of {self.loader.epoch_size} samples yields no full "
                                f"batch of {bs}")
            return self.loader
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
            raise DataError(f"data.root={d.root!r} yields no full batch of train.batch_size={self.cfg.train.batch_size}"
                            f" (per rank {bs}); lower the batch size or add shards")
        if self.cfg.loss.r1_counter == "epoch" and self.steps_per_epoch < self.cfg.loss.r1_interval:
            log.warning("an epoch has %d batches < loss.r1_interval=%d: with loss.r1_counter='epoch' R1 never runs "
                        "(as in seed 003); set loss.r1_counter=global", self.steps_per_epoch,
                        self.cfg.loss.r1_interval)
        return self.loader

    def prepare_batch(self, batch: dict[str, torch.Tensor], step: int) -> tuple[dict[str, torch.Tensor], int]:
        """Loader dict → ({content, y_src, x_ref, y_trg} on the device, latents × latent_scale; batch size).

        Target domain uniform among the others; reference drawn from the target domain's pool.
        """
        d, scale = self.cfg.data, self.cfg.training.latent_scale
        dev = self.device
        if self.folders is not None:  # seed 003's sampler already drew source, target domain and reference
            content = batch["content"]
            return {"content": content.to(dev, torch.float32, non_blocking=True) * scale,
                    "x_ref": batch["target_style"].to(dev, torch.float32, non_blocking=True) * scale,
                    "y_src": batch["source_style_id"].long().to(dev),
                    "y_trg": batch["target_style_id"].long().to(dev)}, int(content.shape[0])
        content = batch[d.key]                                                    # (B, C, H, W) unscaled
        y_src = batch[d.label_key].long().cpu()                                   # (B,)
        n_dom = self.cfg.model.num_domains
        shift = torch.randint(1, n_dom, y_src.shape, generator=self._target_gen)  # (B,)
        y_trg = (y_src + shift) % n_dom                                           # (B,)
        x_ref = self.pool.draw(y_trg)                                             # (B, C, H, W) unscaled
        return {"content": content.to(dev, torch.float32, non_blocking=True) * scale,
                "x_ref": x_ref.to(dev, torch.float32, non_blocking=True) * scale,
                "y_src": y_src.to(dev), "y_trg": y_trg.to(dev)}, int(content.shape[0])

    # ---- schedule ------------------------------------------------------------------------------------
    def position(self, step: int) -> tuple[int, int]:
        """(epoch 1-based, batch index within the epoch 1-based) of global 0-based ``step``."""
        spe = self.steps_per_epoch
        return step // spe + self.cfg.training.start_epoch, step % spe + 1

    def lambda_ds(self, step: int) -> float:
        lc = self.cfg.loss
        if lc.ds_schedule == "iteration":
            return losses.lambda_ds_iteration(step, lc.w_ds, lc.ds_iter)
        return losses.lambda_ds_epoch(self.position(step)[0], lc.w_ds, lc.ds_decay_epochs)

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

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> Logs:
        """One step on a ``prepare_batch`` result; ``step`` = batches done so far."""
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
                d_loss = losses.discriminator_loss(real, n.discriminator(fake_ref.detach(), y_trg),
                                              n.discriminator(fake_lat.detach(), y_trg), lc.gan_loss)
            if self.is_r1_step(step):
                with torch.autocast(device_type=self.device.type, enabled=False):
                    x_r1 = x_ref.detach().float().requires_grad_(True)                # (B, C, H, W) fp32
                    r1 = losses.r1_penalty(n.discriminator(x_r1, y_trg), x_r1, half=lc.r1_half)
                d_loss = d_loss + losses.r1_weight(lc.w_r1, lc.r1_interval) * r1
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
                    g_adv = (losses.generator_adv_loss(n.discriminator(fake_ref, y_trg), lc.gan_loss)
                             + losses.generator_adv_loss(n.discriminator(fake_lat, y_trg), lc.gan_loss))
                    sty = (losses.style_reconstruction_loss(n.style_encoder(fake_ref, y_trg), s_ref)
                           + losses.style_reconstruction_loss(n.style_encoder(fake_lat, y_trg), s_lat))
                    fake_1 = n.generator(content, n.mapping(z_1, y_trg))                # (B, C, H, W)
                    fake_2 = n.generator(content, n.mapping(z_2, y_trg))                # (B, C, H, W)
                    ds = losses.diversity_loss(fake_1, fake_2, lc.ds_margin, detach_second=lc.ds_detach_second)
                    s_src = n.style_encoder(content, y_src)                             # (B, S)
                    cyc = (losses.cycle_consistency_loss(n.generator(fake_ref, s_src), content)
                           + losses.cycle_consistency_loss(n.generator(fake_lat, s_src), content))
                    idt = losses.identity_loss(n.generator(content, s_src), content) if lc.w_id > 0 else self._zero
                    g_loss = losses.generator_loss(g_adv=g_adv, sty=sty, cyc=cyc, ds=ds, id=idt, w_adv=lc.w_adv,
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
        logs = {k: v.detach().float().reshape(()) for k, v in zip(LOG_KEYS[:-1], values, strict=True)}
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

    def sample(self, run_dir: Path, step: int, writer) -> dict[str, float]:
        """PNG grid under run_dir/samples: content | per target domain (reference, ref-guided, latent-guided)."""
        vis = self.cfg.visualization
        content = self.heldout()                                                  # (k, C, H, W) scaled
        k = content.shape[0]
        g = torch.Generator().manual_seed(vis.random_noise_seed)
        with eval_mode(self.nets):
            rows = [self.renderer(content)]
            for d in range(self.cfg.model.num_domains):
                y = torch.full((k,), d, dtype=torch.long)
                x_ref = self._references(y, g).to(self.device) * self.cfg.training.latent_scale
                y = y.to(self.device)
                z = torch.randn(k, self.cfg.model.latent_dim, generator=g).to(self.device)
                rows += [self.renderer(x_ref), self.renderer(self.translate(content, y, x_ref=x_ref)),
                         self.renderer(self.translate(content, y, z=z))]
        image = tile_rows(rows)
        save_png(image, Path(run_dir) / "samples" / f"step_{step:08d}.png")
        if writer is not None:
            names = "|".join(self.cfg.domain_names())
            writer.image(f"samples/content|ref,ref_out,lat_out per domain ({names}; {self.renderer.kind})", image,
                         step)
        return {}

    def _references(self, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """(k,) domain ids → (k, C, H, W) unscaled reference latents (pool, or a domain folder's files)."""
        if self.folders is None:
            return self.pool.draw(y, pull=False, generator=g)
        return torch.stack([self.folders.tensors[d][int(torch.randint(len(self.folders.tensors[d]), (), generator=g))]
                            for d in y.tolist()])

    def heldout(self) -> torch.Tensor:
        """The first ``visualization.num_samples`` latents of the data (unshuffled; domain folders: each domain's
        first files in turn, as seed 003's evaluation grid), scaled, on the device."""
        if self._heldout is None and self.folders is not None:
            k, t = self.cfg.visualization.num_samples, self.folders.tensors
            rows = [t[i % len(t)][(i // len(t)) % len(t[i % len(t)])] for i in range(k)]
            self._heldout = torch.stack(rows).to(self.device) * self.cfg.training.latent_scale
        if self._heldout is None:
            d = self.cfg.data
            loader = build_latent_loader(list_shards(d.root), loader=d.loader, key=d.key, label_key=d.label_key,
                                         batch_size=self.cfg.visualization.num_samples, shuffle=False,
                                         drop_last=False, prefetch=1)
            batch = next(iter(loader))
            self._heldout = batch[d.key].to(self.device, torch.float32) * self.cfg.training.latent_scale
        return self._heldout
