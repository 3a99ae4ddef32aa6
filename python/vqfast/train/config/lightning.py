"""The PyTorch-Lightning config layout of taming-transformers and QuantArt, read as it is written.

taming's ``main.py`` (and QuantArt's copy of it) instantiates ``model.target`` with ``model.params``, the loss
from ``model.params.lossconfig.{target,params}``, ``data.target: main.DataModuleFromConfig`` with
``data.params.{batch_size, num_workers, train, validation, test}`` (each a ``{target, params}`` dataset) and a
``pytorch_lightning.Trainer`` from ``lightning.trainer``; the LR is ``accumulate_grad_batches · ngpu ·
batch_size · model.base_learning_rate`` (``--scale_lr``, on by default). This module is family-agnostic: it
splits such a file into those parts and translates the ``lightning.trainer`` and ``data.params`` keys every
family shares; a family (``families/vq/taming_yaml.py``, ``families/quantart/quantart_yaml.py``) maps the model
and dataset targets it owns. Keys vqfast cannot honour are named in one warning, never silently dropped;
anything unknown is an error.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from vqfast.errors import ConfigError

log = logging.getLogger("vqfast")

TRAINER_KEYS = {
    # lightning.trainer key → how it maps (the translation below); everything else is named in a warning
    "max_steps": "train.max_steps",
    "accumulate_grad_batches": "train.grad_accum (and the global batch)",
    "gradient_clip_val": "train.grad_clip",
    "log_every_n_steps": "train.log_every",
    "precision": "train.precision (32 → fp32, bf16 → bf16)",
    "gpus": "the number of GPUs in the global batch",
    "devices": "the number of GPUs in the global batch",
}
IGNORED_TRAINER = {"benchmark", "num_nodes", "accelerator", "strategy", "distributed_backend", "num_sanity_val_steps",
                   "check_val_every_n_epoch", "limit_val_batches", "progress_bar_refresh_rate", "weights_summary",
                   "deterministic", "max_epochs", "val_check_interval", "auto_select_gpus", "sync_batchnorm",
                   "resume_from_checkpoint", "default_root_dir", "logger", "callbacks", "enable_progress_bar"}
"""Trainer settings with no vqfast equivalent (the engine is not Lightning): named in a warning. ``max_epochs``
is here because vqfast counts optimizer steps (``train.max_steps``)."""


def is_lightning_layout(raw: dict) -> bool:
    model = raw.get("model")
    return isinstance(model, dict) and "target" in model


@dataclass
class LightningConfig:
    """A taming/QuantArt config file split into its parts (copies; the translation consumes them)."""
    where: str
    target: str
    params: dict
    base_learning_rate: Optional[float]
    loss_target: Optional[str]
    loss_params: dict
    data: dict
    datasets: dict
    trainer: dict
    ignored: list[str] = field(default_factory=list)
    """Keys read but not honoured (one warning at the end of the translation)."""
    errors: list[str] = field(default_factory=list)

    def take(self, key: str, default=None):
        return self.params.pop(key, default)

    def ignore(self, key: str, why: str) -> None:
        self.ignored.append(f"{key} ({why})")


def _mapping(obj, key: str, where: str) -> dict:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{key} ({where}): expected a mapping, got {obj!r}")
    return dict(obj)


def split(raw: dict, where: str) -> LightningConfig:
    """The parts of a Lightning-layout config; unknown top-level keys are an error."""
    unknown = sorted(set(raw) - {"model", "data", "lightning"})
    if unknown:
        raise ConfigError(f"{where}: a taming/QuantArt (Lightning) config has only model, data and lightning; "
                          f"unknown key(s): {', '.join(unknown)}")
    model = _mapping(raw.get("model"), "model", where)
    unknown_model = sorted(set(model) - {"target", "params", "base_learning_rate"})
    if unknown_model:
        raise ConfigError(f"{where}: unknown key(s) model.{', model.'.join(unknown_model)}")
    params = _mapping(model.get("params"), "model.params", where)
    lossconfig = _mapping(params.pop("lossconfig", None), "model.params.lossconfig", where)
    data = _mapping(raw.get("data"), "data", where)
    lightning = _mapping(raw.get("lightning"), "lightning", where)
    lc = LightningConfig(where=where, target=str(model["target"]), params=params,
                         base_learning_rate=model.get("base_learning_rate"), loss_target=lossconfig.get("target"),
                         loss_params=_mapping(lossconfig.get("params"), "model.params.lossconfig.params", where),
                         data=_mapping(data.get("params"), "data.params", where), datasets={},
                         trainer=_mapping(lightning.get("trainer"), "lightning.trainer", where))
    data_target = data.get("target", "main.DataModuleFromConfig")
    if not str(data_target).endswith("DataModuleFromConfig"):
        lc.errors.append(f"data.target={data_target!r}: only main.DataModuleFromConfig (taming/QuantArt) is read")
    for split_name in ("train", "validation", "test"):
        ds = lc.data.pop(split_name, None)
        if ds is not None:
            ds = _mapping(ds, f"data.params.{split_name}", where)
            lc.datasets[split_name] = (str(ds.get("target", "")),
                                       _mapping(ds.get("params"), f"data.params.{split_name}.params", where))
    for key in sorted(set(lightning) - {"trainer"}):
        lc.ignore(f"lightning.{key}", "Lightning callbacks/checkpointing: vqfast keeps last.pt and periodic "
                                      "checkpoints (train.ckpt_every, train.keep_checkpoints)")
    return lc


def _gpus(value) -> int:
    """Lightning's ``gpus``/``devices``: an int, a list of ids, or a string such as ``"0,1"`` / ``"0,"``."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, (list, tuple)):
        return len(value)
    ids = [s for s in str(value).split(",") if s.strip()]
    if len(ids) == 1 and ids[0].strip() == "-1":
        return 0  # "all GPUs": not known here
    return len(ids)


def translate_trainer(lc: LightningConfig, out: dict) -> int:
    """``lightning.trainer`` → ``train.*``; returns the number of GPUs the batch is multiplied by."""
    t = lc.trainer
    train = out.setdefault("train", {})
    for key in sorted(t):
        if key not in TRAINER_KEYS and key not in IGNORED_TRAINER:
            lc.errors.append(f"lightning.trainer.{key}: unknown Trainer key (vqfast reads "
                             f"{', '.join(sorted(TRAINER_KEYS))})")
        elif key in IGNORED_TRAINER:
            lc.ignore(f"lightning.trainer.{key}", "no vqfast equivalent" if key != "max_epochs"
                      else "vqfast counts optimizer steps: set train.max_steps")
    if t.get("max_steps") not in (None, -1):
        train["max_steps"] = t["max_steps"]
    if t.get("gradient_clip_val"):
        train["grad_clip"] = t["gradient_clip_val"]
    if t.get("log_every_n_steps") is not None:
        train["log_every"] = t["log_every_n_steps"]
    precision = t.get("precision")
    if precision is not None:
        mapped = {32: "fp32", "32": "fp32", "bf16": "bf16", "bf16-mixed": "bf16"}.get(precision)
        if mapped is None:
            lc.errors.append(f"lightning.trainer.precision={precision!r}: vqfast trains in fp32 or bf16 (fp16 "
                             "needs loss scaling it does not implement); set 32 or bf16")
        else:
            train["precision"] = mapped
    accum = t.get("accumulate_grad_batches") or 1
    if not isinstance(accum, int) or accum < 1:
        lc.errors.append(f"lightning.trainer.accumulate_grad_batches={accum!r}: expected a positive integer")
        accum = 1
    if accum > 1:
        train["grad_accum"] = accum
    gpus = _gpus(t.get("gpus", t.get("devices")))
    if gpus == 0:  # taming passes --gpus on the command line; under torchrun the world size tells
        gpus = int(os.environ.get("WORLD_SIZE", "1"))
    return max(gpus, 1) * accum


def translate_data(lc: LightningConfig, out: dict, datasets: dict[str, Callable[[str, dict, dict], None]],
                   batch_factor: int) -> None:
    """``data.params`` → ``data.*`` / ``train.batch_size``: taming's batch_size is per GPU and per
    micro-batch, vqfast's ``train.batch_size`` the global batch of one optimizer step, so it is multiplied by
    ``batch_factor`` (GPUs × accumulate_grad_batches) and taming's LR rule gives the same LR. ``datasets`` maps a
    dataset target's last two dotted parts (``custom.CustomTrain``) to the family's translator."""
    d = lc.data
    if "batch_size" in d:
        out.setdefault("train", {})["batch_size"] = int(d.pop("batch_size")) * batch_factor
        if batch_factor > 1:
            log.info("%s: data.params.batch_size × %d GPUs/accumulation → train.batch_size=%d (vqfast's batch is "
                     "global)", lc.where, batch_factor, out["train"]["batch_size"])
    if "num_workers" in d:
        d.pop("num_workers")
        lc.ignore("data.params.num_workers", "vqfast's loaders use data.num_threads decoding threads")
    for key in ("wrap", "use_worker_init_fn"):
        if key in d:
            d.pop(key)
            lc.ignore(f"data.params.{key}", "no vqfast equivalent")
    for key in sorted(d):
        lc.errors.append(f"data.params.{key}: unknown DataModuleFromConfig key")
    for split_name, (target, params) in lc.datasets.items():
        short = ".".join(target.split(".")[-2:])
        fn = datasets.get(short)
        if fn is None:
            lc.errors.append(f"data.params.{split_name}.target={target!r}: not a dataset vqfast reads (it reads "
                             f"{', '.join(sorted(datasets))}); point data.root at an image folder instead")
            continue
        fn(split_name, dict(params), out)


def take_size(split_name: str, params: dict, data: dict, errors: list[str]) -> None:
    """A dataset's ``size`` → ``data.size`` (one size for every split) and its ``random_crop`` refused: taming's
    ``ImagePaths`` scale the short side to ``size`` and crop the centre unless random_crop, as vqfast's loaders
    do without it."""
    size = params.pop("size", None)
    if size is not None:
        if data.get("size", size) != size:
            errors.append(f"data.params.{split_name}.params.size={size} differs from the other split's "
                          f"{data['size']}: vqfast trains and validates at one data.size")
        data["size"] = size
    if params.pop("random_crop", False):
        errors.append(f"data.params.{split_name}.params.random_crop: vqfast crops the centre")


def finish(lc: LightningConfig, out: dict[str, Any]) -> dict[str, Any]:
    """Raise the collected errors as one ConfigError; warn once about what was read but not honoured."""
    leftover = sorted(lc.params)
    if leftover:
        lc.errors.append(f"model.params: unknown key(s) {', '.join(leftover)} for {lc.target}")
    if lc.errors:
        raise ConfigError(f"{lc.where} (taming/QuantArt layout): " + "; ".join(lc.errors))
    if lc.ignored:
        log.warning("%s: read but not honoured: %s", lc.where, "; ".join(lc.ignored))
    out = {k: v for k, v in out.items() if v != {}}
    return out
