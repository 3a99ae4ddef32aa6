"""The single training loop every family uses: data → task.training_step → logs, samples, checkpoints.

Steps are counted in batches. ``--resume`` restores modules (incl. EMA and codebook-health buffers),
optimizers, schedulers, every rank's RNG states, task state (grad scaler, ...) and the position in the data
(epoch and batch offset follow from the step), so a resumed run continues exactly. ``--resume RUN_DIR`` takes
the newest checkpoint that loads and warns about each unreadable one it passes over.

Distributed (``torchrun``, see ``vqfast.train.distributed``): ``train.batch_size`` is the global batch, each
rank loads ``batch_size / world_size`` of it (its own shard of the epoch), the task wraps its trainable modules
in DDP (``task.wrap_ddp``); rank 0 alone writes logs, metrics, samples and checkpoints, logged scalars are
averaged over ranks at log time, and ranks meet at a barrier after each checkpoint.

Robustness: steps with non-finite gradients are skipped (``vqfast.train.guard``), and the run stops after
``train.max_bad_steps`` consecutive ones; SIGTERM/SIGINT finish the current step, write ``last.pt`` and
return normally (a second SIGINT interrupts at once).
"""
from __future__ import annotations

import logging
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from vqfast.train import checkpoint as ckpt
from vqfast.train import distributed as ddp
from vqfast.train.config import Config
from vqfast.train.data import (build_loader, ensure_dataset, frames_to_input_fn, heldout_batch, iterate_from,
                               skipped_items)
from vqfast.train.errors import ConfigError
from vqfast.train.guard import NonFiniteError, StepGuard, describe, nonfinite_terms
from vqfast.train.loading import config_to_yaml
from vqfast.train.metrics import MetricsWriter, RunningMeans
from vqfast.train.registry import resolve_family
from vqfast.train.samples import grid, psnr, save_png
from vqfast.train.tasks import build_task

log = logging.getLogger("vqfast")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _attach_file_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


class _StopRequest:
    """SIGTERM/SIGINT → finish the current step, checkpoint, return. A second SIGINT interrupts at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("received %s: finishing the current step, then writing a checkpoint and exiting",
                    signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class Trainer:
    def __init__(self, cfg: Config, resume: str | None = None):
        self.cfg = cfg
        t = cfg.train
        self.dist, self.device = ddp.init_from_env(t.device)
        self.is_main = self.dist.is_main
        try:
            self._setup(resume)
        except BaseException:
            ddp.destroy(self.dist)
            raise

    def _setup(self, resume: str | None) -> None:
        cfg, t, world = self.cfg, self.cfg.train, self.dist.world_size
        accum = getattr(t, "grad_accum", 1)
        if t.batch_size % (world * accum):
            raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by world_size={world} x "
                              f"train.grad_accum={accum}: train.batch_size is the global batch, split evenly "
                              "over ranks and micro-batches")
        self.local_batch = t.batch_size // world
        self.max_bad_steps = int(getattr(t, "max_bad_steps", 0) or 0)
        self.run_dir = Path(cfg.run_dir)
        self._handler = None
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._handler = _attach_file_log(self.run_dir)
        self.resume_obj = self._load_resume(resume) if resume else None  # fail early on a bad checkpoint
        family = resolve_family(cfg.model.type)
        # Families that own their data (latent shards) generate and load it in their task; the others
        # get the engine's image/video data, generated before the task is built (it may read data.root).
        # Rank 0 generates data and builds first (it may write files), the other ranks follow.
        self.owns_data = family.owns_data
        self._rank0_first(lambda: None if self.owns_data else ensure_dataset(cfg, self.run_dir))
        seed_everything(cfg.seed)  # identical initial weights on every rank
        self.task = self._rank0_first(lambda: build_task(family.task, cfg, self.device))
        if self.owns_data:
            self._rank0_first(lambda: self.task.ensure_dataset(self.run_dir))
        if self.is_main:
            (self.run_dir / "config.yaml").write_text(config_to_yaml(cfg), encoding="utf-8")
        rank = self.dist.rank
        if self.owns_data:
            self.loader = self.task.build_loader(rank=rank, world_size=world)
        else:
            self.loader = build_loader(cfg, cfg.data.root, shuffle=True, seed=cfg.seed,
                                       batch_size=self.local_batch, rank=rank, world_size=world)
        if len(self.loader) == 0:
            raise ValueError(f"data.root={cfg.data.root!r} yields no full batch of train.batch_size="
                             f"{t.batch_size} (per rank {self.local_batch}); lower the batch size or add data")
        self.to_input = frames_to_input_fn()
        self.heldout = None
        if self.is_main and not hasattr(self.task, "sample"):
            self.heldout = self._input(heldout_batch(cfg))
        if world > 1:  # data-dependent randomness (dead-code restarts, noise) differs per rank
            seed_everything(cfg.seed + 1_000_003 * rank)
        self.step = 0
        self.bad_steps_total = 0
        if self.resume_obj is not None:
            ckpt.restore(self.resume_obj, self.task.modules(), self.task.optimizers(), self.task.schedulers())
            if hasattr(self.task, "load_extra_state") and "task_state" in self.resume_obj:
                self.task.load_extra_state(self.resume_obj["task_state"])
            self.step = int(self.resume_obj["step"])
            self.bad_steps_total = int(self.resume_obj.get("bad_steps_total", 0))
            ckpt.set_rng_state(self._rng_for_rank(self.resume_obj))
            log.info("resumed from %s at step %d", self.resume_obj["path"], self.step)
        self.guard = StepGuard(self.task.optimizers(), self.task.schedulers(), self.task.modules())
        if self.dist.active:
            if not hasattr(self.task, "wrap_ddp"):
                raise ConfigError(f"task {self.task.name!r} has no wrap_ddp hook: it cannot run under torchrun")
            self.task.wrap_ddp(ddp.ddp_wrapper(self.device))
            log.info("DDP: %d ranks, global batch %d = %d per rank", world, t.batch_size, self.local_batch)

    def _rank0_first(self, fn):
        """Run ``fn`` on rank 0, then (after a barrier) on the other ranks."""
        out = fn() if self.is_main else None
        ddp.barrier()
        if not self.is_main:
            out = fn()
        return out

    def _load_resume(self, resume: str) -> dict:
        # rank 0 picks the checkpoint (fallback from a run directory); every rank loads that same file
        chosen = None
        err: Exception | None = None
        if self.is_main:
            try:
                obj = ckpt.load_latest(resume)
                chosen = obj["path"]
            except ckpt.CheckpointError as exc:
                err = exc
        chosen = ddp.broadcast_object(chosen if err is None else None)
        if err is not None:
            raise err
        if chosen is None:
            raise ckpt.CheckpointError(f"rank 0 could not load a checkpoint from {resume!r}")
        return obj if self.is_main else ckpt.load(chosen)

    def _rng_for_rank(self, obj: dict) -> dict:
        per_rank = obj.get("rng_per_rank")
        if per_rank and len(per_rank) == self.dist.world_size:
            return per_rank[self.dist.rank]
        if self.dist.active:
            log.warning("checkpoint %s has RNG states for %s rank(s), this run has %d: ranks restart their "
                        "random streams from rank 0's state", obj.get("path"),
                        len(per_rank) if per_rank else 1, self.dist.world_size)
        return obj["rng"]

    def _input(self, frames: torch.Tensor) -> torch.Tensor:
        return self.to_input(frames, self.cfg.data.mean, self.cfg.data.std).to(self.device, non_blocking=True)

    # ---- outputs -----------------------------------------------------------------------------------
    def _gather_rng(self) -> list | None:
        state = ckpt.rng_state()
        if not self.dist.active:
            return [state]
        import torch.distributed as dist
        out = [None] * self.dist.world_size
        dist.all_gather_object(out, state)  # every rank takes part; rank 0 writes
        return out

    def save_checkpoint(self, periodic: bool) -> None:
        """Rank 0 writes ``last.pt`` (and a periodic copy); every rank must call this (barrier inside)."""
        rngs = self._gather_rng()
        if self.is_main:
            payload = {"step": self.step, "epoch": self.step // len(self.loader), "task": self.task.name,
                       "modules": {k: m.state_dict() for k, m in self.task.modules().items()},
                       "optimizers": {k: o.state_dict() for k, o in self.task.optimizers().items()},
                       "schedulers": {k: s.state_dict() for k, s in self.task.schedulers().items()},
                       "rng": rngs[0], "rng_per_rank": rngs, "world_size": self.dist.world_size,
                       "bad_steps_total": self.bad_steps_total, "config": config_to_yaml(self.cfg)}
            if hasattr(self.task, "extra_state"):
                payload["task_state"] = self.task.extra_state()
            d = self.run_dir / "checkpoints"
            ckpt.save(d / "last.pt", payload)
            if periodic:
                ckpt.link_or_copy(d / "last.pt", d / f"step_{self.step:08d}.pt")
                ckpt.prune(d, self.cfg.train.keep_checkpoints)
        ddp.barrier()

    def sample(self, writer: MetricsWriter) -> dict[str, float]:
        """Samples must not perturb training: the global RNG streams are forked around them, so a run that
        sampled at its last step and was resumed matches one that never stopped."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return self._sample(writer)

    def _sample(self, writer: MetricsWriter) -> dict[str, float]:
        if self.heldout is None:  # the task draws its own samples (latent grids, content|style|output)
            out = self.task.sample(self.run_dir, self.step, writer)
            return out if isinstance(out, dict) else {}
        x = self.heldout
        recon = self.task.reconstruct(x)
        value = psnr(x, recon, self.cfg.data.mean, self.cfg.data.std)
        l1 = (x - recon).abs().mean()
        image = grid(x[:8], recon[:8], self.cfg.data.mean, self.cfg.data.std)
        save_png(image, self.run_dir / "samples" / f"step_{self.step:08d}.png")
        writer.image("samples/input|reconstruction", image, self.step)
        vals = torch.stack([value, l1]).tolist()
        return {"val/psnr": vals[0], "val/rec_loss": vals[1]}

    # ---- loop --------------------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        try:
            with _StopRequest() as stop:
                out = self._fit(stop)
            if self.dist.active:
                self._drop_ddp()
                ddp.barrier()  # no rank tears the group down while another still uses it
            return out
        finally:
            if self._handler is not None:
                log.removeHandler(self._handler)
                self._handler.close()
            if self.dist.active:
                self._drop_ddp()
            ddp.destroy(self.dist)

    def _drop_ddp(self) -> None:
        """Free the task's DDP wrappers (and their reducers) before the process group goes: left to the
        interpreter's exit they can be destroyed after it, which aborts the process ('terminate called
        without an active exception')."""
        import gc

        ddp_cls = torch.nn.parallel.DistributedDataParallel
        for name, value in list(vars(self.task).items()):
            if isinstance(value, ddp_cls):
                setattr(self.task, name, None)
            elif isinstance(value, dict) and any(isinstance(v, ddp_cls) for v in value.values()):
                setattr(self.task, name, {})
        gc.collect()

    def _fit(self, stop: _StopRequest) -> dict[str, float]:
        cfg, t = self.cfg, self.cfg.train
        writer = MetricsWriter(self.run_dir) if self.is_main else None
        window, epoch_means = RunningMeans(), RunningMeans()
        steps_per_epoch = len(self.loader)
        epoch, offset = divmod(self.step, steps_per_epoch)
        batches = iterate_from(self.loader, epoch, offset)
        progress = self._progress() if self.is_main else None
        last: dict[str, float] = {}
        self.task.train()
        t0, frames_seen, window_steps = time.perf_counter(), 0, 0
        bad_in_a_row, window_skipped = 0, 0
        stopped = False
        try:
            while self.step < t.max_steps:
                try:
                    batch = next(batches)
                except StopIteration:
                    self._end_epoch(writer, epoch_means, epoch)
                    epoch += 1
                    batches = iterate_from(self.loader, epoch, 0)
                    continue
                batch, n_samples = self._prepare(batch)
                self.guard.begin()
                logs = self.task.training_step(batch, self.step)
                if self.guard.end():
                    bad_in_a_row += 1
                    window_skipped += 1
                    self.bad_steps_total += 1
                    message = describe(self.step, self.guard.bad_optimizers, nonfinite_terms(logs))
                    log.warning("%s [%d consecutive]", message, bad_in_a_row)
                    if self.max_bad_steps and bad_in_a_row >= self.max_bad_steps:
                        raise NonFiniteError(
                            f"stopping: {bad_in_a_row} consecutive steps with non-finite losses or gradients "
                            f"(train.max_bad_steps={self.max_bad_steps}); last: {message}. No weight was updated "
                            f"by these steps; lower the learning rate, enable train.grad_clip, check the data, "
                            f"or resume from {self.run_dir / 'checkpoints'}")
                else:
                    bad_in_a_row = 0
                    window.add(logs)
                    epoch_means.add(logs)
                self.step += 1
                frames_seen += n_samples
                window_steps += 1
                if self.step % t.log_every == 0 or self.step == t.max_steps:
                    elapsed = max(time.perf_counter() - t0, 1e-9)
                    record = {"step": self.step, "epoch": epoch}
                    values = window.pop()
                    codebook = RunningMeans()
                    codebook.add(self.task.codebook_stats())
                    values.update(codebook.pop())
                    values["train/skipped_steps"] = float(window_skipped)
                    values["data/skipped_items"] = float(skipped_items(self.loader))
                    values = ddp.mean_over_ranks(values, self.device)
                    if self.dist.active:  # counts: totals over ranks, not means
                        for k in ("data/skipped_items",):
                            values[k] *= self.dist.world_size
                    record.update(values)
                    record["train/skipped_steps_total"] = self.bad_steps_total
                    for name, opt in self.task.optimizers().items():
                        record["lr" if name == "opt_ae" else f"lr_{name.removeprefix('opt_')}"] = \
                            opt.param_groups[0]["lr"]
                    record["samples_per_s"] = frames_seen * self.dist.world_size / elapsed
                    record["steps_per_s"] = window_steps / elapsed
                    if writer is not None:
                        writer.write(record)
                        self._report(progress, record)
                    last = record
                    t0, frames_seen, window_steps, window_skipped = time.perf_counter(), 0, 0, 0
                if self.is_main and (self.step % t.sample_every == 0 or self.step == t.max_steps):
                    val = self.sample(writer)
                    writer.write({"step": self.step, "epoch": epoch, **val})
                    last.update(val)
                if self.step % t.ckpt_every == 0:
                    self.save_checkpoint(periodic=True)
                if progress is not None:
                    progress.update(1)
                if ddp.any_over_ranks(stop.signum is not None, self.device):
                    stopped = True
                    break
            if self.step > 0:
                if self.step % t.ckpt_every:  # else last.pt was just written at this step
                    self.save_checkpoint(periodic=False)
                if epoch_means.count:
                    self._end_epoch(writer, epoch_means, epoch, partial=True)
            if stopped:
                log.warning("stopped by signal at step %d: checkpoint written to %s; continue with --resume %s",
                            self.step, self.run_dir / "checkpoints" / "last.pt", self.run_dir)
            elif self.is_main and t.export_safetensors and getattr(self.task, "model", None) is not None:
                from vqfast.train.export import save_safetensors
                save_safetensors(self.task.model.state_dict(), self.run_dir / "model.safetensors",
                                 {"step": self.step, "model_type": cfg.model.type})
        finally:
            if writer is not None:
                writer.close()
            if progress is not None:
                progress.close()
        last["stopped_by_signal"] = stopped
        return last

    def _prepare(self, batch):
        """Loader batch -> (what training_step takes, number of samples in it)."""
        if self.owns_data:
            if isinstance(batch, dict):
                first = next(iter(batch.values()))
                return batch, int(first.shape[0]) if hasattr(first, "shape") else 1
            return batch, len(batch[0]) if isinstance(batch, (tuple, list)) else 1
        frames, paths = batch
        x = self._input(frames)  # ((B·T), C, H, W)
        if getattr(self.task, "wants_paths", False):
            return {"images": x, "paths": list(paths)}, x.shape[0]
        return x, x.shape[0]

    def _end_epoch(self, writer, means: RunningMeans, epoch: int, partial: bool = False) -> None:
        steps = means.count
        record = {"epoch": epoch, "step": self.step, "steps": steps, "partial": partial}
        record.update(ddp.mean_over_ranks(means.pop(), self.device))
        if writer is not None:
            writer.write(record, epoch_file=True)

    def _progress(self):
        if not self.cfg.train.progress or not sys.stderr.isatty():
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=self.cfg.train.max_steps, initial=self.step, desc="train", dynamic_ncols=True)

    def _report(self, progress, record: dict) -> None:
        k_loss, k_rec = getattr(self.task, "progress_keys", ("train/total_loss", "train/rec_loss"))
        loss = record.get(k_loss, float("nan"))
        rec = record.get(k_rec, float("nan"))
        if progress is not None:
            progress.set_postfix(loss=f"{loss:.4f}", rec=f"{rec:.4f}", sps=f"{record['samples_per_s']:.1f}")
        else:
            log.info("step %d/%d total_loss %.4f rec_loss %.4f | %.1f samples/s", self.step,
                     self.cfg.train.max_steps, loss, rec, record["samples_per_s"])


def train(cfg: Config, resume: str | None = None) -> dict[str, float]:
    """Run (or resume) training for ``cfg``; returns the last logged metrics (on every rank)."""
    return Trainer(cfg, resume).fit()
