"""The seed-002 video pipeline's run artefacts: its checkpoints and its wandb logging.

Checkpoints (``trainVqVae.py``, SPEC §3.3): ``checkpoint_step{N}.pth.tar`` = ``{steps, state_dict, optimizer,
scheduler}``; a taming model adds ``optimizer_disc`` and its ``state_dict`` holds the loss as a child
(``loss.discriminator.*``, ``loss.perceptual_loss.*``); the traditional path adds ``discriminator_state`` and
``optimizer_disc`` (``LossCalculator.get_checkpoint_state``). ``load_pipeline_checkpoint`` restores them into
a VQ task: ``resume`` (the pipeline's ``checkpoint_path`` behaviour: weights, both optimizers, the LR schedule
and the step) or ``init`` (weights only, from step 0).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from vqfast.errors import CheckpointError, CheckpointNotFoundError

log = logging.getLogger("vqfast")
KEY = "train.pipeline_checkpoint"


def read_pipeline_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CheckpointNotFoundError(f"{KEY}={str(path)!r} does not exist (param.json train_args.checkpoint_path)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{KEY}={str(path)!r} cannot be read ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        keys = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{KEY}={str(path)!r} is not a seed-002 pipeline checkpoint (it has: {keys}; expected "
                              "steps, state_dict, optimizer, scheduler[, optimizer_disc, discriminator_state]); a "
                              "vqfast checkpoint is resumed with --resume, taming weights load with model.ckpt_path")
    return obj


def split_state_dict(sd: dict) -> tuple[dict, dict, list[str]]:
    """A pipeline ``state_dict`` → (model weights, taming ``loss.discriminator.*`` weights, skipped ``loss.*`` keys)."""
    model, disc, skipped = {}, {}, []
    for key, value in sd.items():
        if key.startswith("loss.discriminator."):
            disc[key[len("loss.discriminator."):]] = value
        elif key.startswith("loss."):
            skipped.append(key)
        else:
            model[key] = value
    return model, disc, skipped


def _load(target: torch.nn.Module | torch.optim.Optimizer, state: dict, what: str, path: str) -> None:
    if isinstance(target, torch.nn.Module):
        own = set(target.state_dict())
        missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
        if missing or unexpected:
            raise CheckpointError(f"{KEY}={path!r}: {what} does not match the {type(target).__name__} built from the "
                                  f"config: {len(missing)} missing key(s) (e.g. {missing[:3]}), {len(unexpected)} "
                                  f"unexpected (e.g. {unexpected[:3]})")
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{KEY}={path!r}: {what} does not match the one built from the config: "
                              f"{str(exc).splitlines()[0][:300]}") from exc


def load_pipeline_checkpoint(task, path: str, mode: str) -> int:
    """Restore a pipeline checkpoint into ``task`` (model, discriminator, opt_ae, opt_disc, sched_ae); returns
    the step training continues from (``steps`` for resume, 0 for init)."""
    obj = read_pipeline_checkpoint(path)
    model_sd, disc_sd, skipped = split_state_dict(obj["state_dict"])
    if isinstance(obj.get("discriminator_state"), dict):  # the traditional path's own discriminator
        disc_sd = obj["discriminator_state"]
    _load(task.model, model_sd, "state_dict (the model)", path)
    if task.discriminator is not None and disc_sd:
        _load(task.discriminator, disc_sd, "the discriminator", path)
    elif task.discriminator is not None:
        log.warning("%s=%s holds no discriminator weights: the discriminator starts from scratch", KEY, path)
    elif disc_sd:
        log.info("%s: its discriminator weights are not used (train.use_gan=false)", KEY)
    if skipped:
        log.info("%s: %d frozen loss.* weights (taming's LPIPS, e.g. %s) not loaded: LPIPS comes from "
                 "perceptual.backbone", KEY, len(skipped), skipped[0])
    if mode == "init":
        log.info("initialised the weights from seed-002 pipeline checkpoint %s (its step %s); training starts at "
                 "step 0 with fresh optimizers", path, obj.get("steps"))
        return 0
    missing = [k for k in ("steps", "optimizer") if k not in obj]
    if missing:
        raise CheckpointError(f"{KEY}={path!r} has no {', '.join(missing)}: it cannot be resumed; set "
                              "train.pipeline_checkpoint_mode=init to take its weights only")
    steps = int(obj["steps"])
    _load(task.opt_ae, obj["optimizer"], "optimizer", path)
    if task.opt_disc is not None:
        if isinstance(obj.get("optimizer_disc"), dict):
            _load(task.opt_disc, obj["optimizer_disc"], "optimizer_disc", path)
        else:
            log.warning("%s=%s holds no optimizer_disc: the discriminator's Adam state starts fresh", KEY, path)
    _resume_schedule(task.sched_ae, obj.get("scheduler"), steps, path)
    if task.sched_disc is not None:
        _resume_schedule(task.sched_disc, None, steps, path)
    log.info("resumed from seed-002 pipeline checkpoint %s at step %d (weights, optimizers, LR schedule)", path, steps)
    return steps


def _resume_schedule(sched, stored, steps: int, path: str) -> None:
    """Our schedule is a function of the optimizer step: position it at ``steps``. The pipeline's
    ``ExponentialLR`` (γ = lr_decay per 1000 steps) then gives the same LR; a different γ is reported."""
    if isinstance(stored, dict) and "gamma" in stored:
        factor = sched.lr_lambdas[0]
        if abs(float(stored["gamma"]) - float(factor.decay)) > 1e-12 and factor.schedule == "exponential":
            log.warning("%s=%s: its scheduler decays by gamma=%s, the config by train.lr_decay=%s; the config's "
                        "schedule continues", KEY, path, stored["gamma"], factor.decay)
    sched.last_epoch = steps
    for group, base, fn in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
        group["lr"] = base * fn(steps)
    sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]


class WandbSink:
    """Scalars (and sample grids) of every log window to Weights & Biases (the pipeline's ``LogManager`` with
    ``use_wandb``); wandb is optional, never a vqfast dependency."""

    def __init__(self, wandb, project: str | None, run_dir: Path, config: dict):
        self.wandb = wandb
        self.run = wandb.init(project=project, config=config, dir=str(run_dir), job_type="train_model")

    def write(self, record: dict) -> None:
        step = record.get("step", 0)
        self.run.log({k: v for k, v in record.items() if k not in ("step",) and isinstance(v, (int, float))},
                     step=step)

    def image(self, tag: str, chw: torch.Tensor, step: int) -> None:
        self.run.log({tag: self.wandb.Image(chw.permute(1, 2, 0).cpu().numpy())}, step=step)

    def close(self) -> None:
        self.run.finish()


def wandb_sinks(cfg, run_dir: Path) -> list:
    """[WandbSink] when ``train.use_wandb`` and wandb imports; a warning (and []) when it is not installed."""
    if not cfg.train.use_wandb:
        return []
    try:
        import wandb
    except ImportError:
        log.warning("train.use_wandb=true but wandb is not installed (pip install wandb): logging to metrics.jsonl "
                    "and TensorBoard only")
        return []
    import dataclasses
    return [WandbSink(wandb, cfg.train.wandb_project, run_dir, dataclasses.asdict(cfg))]


def read_list_files(d) -> dict[str, list[str]]:
    """``data.train_list`` / ``data.val_list`` (taming's image list files: one path per line, blank lines
    skipped) → ``{"train_files": [...], "val_files": [...]}`` (the config keeps naming the list file)."""
    from vqfast.errors import DataError, DataNotFoundError

    out = {}
    for list_key, files_key in (("train_list", "train_files"), ("val_list", "val_files")):
        listed = getattr(d, list_key, None)
        if listed is None:
            continue
        path = Path(listed).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"data.{list_key}={listed!r} does not exist (a text file with one image path "
                                    "per line)")
        files = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not files:
            raise DataError(f"data.{list_key}={listed!r} lists no files")
        out[files_key] = files
        log.info("data.%s: %d paths read from %s", list_key, len(files), path)
    return out


def link_file_lists(d, run_dir: Path) -> None:
    """``data.train_files`` / ``data.val_files`` (the pipeline's ``training_data_files`` /
    ``validation_data_files``): link each listed video file, frame folder or image, in list order, into
    run_dir/data/{train,val}_files and make that folder ``data.root`` / ``data.val_root`` (the loaders read
    folders). A listed path that does not exist is a DataNotFoundError naming it."""
    import os

    from vqfast.errors import DataError, DataNotFoundError

    listed = read_list_files(d)
    for files_key, root_key, name in (("train_files", "root", "train_files"), ("val_files", "val_root", "val_files")):
        files = getattr(d, files_key, None) or listed.get(files_key)
        if not files:
            continue
        folder = (Path(run_dir) / "data" / name).resolve()
        current = getattr(d, root_key)
        if current is not None and Path(current).resolve() != folder:
            raise DataError(f"data.{root_key}={current!r} and data.{files_key} both name the data; keep one")
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {}
        for i, path in enumerate(files):
            src = Path(path).expanduser()
            if not src.exists():
                raise DataNotFoundError(f"data.{files_key}[{i}]={path!r} does not exist")
            wanted[f"{i:06d}_{src.name}"] = src.resolve()
        for entry in folder.iterdir():  # links of an earlier, different list
            if entry.name not in wanted and entry.is_symlink():
                entry.unlink()
        for link_name, target in wanted.items():
            link = folder / link_name
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target, target_is_directory=target.is_dir())
        setattr(d, root_key, str(folder))
        log.info("data.%s: %d listed samples linked into %s (data.%s)", files_key, len(files), folder, root_key)
