"""The one training loop every family uses: data → ``task.training_step`` → logs, samples, checkpoints.

It knows no family: it drives any ``Task`` (``vqfast.train.engine.task``) and reads only the keys every
config has (``run_dir``, ``seed``, ``train.*`` of ``TrainSection``).

Steps are counted in batches. ``--resume`` restores modules (incl. EMA and codebook-health buffers),
optimizers, schedulers, every rank's RNG states, task state (grad scaler, ...) and the position in the data
(epoch and batch offset follow from the step), so a resumed run continues exactly. ``--resume RUN_DIR`` takes
the newest checkpoint that loads and warns about each unreadable one it passes over. A run holds an exclusive
lock on its run directory, and a fresh run never overwrites another run's results (``engine.rundir``).

Distributed (``torchrun``, see ``engine.distributed``): ``train.batch_size`` is the global batch, each rank
loads ``batch_size / world_size`` of it (its own shard of the epoch), the task wraps its trainable modules
in DDP (``task.wrap_ddp``); rank 0 alone writes logs, metrics, samples and checkpoints, logged scalars are
averaged over ranks at log time, and ranks meet at a barrier after each checkpoint.

Robustness: steps with non-finite gradients are skipped (``engine.guard``), and the run stops after
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

from vqfast.errors import CheckpointError, ConfigError, DataError, NonFiniteError, RunDirError
from vqfast.train.config.sources import to_yaml
from vqfast.train.engine import checkpoint as ckpt
from vqfast.train.engine import distributed as ddp
from vqfast.train.engine import rundir
from vqfast.train.engine.data import iterate_from
from vqfast.train.engine.guard import StepGuard, describe, nonfinite_terms
from vqfast.train.engine.metrics import MetricsWriter, RunningMeans

log = logging.getLogger("vqfast")


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
    """``Trainer(cfg, task_cls, resume).fit()``; ``task_cls`` comes from the family registry."""

    def __init__(self, cfg, task_cls, resume: str | None = None):
        self.cfg, self.task_cls = cfg, task_cls
        self.dist, self.device = ddp.init_from_env(cfg.train.device)
        self.is_main = self.dist.is_main
        self._handler = self._lock = None
        try:
            self._setup(resume)
        except BaseException:
            self._release()
            ddp.destroy(self.dist)
            raise

    def _setup(self, resume: str | None) -> None:
        cfg, t, world = self.cfg, self.cfg.train, self.dist.world_size
        split = world * t.micro_batches()
        if t.batch_size % split:
            raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by world_size={world} x "
                              f"micro-batches={t.micro_batches()}: train.batch_size is the global batch, split "
                              "evenly over ranks and micro-batches")
        self.local_batch = t.batch_size // world
        self.run_dir = Path(cfg.run_dir)
        self._claim_run_dir(resume is not None)
        if self.is_main:
            self._handler = _attach_file_log(self.run_dir)
        self.resume_obj = self._load_resume(resume) if resume else None  # fail early on a bad checkpoint
        # rank 0 first: it may write files (generated data) the other ranks then read
        self._rank0_first(lambda: self.task_cls.prepare_data(cfg, self.run_dir))
        if self.is_main:
            (self.run_dir / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
        seed_everything(cfg.seed)  # identical initial weights on every rank
        self.task = self._rank0_first(lambda: self.task_cls(cfg, self.device))
        rank = self.dist.rank
        self.loader = self.task.build_loader(batch_size=self.local_batch, rank=rank, world_size=world)
        if len(self.loader) == 0:
            raise DataError(f"data.root={getattr(cfg.data, 'root', None)!r} yields no full batch of "
                            f"train.batch_size={t.batch_size} (per rank {self.local_batch}); lower the batch size "
                            "or add data")
        if world > 1:  # data-dependent randomness (dead-code restarts, noise) differs per rank
            seed_everything(cfg.seed + 1_000_003 * rank)
        self.step = self.task.initial_step()  # 0, or where a foreign checkpoint the config names left off
        self.bad_steps_total = 0
        if self.resume_obj is not None:
            self._restore(self.resume_obj)
        self.guard = StepGuard(self.task.optimizers(), self.task.schedulers(), self.task.modules())
        if self.dist.active:
            self.task.wrap_ddp(ddp.ddp_wrapper(self.device))
            log.info("DDP: %d ranks, global batch %d = %d per rank", world, t.batch_size, self.local_batch)

    def _claim_run_dir(self, resuming: bool) -> None:
        """Rank 0 locks the run directory (and checks for a previous run); every rank learns the outcome."""
        error = None
        if self.is_main:
            try:
                self._lock = rundir.claim(self.run_dir, resume=resuming, overwrite=self.cfg.train.overwrite)
            except RunDirError as exc:
                error = str(exc)
        error = ddp.broadcast_object(error)
        if error is not None:
            raise RunDirError(error)

    def _restore(self, obj: dict) -> None:
        ckpt.restore(obj, self.task.modules(), self.task.optimizers(), self.task.schedulers())
        self.task.load_extra_state(obj.get("task_state", {}))
        self.step = int(obj["step"])
        self.bad_steps_total = int(obj.get("bad_steps_total", 0))
        ckpt.set_rng_state(self._rng_for_rank(obj))
        log.info("resumed from %s at step %d", obj["path"], self.step)

    def _rank0_first(self, fn):
        """Run ``fn`` on rank 0, then (after a barrier) on the other ranks."""
        out = fn() if self.is_main else None
        ddp.barrier()
        if not self.is_main:
            out = fn()
        return out

    def _load_resume(self, resume: str) -> dict:
        # rank 0 picks the checkpoint (fallback from a run directory); every rank loads that same file
        chosen = obj = None
        err: Exception | None = None
        if self.is_main:
            try:
                obj = ckpt.load_latest(resume)
                chosen = obj["path"]
            except CheckpointError as exc:
                err = exc
        chosen = ddp.broadcast_object(chosen if err is None else None)
        if err is not None:
            raise err
        if chosen is None:
            raise CheckpointError(f"rank 0 could not load a checkpoint from {resume!r}")
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

    # ---- outputs -----------------------------------------------------------------------------------
    def _gather_rng(self) -> list:
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
                       "task_state": self.task.extra_state(), "rng": rngs[0], "rng_per_rank": rngs,
                       "world_size": self.dist.world_size, "bad_steps_total": self.bad_steps_total,
                       "config": to_yaml(self.cfg)}
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
            return self.task.sample(self.run_dir, self.step, writer)

    def summary(self, last: dict) -> dict:
        """The CLI's final JSON line: run_dir, step and the task's headline scalars."""
        return {"run_dir": str(self.run_dir), "step": last.get("step", self.step), **self.task.summary(last)}

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
            self._release()
            if self.dist.active:
                self._drop_ddp()
            ddp.destroy(self.dist)

    def _release(self) -> None:
        if self._handler is not None:
            log.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

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
        t = self.cfg.train
        writer = MetricsWriter(self.run_dir, sinks=self.task.metric_sinks(self.run_dir)) if self.is_main else None
        window, epoch_means = _Window(), RunningMeans()
        steps_per_epoch = len(self.loader)
        epoch, offset = divmod(self.step, steps_per_epoch)
        batches = iterate_from(self.loader, epoch, offset)
        progress = _Progress(t, self.step) if self.is_main else None
        last: dict[str, float] = {}
        self.task.train()
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
                batch, n_samples = self.task.prepare_batch(batch, self.step)
                self.guard.begin()
                logs = self.task.training_step(batch, self.step)
                if self.guard.end():
                    self._on_bad_step(window, logs)
                else:
                    window.bad_in_a_row = 0
                    window.means.add(logs)
                    epoch_means.add(logs)
                self.step += 1
                window.samples += n_samples
                window.steps += 1
                if self.step % t.log_every == 0 or self.step == t.max_steps:
                    last = self._log_window(window, epoch, writer, progress)
                if self.is_main and (self.step % t.sample_every == 0 or self.step == t.max_steps):
                    val = self.sample(writer)
                    writer.write({"step": self.step, "epoch": epoch, **val})
                    last.update(val)
                if self.step % t.ckpt_every == 0:
                    self.save_checkpoint(periodic=True)
                if progress is not None:
                    progress.update()
                if ddp.any_over_ranks(stop.signum is not None, self.device):
                    stopped = True
                    break
            self._finish(writer, epoch_means, epoch, stopped)
        finally:
            if writer is not None:
                writer.close()
            if progress is not None:
                progress.close()
        last["stopped_by_signal"] = stopped
        return last

    def _on_bad_step(self, window: "_Window", logs: dict) -> None:
        window.bad_in_a_row += 1
        window.skipped += 1
        self.bad_steps_total += 1
        message = describe(self.step, self.guard.bad_optimizers, nonfinite_terms(logs))
        log.warning("%s [%d consecutive]", message, window.bad_in_a_row)
        limit = self.cfg.train.max_bad_steps
        if limit and window.bad_in_a_row >= limit:
            raise NonFiniteError(
                f"stopping: {window.bad_in_a_row} consecutive steps with non-finite losses or gradients "
                f"(train.max_bad_steps={limit}); last: {message}. No weight was updated by these steps; lower "
                f"the learning rate, enable train.grad_clip, check the data, or resume from "
                f"{self.run_dir / 'checkpoints'}")

    def _log_window(self, window: "_Window", epoch: int, writer, progress) -> dict:
        """One host sync: the window's means, codebook statistics, counters and throughput → metrics.jsonl."""
        elapsed = max(time.perf_counter() - window.t0, 1e-9)
        values = window.means.pop()
        codebook = RunningMeans()
        codebook.add(self.task.codebook_stats())
        values.update(codebook.pop())
        values["train/skipped_steps"] = float(window.skipped)
        values = ddp.mean_over_ranks(values, self.device)
        record = {"step": self.step, "epoch": epoch, **values}
        # counts: totals over ranks, not means
        record["data/skipped_items"] = float(ddp.sum_over_ranks(len(self.loader.errors), self.device))
        record["train/skipped_steps_total"] = self.bad_steps_total
        for i, (name, opt) in enumerate(self.task.optimizers().items()):
            record["lr" if i == 0 else f"lr_{name.removeprefix('opt_')}"] = opt.param_groups[0]["lr"]
        record["samples_per_s"] = window.samples * self.dist.world_size / elapsed
        record["steps_per_s"] = window.steps / elapsed
        if writer is not None:
            writer.write(record)
            if progress is not None:
                progress.report(record, self.task.progress_keys)
        window.reset()
        return record

    def _finish(self, writer, epoch_means: RunningMeans, epoch: int, stopped: bool) -> None:
        if self.step > 0:
            if self.step % self.cfg.train.ckpt_every:  # else last.pt was just written at this step
                self.save_checkpoint(periodic=False)
            if epoch_means.steps:
                self._end_epoch(writer, epoch_means, epoch, partial=True)
        if stopped:
            log.warning("stopped by signal at step %d: checkpoint written to %s; continue with --resume %s",
                        self.step, self.run_dir / "checkpoints" / "last.pt", self.run_dir)
        elif self.is_main and self.cfg.train.export_safetensors:
            from vqfast.train.engine.export import save_safetensors
            save_safetensors(self.task.export_state(), self.run_dir / "model.safetensors",
                             {"step": self.step, "task": self.task.name})

    def _end_epoch(self, writer, means: RunningMeans, epoch: int, partial: bool = False) -> None:
        record = {"epoch": epoch, "step": self.step, "steps": means.steps, "partial": partial}
        record.update(ddp.mean_over_ranks(means.pop(), self.device))
        if writer is not None:
            writer.write(record, epoch_file=True)


class _Window:
    """Per-log-window state of the loop."""

    def __init__(self):
        self.means = RunningMeans()
        self.bad_in_a_row = 0
        self.reset()

    def reset(self) -> None:
        self.t0, self.samples, self.steps, self.skipped = time.perf_counter(), 0, 0, 0


class _Progress:
    """A tqdm bar with loss and speed on a terminal (``train.progress``); plain log lines otherwise."""

    def __init__(self, t, step: int):
        self.max_steps = t.max_steps
        self.bar = None
        if t.progress and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=t.max_steps, initial=step, desc="train", dynamic_ncols=True)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def report(self, record: dict, keys: tuple[str, str]) -> None:
        a, b = (record.get(k, float("nan")) for k in keys)
        if self.bar is not None:
            self.bar.set_postfix({keys[0].split("/")[-1]: f"{a:.4f}", keys[1].split("/")[-1]: f"{b:.4f}",
                                  "samples/s": f"{record['samples_per_s']:.1f}"})
        else:
            log.info("step %d/%d %s %.4f %s %.4f | %.1f samples/s", record["step"], self.max_steps, keys[0], a,
                     keys[1], b, record["samples_per_s"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(cfg, task_cls, resume: str | None = None) -> dict[str, float]:
    """Run (or resume) training of ``cfg`` with ``task_cls``; returns the last logged metrics (every rank)."""
    return Trainer(cfg, task_cls, resume).fit()
