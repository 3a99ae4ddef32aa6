"""Translate a seed-002 ``param.json`` (model_type, model_args, train_args, data_args, data_process, use_images)
into a VQ-family config dict, with the pipeline's own defaults (SPEC §3.1, §3.3, §3.4; the pipeline's
``train/train_custom_videos.py``, ``train/trainVqVae.py``, ``train/lossconfig.py``, ``models/model_adapter.py``).

Mapping:
- ``model_type`` → ``model.type`` (case-insensitive); taming types with
  ``model_args.model_variant: EMAVQ`` → ``emavq``.
- taming ``model_args``: ``n_embed``, ``embed_dim``, ``ddconfig``, ``ckpt_path``, ``remap``/``unknown_index``;
  ``lossconfig.target`` through ``LOSS_TARGETS``, ``lossconfig.params`` → ``loss.*``; LR =
  ``model_args.learning_rate`` or ``model_args.lr`` or 1e-4 (the pipeline ignores ``train_args.lr`` for taming),
  never batch-scaled.
- VQVAE2 / VqVae ``model_args`` renamed (``input_channels``→``in_channels``, ``vocab_size``→``nb_entries``,
  ``n_init``→``embed_dim``, ``n_hid``→``hidden_channels``); LR = ``train_args.lr`` (1e-3), Adam (0.9, 0.999).
- The loss, as the pipeline's ``LossCalculator`` picks it: a taming model uses its taming loss unless
  ``train_args.use_taming_loss: false``; otherwise ``use_gan`` (default true) selects the pipeline's own GAN
  loss (``loss.kind: losscalculator`` with ``train_args.disc_factor/disc_start/pixel_loss_factor/
  perceptual_loss_factor``), ``use_gan: false`` the plain ``mse + 1.0·vq``.
- ``train_args``: ``num_steps``→``train.max_steps``, ``lr_decay`` (default 0.99) → exponential schedule every
  1000 steps (generator only), ``save_interval``→``ckpt_every``, ``validation_interval``→``sample_every``,
  ``use_gan`` (default true), ``disc_lr``, ``disc_beta1/2``, ``folder_name``→``run_dir``, ``device``,
  ``checkpoint_path``→``train.pipeline_checkpoint`` (resumed: weights, optimizers, schedule, step); the D step
  every 3 steps (``disc_every``, a vqfast key, overrides it).
- data: ``data_process.train`` / ``.vaild`` (sic; the folders the pipeline lists its videos from) →
  ``data.root`` / ``data.val_root``; ``data_args.training_data_files`` / ``validation_data_files`` (the file
  lists) → ``data.train_files`` / ``data.val_files`` (``data_process`` wins, as in the pipeline);
  ``use_images: true`` → ``data.kind: images``, whose samples are single images, so
  ``train.batch_size = batch_size × sequence_length`` (the pipeline's image sequences are independent images);
  ``ddconfig.resolution`` (VqVae: ``model_args.resolution``) → ``data.size`` (the frame size);
  ``batch_size``, ``sequence_length``→``data.clip_len``, ``num_threads``, ``seed``.
- ``use_wandb`` / ``project_name`` → ``train.use_wandb`` / ``train.wandb_project``.
Keys that only configure the original infrastructure (DALI sharding, device ids, wandb intervals) are ignored
with a log line; anything else unknown is an error.
"""
from __future__ import annotations

import logging
from typing import Any

from vqfast.errors import ConfigError
from vqfast.train.families.base import normalize_name

log = logging.getLogger("vqfast")

LOSS_TARGETS = {
    "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator": "vqlpips",
    "models.taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator": "vqlpips",
    "taming.modules.losses.VQLPIPSWithDiscriminator": "vqlpips",
    "vqfast.losses.VQLPIPSWithDiscriminator": "vqlpips",
    "vqfast.losses.MSEVQLoss": "mse",
}

TRAIN_DEFAULTS = {"num_steps": 100000, "lr": 1e-3, "lr_decay": 0.99, "save_interval": 10000,
                  "validation_interval": 10000, "use_gan": True, "disc_factor": 1.0, "disc_start": 20000,
                  "pixel_loss_factor": 1.0, "perceptual_loss_factor": 1.0}
"""``TrainVqVae`` / ``LossCalculator`` defaults when a ``train_args`` key is absent (SPEC §3.1)."""
PIPELINE_DISC_EVERY = 3
"""``LossCalculator.step_discriminator``: the D step runs when ``step % 3 == 0`` (seed 002 §6.4)."""

_IGNORED_TOP = {"wandb_log_interval", "wandb_image_interval"}
_IGNORED_DATA = {"device_id", "shard_id", "num_shards", "initial_prefetch_size"}
_TAMING_ARGS = {"model_variant", "n_embed", "embed_dim", "ddconfig", "lossconfig", "ckpt_path", "ignore_keys",
                "learning_rate", "lr", "image_key", "monitor", "remap", "unknown_index", "sane_index_shape", "beta",
                "legacy"}
_VQVAE2_RENAME = {"input_channels": "in_channels", "in_channels": "in_channels", "vocab_size": "nb_entries",
                  "nb_entries": "nb_entries", "n_init": "embed_dim", "embed_dim": "embed_dim",
                  "n_hid": "hidden_channels", "hidden_channels": "hidden_channels", "res_channels": "res_channels",
                  "nb_res_layers": "nb_res_layers", "nb_levels": "nb_levels", "scaling_rates": "scaling_rates",
                  "decay": "decay"}
_VQVAE_KEYS = {"input_channels", "output_channels", "vocab_size", "n_init", "commitment_cost", "decay", "ch",
               "ch_mult", "num_res_blocks", "attn_resolutions", "resolution", "dropout"}
_VQVAE_UNUSED = {"group_count", "n_hid", "n_blk_per_group", "sequence_length", "downsample", "upsample",
                 "use_optvq"}
_LOSSCALC_KEYS = ("disc_factor", "disc_start", "pixel_loss_factor", "perceptual_loss_factor")


MODEL_TYPES = {"tamingvqgan": "vqgan", "tamingvqmodel": "vqgan", "vqgan": "vqgan", "vqmodel": "vqgan",
               "emavq": "emavq", "vqvae2": "vqvae2", "vqvae": "vqvae"}
"""seed-002 ``model_type`` names (normalised) → vqfast ``model.type``. Seed 002's confusing pair, resolved as a
user expects: ``VQVAE2`` → the multi-level VQ-VAE-2, ``VqVae`` → the single-level VQ-VAE."""


def is_param_json(obj: dict) -> bool:
    return "model_type" in obj or "model_args" in obj or "train_args" in obj


def translate_if_param_json(obj: dict, where: str) -> dict | None:
    """The registry's hook: a translated dict when ``obj`` is a param.json, else None."""
    return translate(obj, where) if is_param_json(obj) else None


def translate(obj: dict, where: str) -> dict[str, Any]:
    errors: list[str] = []
    out: dict[str, Any] = {"model": {}, "loss": {}, "train": {}, "data": {}}
    canonical = _model_type(obj, errors, where)
    model_args = dict(obj.get("model_args") or {})
    train_args = dict(obj.get("train_args") or {})
    taming_model = canonical in ("vqgan", "emavq")
    taming_loss = _uses_taming_loss(train_args, taming_model, errors, where)
    resolution = None
    if taming_model:
        resolution = _translate_taming(model_args, canonical, out, errors, where, taming_loss)
    elif canonical == "vqvae2":
        if "scaling_rates" in obj:
            model_args.setdefault("scaling_rates", obj["scaling_rates"])
        _translate_vqvae2(model_args, out, errors, where)
    else:
        resolution = _translate_vqvae(model_args, out, errors, where)
    if not taming_loss:  # the pipeline's traditional path: one Adam(model.parameters(), train_args.lr)
        out["train"].update(lr=float(train_args.get("lr", TRAIN_DEFAULTS["lr"])), betas=[0.9, 0.999],
                            scale_lr=False)
        if train_args.get("use_gan", TRAIN_DEFAULTS["use_gan"]):
            out["loss"] = {"kind": "losscalculator",
                           **{k: train_args.get(k, TRAIN_DEFAULTS[k]) for k in _LOSSCALC_KEYS}}
        else:
            out["loss"] = {"kind": "mse", "vq_weight": 1.0}  # the pipeline: total = recon + vq_loss
    _translate_train(train_args, out, errors, where, taming_loss)
    _translate_data(obj, out, errors, where)
    for key in ("run_dir", "seed", "backend", "cpu_overrides"):
        if key in obj:
            out[key] = obj[key]
    if "perceptual" in obj:
        out.setdefault("perceptual", {}).update(obj["perceptual"])
    _merge_data_section(obj.get("data"), out["data"], resolution, errors, where)
    if obj.get("use_wandb"):
        out["train"]["use_wandb"] = True
        if obj.get("project_name"):
            out["train"]["wandb_project"] = str(obj["project_name"])
    _fail(errors, where)
    return out


def _model_type(obj: dict, errors: list[str], where: str) -> str:
    """The vqfast model.type of ``obj['model_type']``; unknown top-level keys go to ``errors``."""
    known_top = {"model_type", "model_args", "train_args", "data_args", "scaling_rates", "run_dir", "seed",
                 "backend", "perceptual", "data", "cpu_overrides", "use_images", "data_process", "use_wandb",
                 "project_name"} | _IGNORED_TOP
    for key in obj:
        if key not in known_top:
            errors.append(f"unknown key {key!r} in {where} (param.json keys: {', '.join(sorted(known_top))})")
        elif key in _IGNORED_TOP:
            log.info("param.json: ignoring %r (original pipeline infrastructure; vqfast logs every train.log_every "
                     "steps and writes sample grids every train.sample_every steps)", key)
    if "model_type" not in obj:
        errors.append(f"missing 'model_type' in {where} (the original default 'VqVae2' is not registered either)")
        _fail(errors, where)
    canonical = MODEL_TYPES.get(normalize_name(obj["model_type"]))
    if canonical is None:
        raise ConfigError(f"model_type={obj['model_type']!r} in {where}: a param.json describes the seed-002 VQ "
                          f"pipeline; allowed (case-insensitive): {', '.join(sorted(set(MODEL_TYPES)))}; other "
                          "families take a vqfast YAML config")
    return canonical


def _uses_taming_loss(train_args: dict, taming_model: bool, errors: list[str], where: str) -> bool:
    """``LossCalculator``: the taming loss when the model is a taming model and ``use_taming_loss`` is not false."""
    flag = train_args.get("use_taming_loss")
    if flag not in (None, True, False):
        errors.append(f"train_args.use_taming_loss={flag!r} in {where}: true, false or null (auto-detect)")
        return taming_model
    if flag is True and not taming_model:
        errors.append(f"train_args.use_taming_loss=true in {where}: VqVae / VQVAE2 have no taming loss (the pipeline "
                      "uses its LossCalculator GAN loss for them); set it to false or null")
    return taming_model and flag is not False


def _translate_taming(model_args: dict, canonical: str, out: dict, errors: list[str], where: str,
                      taming_loss: bool) -> int | None:
    """taming ``model_args`` → model (and loss); returns ``ddconfig.resolution`` (it sets data.size)."""
    model = out["model"]
    variant = str(model_args.get("model_variant", "EMAVQ" if canonical == "emavq" else "VQModel"))
    if variant.lower() not in ("vqmodel", "emavq"):
        errors.append(f"model_args.model_variant={variant!r} in {where}: allowed 'VQModel', 'EMAVQ'")
    if canonical == "emavq" and "model_variant" not in model_args:
        log.warning("param.json: model_type EMAVQ without model_args.model_variant: vqfast builds EMAVQ as the name "
                    "says (the pipeline's adapter reads only model_variant and would build a VQModel); set "
                    "model_variant: VQModel for that")
    model["type"] = "emavq" if variant.lower() == "emavq" else "vqgan"  # model_variant decides, as the adapter
    resolution = None
    for key, value in model_args.items():
        if key not in _TAMING_ARGS:
            errors.append(f"unknown key model_args.{key!r} in {where} (allowed: {', '.join(sorted(_TAMING_ARGS))})")
        elif key in ("n_embed", "embed_dim", "ckpt_path", "ignore_keys", "beta", "legacy", "remap", "unknown_index"):
            model[key] = value
        elif key == "ddconfig":
            model["ddconfig"] = dict(value)
            resolution = model["ddconfig"].pop("resolution", None)  # → data.size (the frame size)
        elif key in ("image_key", "monitor"):
            log.info("param.json: model_args.%s is a Lightning setting the pipeline does not use", key)
        elif key == "sane_index_shape":
            log.info("param.json: model_args.sane_index_shape: the VQ task always reshapes codes to (B, h, w)")
    model.setdefault("n_embed", 1024)
    model.setdefault("embed_dim", 256)
    lossconfig = model_args.get("lossconfig") or {}
    if taming_loss:
        _translate_lossconfig(lossconfig, model, out, errors, where)
        out["train"]["lr"] = float(model_args.get("learning_rate") or model_args.get("lr") or 1e-4)
        out["train"]["scale_lr"] = False
    elif lossconfig:
        log.warning("param.json: train_args.use_taming_loss=false: model_args.lossconfig is not used (the pipeline's "
                    "LossCalculator trains with its own GAN loss and train_args.lr)")
    return resolution


def _translate_lossconfig(lossconfig: dict, model: dict, out: dict, errors: list[str], where: str) -> None:
    target = lossconfig.get("target", "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator")
    if target not in LOSS_TARGETS:
        errors.append(f"model_args.lossconfig.target={target!r} in {where}: allowed {', '.join(LOSS_TARGETS)}")
    else:
        out["loss"]["kind"] = LOSS_TARGETS[target]
    params = dict(lossconfig.get("params") or {})
    if not lossconfig:  # the pipeline's default lossconfig (TamingVQGANAdapter)
        in_ch = (model.get("ddconfig") or {}).get("in_channels", 3)
        params = {"disc_conditional": False, "disc_in_channels": in_ch, "disc_start": 10000,
                  "disc_weight": 0.8, "codebook_weight": 1.0}
    out["loss"].update(params)


def _translate_vqvae2(model_args: dict, out: dict, errors: list[str], where: str) -> None:
    out["model"]["type"] = "vqvae2"
    for key, value in model_args.items():
        if key in _VQVAE2_RENAME:
            out["model"][_VQVAE2_RENAME[key]] = value
        else:
            errors.append(f"unknown key model_args.{key!r} in {where} (VQVAE2 allows: "
                          f"{', '.join(sorted(_VQVAE2_RENAME))})")


def _translate_vqvae(model_args: dict, out: dict, errors: list[str], where: str) -> int | None:
    out["model"]["type"] = "vqvae"
    resolution = None
    for key, value in model_args.items():
        if key == "resolution":
            resolution = value  # → data.size
        elif key in _VQVAE_KEYS:
            out["model"][key] = value
        elif key in _VQVAE_UNUSED:
            log.info("param.json: model_args.%s is unused by VqVae (as in the original)", key)
        else:
            errors.append(f"unknown key model_args.{key!r} in {where} (VqVae allows: "
                          f"{', '.join(sorted(_VQVAE_KEYS | _VQVAE_UNUSED))})")
    return resolution


_TRAIN_RENAME = {"num_steps": "max_steps", "save_interval": "ckpt_every", "validation_interval": "sample_every",
                 "use_gan": "use_gan", "disc_every": "disc_every", "batch_size": "batch_size",
                 "log_every": "log_every", "device": "device", "checkpoint_path": "pipeline_checkpoint",
                 "checkpoint_mode": "pipeline_checkpoint_mode"}


def _translate_train(args: dict, out: dict, errors: list[str], where: str, taming_loss: bool) -> None:
    train = out["train"]
    for key, value in args.items():
        if key in _TRAIN_RENAME:
            if value is not None:  # the pipeline writes "checkpoint_path": null for "from scratch"
                train[_TRAIN_RENAME[key]] = value
        elif key in ("lr", "use_taming_loss"):
            pass  # handled above
        elif key == "lr_decay":
            pass  # below (with its default)
        elif key == "folder_name":
            out["run_dir"] = value
        elif key == "disc_lr":
            if value is not None:
                train["disc_lr"] = value
        elif key in ("disc_beta1", "disc_beta2"):
            betas = train.setdefault("disc_betas", [0.5, 0.9])
            betas[0 if key == "disc_beta1" else 1] = value
        elif key in _LOSSCALC_KEYS:
            if taming_loss:  # the taming loss takes them from lossconfig.params; LossCalculator read them above
                log.info("param.json: train_args.%s is not read with the taming loss (the pipeline takes it from "
                         "model_args.lossconfig.params)", key)
        else:
            errors.append(f"unknown key train_args.{key!r} in {where}")
    train.setdefault("max_steps", TRAIN_DEFAULTS["num_steps"])
    train.setdefault("ckpt_every", TRAIN_DEFAULTS["save_interval"])
    train.setdefault("sample_every", TRAIN_DEFAULTS["validation_interval"])
    train.setdefault("use_gan", TRAIN_DEFAULTS["use_gan"])
    train.setdefault("disc_every", PIPELINE_DISC_EVERY)
    # TrainVqVae: ExponentialLR(opt_ae, gamma=lr_decay) stepped every 1000 steps; D's LR is never decayed
    train.update(scheduler="exponential", lr_decay=args.get("lr_decay", TRAIN_DEFAULTS["lr_decay"]),
                 lr_decay_every=1000)


def _translate_data(obj: dict, out: dict, errors: list[str], where: str) -> None:
    args = dict(obj.get("data_args") or {})
    data, train = out["data"], out["train"]
    images = obj.get("use_images", False)
    if images not in (True, False):
        errors.append(f"use_images={images!r} in {where}: true or false")
    data["kind"] = "images" if images is True else "video"
    for key, value in args.items():
        if key == "batch_size":
            train["batch_size"] = value
        elif key == "sequence_length":
            if not images:
                data["clip_len"] = value
        elif key == "seed":
            out["seed"] = value
        elif key == "num_threads":
            data["num_threads"] = value
        elif key in ("training_data_files", "validation_data_files"):
            files = _file_list(value, f"data_args.{key}", errors, where)
            if files is not None:
                data["train_files" if key == "training_data_files" else "val_files"] = files
        elif key in _IGNORED_DATA:
            log.info("param.json: data_args.%s is not used by vqfast (DALI / device placement)", key)
        else:
            errors.append(f"unknown key data_args.{key!r} in {where}")
    if images and "batch_size" in train:  # ImageDataset: each sample is sequence_length independent images
        per_sample = int(args.get("sequence_length", 1) or 1)
        train["batch_size"] = int(train["batch_size"]) * per_sample
        if per_sample > 1:
            log.info("param.json: use_images: batch_size %s x sequence_length %d = train.batch_size %d images per "
                     "step (the pipeline's image 'sequences' are independent images)", args["batch_size"],
                     per_sample, train["batch_size"])
    _translate_data_process(obj.get("data_process"), data, errors, where)


def _translate_data_process(process, data: dict, errors: list[str], where: str) -> None:
    """``data_process.{train, vaild}``: the folders ``list_videos`` fills the file lists from (they replace
    ``data_args.training_data_files`` / ``validation_data_files``, as ``train_custom_videos.py`` does)."""
    if process is None:
        return
    if not isinstance(process, dict):
        errors.append(f"data_process={process!r} in {where}: expected {{\"train\": FOLDER, \"vaild\": FOLDER}}")
        return
    for key, value in process.items():
        if key not in ("train", "vaild", "valid"):
            errors.append(f"unknown key data_process.{key!r} in {where} (allowed: train, vaild)")
        elif not isinstance(value, str) or not value:
            errors.append(f"data_process.{key}={value!r} in {where}: expected a folder path")
    if "vaild" in process and "valid" in process:
        errors.append(f"data_process names both 'vaild' and 'valid' in {where}: keep one")
    for key, target, files in (("train", "root", "train_files"), ("vaild", "val_root", "val_files"),
                               ("valid", "val_root", "val_files")):
        if isinstance(process.get(key), str) and process[key]:
            if data.pop(files, None) is not None:
                log.warning("param.json: data_process.%s replaces data_args.%s (as in the pipeline)", key,
                            "training_data_files" if files == "train_files" else "validation_data_files")
            data[target] = process[key]


def _file_list(value, key: str, errors: list[str], where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        errors.append(f"{key} in {where}: expected a list of file paths, got {value!r}")
        return None
    if not value:
        errors.append(f"{key} in {where} is an empty list: name the files, or use data_process")
        return None
    return list(value)


def _merge_data_section(section, data: dict, resolution, errors: list[str], where: str) -> None:
    """A vqfast ``data:`` section in the param.json (the shipped one asks for synthetic data) on top of the
    translated keys; ``resolution`` (ddconfig / VqVae) is the frame size unless that section sets data.size."""
    section = dict(section or {})
    named = [k for k in ("root", "train_files") if data.get(k) is not None]
    if named and (section.get("synthetic") or section.get("root") or section.get("train_files")):
        errors.append(f"{where} names its training data twice: data_process / data_args.training_data_files and "
                      "the vqfast data section (root, train_files or synthetic); keep one")
    if resolution is not None:
        size = section.get("size", resolution)
        if size != resolution:
            errors.append(f"data.size={size} differs from the model's resolution={resolution} in {where} "
                          "(ddconfig.resolution sets the frame size; drop one)")
        data["size"] = resolution
    data.update(section)


def _fail(errors: list[str], where: str) -> None:
    if errors:
        raise ConfigError(f"invalid param.json {where}:\n  - " + "\n  - ".join(errors))
