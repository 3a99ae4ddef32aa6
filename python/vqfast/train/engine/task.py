"""The contract between the engine loop and a family: ``Task``, and ``TaskBase`` with the shared defaults.

The engine (``vqfast.train.engine.loop``) calls every hook of ``Task`` unconditionally, in this order:

1. ``TaskCls.prepare_data(cfg, run_dir)`` (rank 0 first): generate the data a config asked for
   (``data.synthetic``) and record its path in ``cfg``; check that the data the config names exists.
   It runs before ``config.yaml`` is written, so the resolved config records every path used.
2. ``TaskCls(cfg, device)``: build models, losses, optimizers, schedulers (identical on every rank).
3. ``build_loader(batch_size=, rank=, world_size=)`` → a loader with ``set_epoch``, ``len``, iteration,
   ``state_dict``/``load_state_dict`` (``{"epoch", "batch", ...}``, for exact mid-epoch resume) and
   ``errors`` (items skipped under ``data.on_error=skip``).
4. per batch: ``prepare_batch(batch, step)`` → (what ``training_step`` takes, samples in it), then
   ``training_step(batch, step)`` → detached 0-dim tensors (no host sync); every ``log_every`` steps
   ``codebook_stats()``; every ``sample_every`` steps (rank 0) ``sample(run_dir, step, writer)`` → scalars.
   Rank 0 also hands every logged record to ``metric_sinks(run_dir)`` (e.g. wandb).
5. a fresh run starts at ``initial_step()`` (0, or the step of a foreign checkpoint the config resumes);
   checkpoints hold ``modules()``, ``optimizers()``, ``schedulers()`` and ``extra_state()``; ``--resume``
   restores them and calls ``load_extra_state``; ``export_state()`` feeds ``model.safetensors``;
   ``summary(last)`` picks the scalars of the CLI's final JSON line; under torchrun ``wrap_ddp(wrap_fn)``.

``TaskBase`` supplies the defaults an image/video family needs (data set-up and loader from the shared
``data:`` section, held-out reconstruction samples with PSNR, codebook usage, the G/D-phase micro-batch
helpers); a family overrides what differs.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Protocol, runtime_checkable

import torch

from vqfast.errors import ConfigError
from vqfast.train.engine import data as engine_data
from vqfast.train.engine import distributed as ddp
from vqfast.train.engine.samples import grid, psnr, save_png

log = logging.getLogger("vqfast")
Logs = dict[str, torch.Tensor]


@runtime_checkable
class Loader(Protocol):
    errors: list

    def set_epoch(self, epoch: int) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class Task(Protocol):
    name: str
    progress_keys: tuple[str, str]

    @classmethod
    def prepare_data(cls, cfg, run_dir: Path) -> None: ...
    def build_loader(self, *, batch_size: int, rank: int, world_size: int) -> Loader: ...
    def prepare_batch(self, batch, step: int) -> tuple[Any, int]: ...
    def modules(self) -> dict[str, torch.nn.Module]: ...
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...
    def schedulers(self) -> dict[str, Any]: ...
    def train(self) -> None: ...
    def training_step(self, batch, step: int) -> Logs: ...
    def codebook_stats(self) -> Logs: ...
    def sample(self, run_dir: Path, step: int, writer) -> dict[str, float]: ...
    def extra_state(self) -> dict: ...
    def load_extra_state(self, state: dict) -> None: ...
    def initial_step(self) -> int: ...
    def metric_sinks(self, run_dir: Path) -> list: ...
    def export_state(self) -> dict[str, torch.Tensor]: ...
    def summary(self, last: dict) -> dict[str, float]: ...
    def wrap_ddp(self, wrap_fn: Callable) -> None: ...


class CodeUsage:
    """Window code-usage counts on device (``scatter_add``: CUDA ``bincount`` syncs the host every call),
    reduced over ranks once per log window."""

    def __init__(self, vocab: int, device: torch.device):
        self.counts = torch.zeros(int(vocab), dtype=torch.long, device=device)

    def add(self, indices: torch.Tensor) -> None:
        codes = indices.reshape(-1)
        self.counts.scatter_add_(0, codes, torch.ones_like(codes, dtype=self.counts.dtype))

    def pop(self) -> Logs:
        counts = ddp.all_reduce_sum_(self.counts).float()
        p = counts / counts.sum().clamp_min(1)
        out = {"codebook/usage": (counts > 0).float().mean(),
               "codebook/window_perplexity": torch.exp(-(p * torch.log(p + 1e-10)).sum())}
        self.counts.zero_()
        return out


def quantizer_health(quantizers: Iterable[torch.nn.Module]) -> Logs:
    """The quantizers' own (already global) health metrics: ``codebook/<k>`` or ``codebook/level<i>/<k>``."""
    quantizers = list(quantizers)
    out: Logs = {}
    for i, q in enumerate(quantizers):
        prefix = "codebook/" if len(quantizers) == 1 else f"codebook/level{i}/"
        for k, v in q.codebook_metrics().items():
            out[prefix + k] = v.detach().float().reshape(())
    return out


def add_logs(into: Logs, part: Logs, parts: int) -> None:
    """Accumulate ``part`` into ``into`` as a mean over ``parts`` micro-batches (detached, float32)."""
    for k, v in part.items():
        into[k] = into.get(k, 0) + v.detach().float() / parts


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module):
    """The modules in eval mode inside the block; each gets its own previous train/eval mode back after."""
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, w in zip(modules, was, strict=True):
            m.train(w)


@contextlib.contextmanager
def swap_attr(owner, name: str, value):
    """Temporarily set owner.name = value (no-op when value is None), e.g. a DDP-wrapped discriminator for
    the D step only, so the frozen G-step call stays unwrapped."""
    if value is None:
        yield
        return
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


class TaskBase:
    """Defaults for image/video families. Subclasses set ``name``, build ``self.model`` (with ``last_layer``
    where a GAN needs it), the optimizers/schedulers, and implement ``training_step`` and ``reconstruct``."""

    name: ClassVar[str] = "task"
    progress_keys: ClassVar[tuple[str, str]] = ("train/total_loss", "train/rec_loss")
    summary_keys: ClassVar[tuple[str, ...]] = ("train/total_loss", "train/rec_loss", "val/psnr")

    def __init__(self, cfg, device: torch.device):
        self.cfg, self.device = cfg, device
        self.usage: CodeUsage | None = None
        self._heldout: torch.Tensor | None = None
        self._eval_paths = self._evaluator = None
        ec = getattr(cfg, "eval", None)
        if ec is not None and ec.metrics:  # check now: a bad eval section fails before training, not at step N
            root = ec.root or cfg.data.val_root
            if root is None:
                raise ConfigError("eval.metrics is set but no held-out folder: set eval.root or data.val_root")
            if ec.every % cfg.train.sample_every:
                raise ConfigError(f"eval.every={ec.every} must be a multiple of train.sample_every="
                                  f"{cfg.train.sample_every} (evaluation runs in the sample hook)")
            from vqfast.eval.data import list_eval_images
            from vqfast.eval.inception import find_inception_weights
            from vqfast.eval.lpips_metric import find_backbone

            self._eval_paths = list_eval_images(root, ec.limit)  # DataNotFoundError naming the folder
            if "rfid" in ec.metrics:
                find_inception_weights(ec.inception_path)  # InceptionWeightsError naming the file and the place
            if "lpips" in ec.metrics and ec.lpips_backbone != "random":
                find_backbone(ec.lpips_net, ec.lpips_backbone)

    # ---- data -----------------------------------------------------------------------------------------------
    @classmethod
    def prepare_data(cls, cfg, run_dir: Path) -> None:
        engine_data.prepare_image_data(cfg.data, cfg.train.batch_size, cfg.seed, run_dir)

    def build_loader(self, *, batch_size: int, rank: int, world_size: int) -> Loader:
        loader = engine_data.build_loader(self.cfg.data, self.cfg.data.root, shuffle=True, seed=self.cfg.seed,
                                          batch_size=batch_size, rank=rank, world_size=world_size)
        self.heldout()  # read now: an unreadable held-out batch fails before training, not at the first sample
        return loader

    def to_input(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, C) → normalised ((B·T), C, H, W) on the device."""
        d = self.cfg.data
        return engine_data.frames_to_input(frames, d.mean, d.std).to(self.device, non_blocking=True)

    def prepare_batch(self, batch, step: int) -> tuple[torch.Tensor, int]:
        frames, _paths = batch
        x = self.to_input(frames)  # ((B·T), C, H, W)
        return x, x.shape[0]

    # ---- state ----------------------------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: v for k, v in (("opt_ae", self.opt_ae), ("opt_disc", self.opt_disc)) if v is not None}

    def schedulers(self) -> dict[str, Any]:
        return {k: v for k, v in (("sched_ae", self.sched_ae), ("sched_disc", self.sched_disc)) if v is not None}

    def train(self) -> None:
        for m in self.modules().values():
            m.train()

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        del state

    def initial_step(self) -> int:
        """The step a fresh run (no --resume) starts at: 0, or the step of a foreign checkpoint the config
        resumes (seed-002 ``train_args.checkpoint_path``)."""
        return 0

    def metric_sinks(self, run_dir: Path) -> list:
        """Extra writers of the logged records (rank 0), e.g. wandb; each has ``write``, ``image``, ``close``."""
        del run_dir
        return []

    def export_state(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def wrap_ddp(self, wrap_fn: Callable) -> None:
        raise ConfigError(f"task {self.name!r} cannot run under torchrun (no DDP wrapping)")

    def summary(self, last: dict) -> dict[str, float]:
        return {k: last[k] for k in self.summary_keys if k in last}

    # ---- metrics and samples --------------------------------------------------------------------------------
    def quantizers(self) -> list[torch.nn.Module]:
        return list(self.model.quantizers)

    def codebook_stats(self) -> Logs:
        out = self.usage.pop() if self.usage is not None else {}
        out.update(quantizer_health(self.quantizers()))
        return out

    def heldout(self) -> torch.Tensor:
        """A fixed normalised ((B·T), C, H, W) batch (data.val_root, else the first training samples)."""
        if self._heldout is None:
            self._heldout = self.to_input(engine_data.heldout_frames(self.cfg.data, self.cfg.train.batch_size))
        return self._heldout

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def save_grid(self, run_dir: Path, step: int, writer, x: torch.Tensor, recon: torch.Tensor) -> None:
        """An input | reconstruction PNG grid of the first 8 held-out samples (and to TensorBoard)."""
        d = self.cfg.data
        image = grid(x[:8], recon[:8], mean=d.mean, std=d.std)
        save_png(image, Path(run_dir) / "samples" / f"step_{step:08d}.png")
        if writer is not None:
            writer.image("samples/input|reconstruction", image, step)

    def sample(self, run_dir: Path, step: int, writer) -> dict[str, float]:
        """Reconstructs the held-out batch: PSNR and L1 on it, and an input | reconstruction PNG grid."""
        x, d = self.heldout(), self.cfg.data
        recon = self.reconstruct(x)
        self.save_grid(run_dir, step, writer, x, recon)
        values = torch.stack([psnr(x, recon, d.mean, d.std), (x - recon).abs().mean()]).tolist()
        out = {"val/psnr": values[0], "val/rec_loss": values[1]}
        out.update(self.eval_scalars(step))
        return out

    def eval_scalars(self, step: int) -> dict[str, float]:
        """The ``eval:`` section's metrics when this sample step is one of its steps, else nothing; a family
        that overrides ``sample`` adds these to its scalars."""
        ec = getattr(self.cfg, "eval", None)
        if self._eval_paths is not None and (step % ec.every == 0 or step == self.cfg.train.max_steps):
            return self.evaluate()
        return {}

    def evaluate(self) -> dict[str, float]:
        """``vqfast.eval`` over the ``eval:`` held-out folder (this rank's process only) → ``val/<metric>``."""
        from vqfast.eval.data import iterate_batches
        from vqfast.eval.evaluator import ReconstructionEvaluator, evaluate_model

        ec, d = self.cfg.eval, self.cfg.data
        if self._evaluator is None:  # Inception / LPIPS built once (errors name the missing file)
            self._evaluator = ReconstructionEvaluator(
                ec.metrics, device=self.device, num_codes=self.model.vocab_size, inception=ec.inception_path,
                inception_sha256=ec.inception_sha256, lpips_net=ec.lpips_net, lpips_backbone=ec.lpips_backbone,
                reduce=False)
        self._evaluator.reset()
        batches = iterate_batches(self._eval_paths, size=d.size, batch_size=ec.batch_size, preprocess=ec.preprocess)
        result = evaluate_model(self.model, batches, self._evaluator, mean=d.mean, std=d.std, device=self.device,
                                autocast=self.autocast)
        return {f"val/{k}": float(v) for k, v in result.items() if k != "images"}

    # ---- G/D phases -----------------------------------------------------------------------------------------
    def autocast(self):
        """bf16 autocast when train.precision is 'bf16', else a no-op context."""
        if self.cfg.train.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run_phase(self, optimizer, scheduler, params: Callable[[], Iterable], chunks: list,
                  loss_fn: Callable[[int, Any], tuple[torch.Tensor, Logs]], wrapper=None) -> Logs:
        """One optimizer step over micro-batches: ``loss_fn(k, chunk) -> (loss, logs)`` under autocast,
        backward of ``loss / len(chunks)`` (DDP ``no_sync`` on all but the last micro-batch, so gradients
        are all-reduced once), gradient clipping, ``optimizer.step()``, ``scheduler.step()``.
        Returns the logs averaged over micro-batches."""
        logs: Logs = {}
        optimizer.zero_grad(set_to_none=True)
        for k, chunk in enumerate(chunks):
            last = k == len(chunks) - 1
            with contextlib.nullcontext() if wrapper is None or last else wrapper.no_sync():
                with self.autocast():
                    loss, part = loss_fn(k, chunk)
                (loss / len(chunks)).backward()
            add_logs(logs, part, len(chunks))
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(params()), self.cfg.train.grad_clip)
        optimizer.step()
        scheduler.step()
        return logs

    @torch.no_grad()
    def eval_forward(self, fn: Callable[[], torch.Tensor], module: torch.nn.Module) -> torch.Tensor:
        """``fn()`` with ``module`` in eval mode (restored after) and no graph, as float32."""
        with eval_mode(module), self.autocast():
            out = fn()
        return out.float()
