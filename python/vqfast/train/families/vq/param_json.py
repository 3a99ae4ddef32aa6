"""Translate a seed-002 ``param.json`` (model_type, model_args, train_args, data_args) into a VQ-family config dict.

Mapping (the seed-002 pipeline's trainer and model factory):
- ``model_type`` → ``model.type`` (case-insensitive); taming types with
  ``model_args.model_variant: EMAVQ`` → ``emavq``.
- taming ``model_args``: ``n_embed``, ``embed_dim``, ``ddconfig``, ``ckpt_path``; ``lossconfig.target`` through
  ``LOSS_TARGETS``, ``lossconfig.params`` → ``loss.*``; LR = ``model_args.learning_rate`` or ``model_args.lr``
  or 1e-4 (the pipeline ignores ``train_args.lr`` for taming), never batch-scaled.
- VQVAE2 / VqVae ``model_args`` renamed (``input_channels``→``in_channels``, ``vocab_size``→``nb_entries``,
  ``n_init``→``embed_dim``, ``n_hid``→``hidden_channels``); LR = ``train_args.lr``; loss = MSE + 1.0·vq.
- ``train_args``: ``num_steps``→``train.max_steps``, ``lr_decay``→exponential schedule every 1000 steps
  (generator only), ``save_interval``→``ckpt_every``, ``validation_interval``→``sample_every``,
  ``use_gan``, ``disc_lr``, ``disc_beta1/2``, ``folder_name``→``run_dir``; ``disc_every`` (vqfast key) kept.
- ``data_args``: ``batch_size``, ``sequence_length``→``data.clip_len``, ``seed``.
Keys that only configure the original infrastructure (wandb, DALI sharding, device ids) are ignored with a
log line; anything else unknown is an error.
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

_IGNORED_TOP = {"use_wandb", "project_name", "data_process", "use_images", "wandb_log_interval",
                "wandb_image_interval"}
_IGNORED_DATA = {"num_threads", "device_id", "shard_id", "num_shards", "initial_prefetch_size",
                 "training_data_files", "validation_data_files"}
_IGNORED_TRAIN = {"checkpoint_path", "use_taming_loss", "pixel_loss_factor", "perceptual_loss_factor"}
_TAMING_ARGS = {"model_variant", "n_embed", "embed_dim", "ddconfig", "lossconfig", "ckpt_path", "ignore_keys",
                "learning_rate", "lr", "image_key", "monitor", "remap", "sane_index_shape", "beta", "legacy"}
_VQVAE2_RENAME = {"input_channels": "in_channels", "in_channels": "in_channels", "vocab_size": "nb_entries",
                  "nb_entries": "nb_entries", "n_init": "embed_dim", "embed_dim": "embed_dim",
                  "n_hid": "hidden_channels", "hidden_channels": "hidden_channels", "res_channels": "res_channels",
                  "nb_res_layers": "nb_res_layers", "nb_levels": "nb_levels", "scaling_rates": "scaling_rates",
                  "decay": "decay"}
_VQVAE_KEYS = {"input_channels", "output_channels", "vocab_size", "n_init", "commitment_cost", "decay", "ch",
               "ch_mult", "num_res_blocks", "attn_resolutions", "resolution", "dropout"}
_VQVAE_UNUSED = {"group_count", "n_hid", "n_blk_per_group", "sequence_length", "downsample", "upsample",
                 "use_optvq"}


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
    taming = canonical in ("vqgan", "emavq")
    if taming:
        _translate_taming(model_args, canonical, out, errors, where)
    elif canonical == "vqvae2":
        if "scaling_rates" in obj:
            model_args.setdefault("scaling_rates", obj["scaling_rates"])
        _translate_vqvae2(model_args, out, errors, where)
    else:
        _translate_vqvae(model_args, out, errors, where)
    if not taming:
        out["loss"].update(kind="mse", vq_weight=1.0)  # the pipeline: total = recon + vq_loss
        out["train"].update(lr=float((obj.get("train_args") or {}).get("lr", 1e-3)), betas=[0.9, 0.999],
                            scale_lr=False)
    _translate_train(dict(obj.get("train_args") or {}), out, errors, where, taming)
    _translate_data(dict(obj.get("data_args") or {}), out, errors, where)
    for key in ("run_dir", "seed", "backend", "cpu_overrides"):
        if key in obj:
            out[key] = obj[key]
    for key in ("perceptual", "data"):
        if key in obj:
            out.setdefault(key, {}).update(obj[key])
    _fail(errors, where)
    return out


def _model_type(obj: dict, errors: list[str], where: str) -> str:
    """The vqfast model.type of ``obj['model_type']``; unknown top-level keys go to ``errors``."""
    known_top = {"model_type", "model_args", "train_args", "data_args", "scaling_rates", "run_dir", "seed",
                 "backend", "perceptual", "data", "cpu_overrides"} | _IGNORED_TOP
    for key in obj:
        if key not in known_top:
            errors.append(f"unknown key {key!r} in {where} (param.json keys: {', '.join(sorted(known_top))})")
        elif key in _IGNORED_TOP:
            log.info("param.json: ignoring %r (original pipeline infrastructure)", key)
    if "model_type" not in obj:
        errors.append(f"missing 'model_type' in {where} (the original default 'VqVae2' is not registered either)")
        _fail(errors, where)
    canonical = MODEL_TYPES.get(normalize_name(obj["model_type"]))
    if canonical is None:
        raise ConfigError(f"model_type={obj['model_type']!r} in {where}: a param.json describes the seed-002 VQ "
                          f"pipeline; allowed (case-insensitive): {', '.join(sorted(set(MODEL_TYPES)))}; other "
                          "families take a vqfast YAML config")
    return canonical


def _translate_taming(model_args: dict, canonical: str, out: dict, errors: list[str], where: str) -> None:
    model = out["model"]
    variant = str(model_args.get("model_variant", "VQModel"))
    if variant.lower() not in ("vqmodel", "emavq"):
        errors.append(f"model_args.model_variant={variant!r} in {where}: allowed 'VQModel', 'EMAVQ'")
    model["type"] = "emavq" if (variant.lower() == "emavq" or canonical == "emavq") else "vqgan"
    for key, value in model_args.items():
        if key not in _TAMING_ARGS:
            errors.append(f"unknown key model_args.{key!r} in {where} (allowed: {', '.join(sorted(_TAMING_ARGS))})")
        elif key in ("n_embed", "embed_dim", "ckpt_path", "ignore_keys", "beta", "legacy"):
            model[key] = value
        elif key == "ddconfig":
            model["ddconfig"] = dict(value)
    model.setdefault("n_embed", 1024)
    model.setdefault("embed_dim", 256)
    lossconfig = model_args.get("lossconfig") or {}
    target = lossconfig.get("target", "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator")
    if target not in LOSS_TARGETS:
        errors.append(f"model_args.lossconfig.target={target!r} in {where}: allowed {', '.join(LOSS_TARGETS)}")
    else:
        out["loss"]["kind"] = LOSS_TARGETS[target]
    params = dict(lossconfig.get("params") or {})
    if not lossconfig:  # the pipeline's default lossconfig
        in_ch = (model.get("ddconfig") or {}).get("in_channels", 3)
        params = {"disc_conditional": False, "disc_in_channels": in_ch, "disc_start": 10000,
                  "disc_weight": 0.8, "codebook_weight": 1.0}
    out["loss"].update(params)
    out["train"]["lr"] = float(model_args.get("learning_rate") or model_args.get("lr") or 1e-4)
    out["train"]["scale_lr"] = False


def _translate_vqvae2(model_args: dict, out: dict, errors: list[str], where: str) -> None:
    out["model"]["type"] = "vqvae2"
    for key, value in model_args.items():
        if key in _VQVAE2_RENAME:
            out["model"][_VQVAE2_RENAME[key]] = value
        else:
            errors.append(f"unknown key model_args.{key!r} in {where} (VQVAE2 allows: "
                          f"{', '.join(sorted(_VQVAE2_RENAME))})")


def _translate_vqvae(model_args: dict, out: dict, errors: list[str], where: str) -> None:
    out["model"]["type"] = "vqvae"
    for key, value in model_args.items():
        if key in _VQVAE_KEYS:
            out["model"][key] = value
        elif key in _VQVAE_UNUSED:
            log.info("param.json: model_args.%s is unused by VqVae (as in the original)", key)
        else:
            errors.append(f"unknown key model_args.{key!r} in {where} (VqVae allows: "
                          f"{', '.join(sorted(_VQVAE_KEYS | _VQVAE_UNUSED))})")


def _translate_train(args: dict, out: dict, errors: list[str], where: str, taming: bool) -> None:
    train = out["train"]
    mapping = {"num_steps": "max_steps", "save_interval": "ckpt_every", "validation_interval": "sample_every",
               "use_gan": "use_gan", "disc_every": "disc_every", "batch_size": "batch_size",
               "log_every": "log_every"}
    for key, value in args.items():
        if key in mapping:
            train[mapping[key]] = value
        elif key == "lr":
            pass  # handled per family above
        elif key == "lr_decay":
            train["scheduler"] = "exponential"
            train["lr_decay"] = value
            train["lr_decay_every"] = 1000
        elif key == "folder_name":
            out["run_dir"] = value
        elif key == "disc_lr":
            if value is not None:
                train["disc_lr"] = value
        elif key in ("disc_beta1", "disc_beta2"):
            betas = train.setdefault("disc_betas", [0.5, 0.9])
            betas[0 if key == "disc_beta1" else 1] = value
        elif key in ("disc_factor", "disc_start"):
            # taming: from lossconfig.params only; VqVae/VQVAE2: the LossCalculator GAN path (use_gan), refused below
            log.info("param.json: train_args.%s is not read here (taming models take it from lossconfig.params)",
                     key)
        elif key in _IGNORED_TRAIN:
            log.info("param.json: train_args.%s is not used by vqfast", key)
        else:
            errors.append(f"unknown key train_args.{key!r} in {where}")
    train.setdefault("max_steps", 100000)
    train.setdefault("ckpt_every", 10000)
    train.setdefault("sample_every", 10000)
    if not taming and train.get("use_gan", False):
        errors.append(f"train_args.use_gan=true for a non-taming model in {where}: the seed-002 LossCalculator GAN "
                      "path is not implemented in vqfast; use a taming model_type or use_gan=false")
    if not taming:
        train["use_gan"] = False


def _translate_data(args: dict, out: dict, errors: list[str], where: str) -> None:
    for key, value in args.items():
        if key == "batch_size":
            out["train"]["batch_size"] = value
        elif key == "sequence_length":
            out["data"]["clip_len"] = value
        elif key == "seed":
            out["seed"] = value
        elif key in _IGNORED_DATA:
            log.info("param.json: data_args.%s is not used by vqfast", key)
        else:
            errors.append(f"unknown key data_args.{key!r} in {where}")


def _fail(errors: list[str], where: str) -> None:
    if errors:
        raise ConfigError(f"invalid param.json {where}:\n  - " + "\n  - ".join(errors))
