"""The single training loop every family uses: data → task.training_step → logs, samples, checkpoints.

Steps are counted in batches. ``--resume`` restores modules, optimizers, schedulers, RNG states and the
position in the data (epoch and batch offset follow from the step), so a resumed run continues exactly.
"""
from __future__ import annotations

import logging
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vqfast.train import checkpoint as ckpt
from vqfast.train.config import Config
from vqfast.train.data import build_loader, ensure_dataset, frames_to_input_fn, heldout_batch, iterate_from
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


class Trainer:
    def __init__(self, cfg: Config, resume: str | None = None):
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._handler = _attach_file_log(self.run_dir)
        self.resume_obj = ckpt.load(resume) if resume else None  # fail early on a bad checkpoint
        family = resolve_family(cfg.model.type)
        # Families that own their data (latent shards) generate and load it in their task; the others
        # get the engine's image/video data, generated before the task is built (it may read data.root).
        self.owns_data = family.owns_data
        if not self.owns_data:
            ensure_dataset(cfg, self.run_dir)
        seed_everything(cfg.seed)
        self.device = pick_device(cfg.train.device)
        self.task = build_task(family.task, cfg, self.device)
        if self.owns_data:
            self.task.ensure_dataset(self.run_dir)
        (self.run_dir / "config.yaml").write_text(config_to_yaml(cfg), encoding="utf-8")
        if self.owns_data:
            self.loader = self.task.build_loader(rank=0, world_size=1)
        else:
            self.loader = build_loader(cfg, cfg.data.root, shuffle=True, seed=cfg.seed,
                                       batch_size=cfg.train.batch_size)
        if len(self.loader) == 0:
            raise ValueError(f"data.root={cfg.data.root!r} yields no full batch of train.batch_size="
                             f"{cfg.train.batch_size}; lower the batch size or add data")
        self.to_input = frames_to_input_fn()
        self.heldout = None if hasattr(self.task, "sample") else self._input(heldout_batch(cfg))
        self.step = 0
        if self.resume_obj is not None:
            ckpt.restore(self.resume_obj, self.task.modules(), self.task.optimizers(), self.task.schedulers())
            self.step = int(self.resume_obj["step"])
            ckpt.set_rng_state(self.resume_obj["rng"])
            log.info("resumed from %s at step %d", self.resume_obj["path"], self.step)

    def _input(self, frames: torch.Tensor) -> torch.Tensor:
        return self.to_input(frames, self.cfg.data.mean, self.cfg.data.std).to(self.device, non_blocking=True)

    # ---- outputs -----------------------------------------------------------------------------------
    def save_checkpoint(self, periodic: bool) -> None:
        payload = {"step": self.step, "epoch": self.step // len(self.loader), "task": self.task.name,
                   "modules": {k: m.state_dict() for k, m in self.task.modules().items()},
                   "optimizers": {k: o.state_dict() for k, o in self.task.optimizers().items()},
                   "schedulers": {k: s.state_dict() for k, s in self.task.schedulers().items()},
                   "rng": ckpt.rng_state(), "config": config_to_yaml(self.cfg)}
        d = self.run_dir / "checkpoints"
        if periodic:
            ckpt.save(d / f"step_{self.step:08d}.pt", payload)
            ckpt.prune(d, self.cfg.train.keep_checkpoints)
        ckpt.save(d / "last.pt", payload)

    def sample(self, writer: MetricsWriter) -> dict[str, float]:
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
        cfg, t = self.cfg, self.cfg.train
        writer = MetricsWriter(self.run_dir)
        window, epoch_means = RunningMeans(), RunningMeans()
        steps_per_epoch = len(self.loader)
        epoch, offset = divmod(self.step, steps_per_epoch)
        batches = iterate_from(self.loader, epoch, offset)
        progress = self._progress()
        last: dict[str, float] = {}
        self.task.train()
        t0, frames_seen, window_steps = time.perf_counter(), 0, 0
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
                logs = self.task.training_step(batch, self.step)
                window.add(logs)
                epoch_means.add(logs)
                self.step += 1
                frames_seen += n_samples
                window_steps += 1
                if self.step % t.log_every == 0 or self.step == t.max_steps:
                    elapsed = max(time.perf_counter() - t0, 1e-9)
                    record = {"step": self.step, "epoch": epoch}
                    record.update(window.pop())
                    codebook = RunningMeans()
                    codebook.add(self.task.codebook_stats())
                    record.update(codebook.pop())
                    for name, opt in self.task.optimizers().items():
                        record["lr" if name == "opt_ae" else f"lr_{name.removeprefix('opt_')}"] = \
                            opt.param_groups[0]["lr"]
                    record["samples_per_s"] = frames_seen / elapsed
                    record["steps_per_s"] = window_steps / elapsed
                    writer.write(record)
                    last = record
                    self._report(progress, record)
                    t0, frames_seen, window_steps = time.perf_counter(), 0, 0
                if self.step % t.sample_every == 0 or self.step == t.max_steps:
                    val = self.sample(writer)
                    writer.write({"step": self.step, "epoch": epoch, **val})
                    last.update(val)
                if self.step % t.ckpt_every == 0:
                    self.save_checkpoint(periodic=True)
                if progress is not None:
                    progress.update(1)
            if self.step > 0:
                self.save_checkpoint(periodic=False)
                if epoch_means.count:
                    self._end_epoch(writer, epoch_means, epoch, partial=True)
            if t.export_safetensors and getattr(self.task, "model", None) is not None:
                from vqfast.train.export import save_safetensors
                save_safetensors(self.task.model.state_dict(), self.run_dir / "model.safetensors",
                                 {"step": self.step, "model_type": cfg.model.type})
        finally:
            writer.close()
            if progress is not None:
                progress.close()
            log.removeHandler(self._handler)
            self._handler.close()
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
        record.update(means.pop())
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
    """Run (or resume) training for ``cfg``; returns the last logged metrics."""
    return Trainer(cfg, resume).fit()
