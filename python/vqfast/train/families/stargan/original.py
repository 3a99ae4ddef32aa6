"""Translate the seed-003 project's own YAML/JSON config (``configs/stargan_v2_latent.yaml`` of the latent StarGAN v2
project: ``experiment``, ``model``, ``loss``, ``training``, ``visualization``, ``data``, ``checkpoint``, ``eval``)
into this family's raw config, so the file runs unchanged with ``python -m vqfast.train --config``.

Policy: every key that changes what is trained is honoured or refused (``ConfigError`` naming it); keys that
only steer the original's own infrastructure (console log file, progress printing, DataLoader workers, the
offline ``eval`` section, where it writes grids) do not change the run and are listed in one warning with what
vqfast does instead. Epoch-based keys become steps with the original's steps per epoch
(``epoch_size // batch_size``, ``epoch_size`` defaulting to the largest domain × domains), counted from
``data.data_root`` (a missing folder is an error naming the key). ``checkpoint.resume_path``, when the file
exists, resumes as the original does (``trainer.py`` ``_load_checkpoint``): weights and optimizers loaded, epoch
``epoch + 1`` and the global step continue, the remaining ``num_epochs − epoch`` epochs are trained.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from vqfast.data.latents import DomainFolderLatents, domain_files
from vqfast.errors import ConfigError, DataNotFoundError, VQFastError

log = logging.getLogger("vqfast")

EXP_BRANCHES = {"baseline_AdaIN": ("instance", True), "AdaGN_with_SN": ("group", True),
                "AdaGN_no_SN": ("group", False)}
"""seed 003 ``model.py`` ``build_models``: exp_branch → (norm, spectral norm in D); absent = baseline_AdaIN."""

_MODEL_SAME = ("latent_channels", "style_dim", "base_dim", "num_domains", "n_res_blocks", "d_layers", "latent_dim",
               "mapping_hidden_dim", "mapping_shared_layers", "num_groups")
_MODEL_REQUIRED = ("latent_channels", "style_dim", "base_dim", "n_res_blocks", "num_domains", "d_layers")
_LOSS_SAME = ("w_adv", "w_sty", "w_cyc", "w_id", "w_ds", "ds_decay_epochs", "ds_margin", "w_r1", "r1_interval")
_TRAINING_SAME = ("lr_g", "lr_d", "lr_mapping", "weight_decay", "lr_schedule", "warmup_steps", "min_lr_ratio",
                  "use_amp", "amp_dtype", "optim_fused", "latent_scale", "allow_tf32", "cudnn_benchmark",
                  "compile_mode", "compile_dynamic", "compile_fullgraph", "compile_cudagraphs")
_COMPILE_NETS = {"compile_generator": "G", "compile_mapping_network": "F", "compile_style_encoder": "E",
                 "compile_discriminator": "D"}
_INFRA = {
    "training": {"display_interval": "progress lines follow train.log_every",
                 "log_json": "metrics.jsonl is always written", "console_log_path": "the log is run_dir/train.log",
                 "loss_plot_interval": "plot with python -m vqfast.plot", "loss_plot_path": "python -m vqfast.plot",
                 "num_workers": "the loader preloads the latents in-process", "pin_memory": "batches are small",
                 "eval_interval": "sampling follows visualization.every_epochs", "progress_style": "train.progress"},
    "visualization": {"save_dir": "grids go to run_dir/samples", "eval_dir": "use python -m vqfast.stargan_sample",
                      "suppress_hf_warnings": "vqfast never downloads", "auto_eval_latest":
                      "use python -m vqfast.stargan_sample after training"},
    "data": {"preload_to_gpu": "latents are preloaded on the host", "eval_data_root": "stargan_sample --data",
             "image_root": "offline evaluation only", "decoded_source_dir": "offline evaluation only"},
    "checkpoint": {"save_dir": "checkpoints go to run_dir/checkpoints"},
}
_SECTIONS = ("experiment", "model", "loss", "training", "visualization", "data", "checkpoint", "eval", "exp_name")


def is_original(raw: dict) -> bool:
    """A seed-003 config: its ``training`` section carries num_epochs/batch_size, or it has ``checkpoint`` /
    ``experiment`` sections, or ``data.data_root`` / ``data.root_dir``; and no vqfast ``model.type``/``train``."""
    if not isinstance(raw, dict) or "train" in raw:
        return False
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    if "type" in model:
        return False
    training = raw.get("training") if isinstance(raw.get("training"), dict) else {}
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    return bool({"num_epochs", "batch_size"} & set(training) or {"checkpoint", "experiment"} & set(raw)
                or {"data_root", "root_dir"} & set(data))


def translate_if_original(raw: dict, where: str) -> dict | None:
    """The registry's hook: the translated dict for a seed-003 config, else None."""
    return translate(raw, where) if is_original(raw) else None


def expand_templates(raw: dict, where: str) -> dict:
    """seed 003 ``run.py`` ``expand_config_templates``: ``{exp_name}``/``{outputs_dir}`` (also ``${...}``) in every
    string; exp_name = experiment.name (or top-level exp_name), outputs_dir = experiment.outputs_dir or
    ``outputs/{exp_name}``."""
    exp = raw.get("experiment") if isinstance(raw.get("experiment"), dict) else {}
    name = str(exp.get("name", raw.get("exp_name", "")) or "").strip()
    text = repr(raw)
    if ("{exp_name}" in text or "{outputs_dir}" in text) and not name:
        raise ConfigError(f"{where}: the config uses {{exp_name}}/{{outputs_dir}} placeholders but experiment.name "
                          "is missing")
    outputs = str(exp.get("outputs_dir", f"outputs/{name}" if name else "outputs")).strip()
    values = {"exp_name": name, "outputs_dir": outputs.replace("{exp_name}", name).replace("${exp_name}", name)}

    def rec(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: rec(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rec(v) for v in node]
        if isinstance(node, str):
            return re.sub(r"\$?\{(exp_name|outputs_dir)\}", lambda m: values[m.group(1)], node)
        return node
    out = rec(raw)
    out["_outputs_dir"] = values["outputs_dir"]
    return out


def _section(raw: dict, name: str, errors: list[str]) -> dict:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(f"{name}: expected a mapping, got {value!r}")
        return {}
    return value


def translate_model(src: dict, out: dict, errors: list[str]) -> None:
    m = out["model"]
    missing = [k for k in _MODEL_REQUIRED if k not in src]
    if missing:
        errors.append(f"model.{', model.'.join(missing)}: required by the original build_models")
    for key, value in src.items():
        if key in _MODEL_SAME:
            m[key] = value
        elif key == "exp_branch":
            if value not in EXP_BRANCHES:
                errors.append(f"model.exp_branch={value!r}; allowed: {', '.join(EXP_BRANCHES)}")
        else:
            errors.append(f"model.{key}: not a key of the seed-003 model (allowed: {', '.join(_MODEL_SAME)}, "
                          "exp_branch)")
    norm, sn = EXP_BRANCHES.get(src.get("exp_branch", "baseline_AdaIN"), ("instance", True))
    m.update(norm=norm, d_spectral_norm=sn)
    if isinstance(src.get("base_dim"), int):  # the original D starts at base_dim // 4, E at max(base_dim // 2, 64)
        m.update(d_dim=max(1, src["base_dim"] // 4), style_mid_dim=max(src["base_dim"] // 2, 64))


def _same(src: dict, keys, dest: dict, section: str, errors: list[str], extra=()) -> None:
    for key, value in src.items():
        if key in keys:
            dest[key] = value
        elif key not in extra:
            errors.append(f"{section}.{key}: not honoured by vqfast (no equivalent); remove it")


def _training(src: dict, out: dict, ignored: list[str], errors: list[str]) -> None:
    t = out["training"]
    extra = {"seed", "batch_size", "num_epochs", "save_interval", "log_interval", "progress_bar", "drop_last",
             "use_compile", *_COMPILE_NETS, *_INFRA["training"]}
    _same(src, _TRAINING_SAME, t, "training", errors, extra)
    if "lr_d" not in src:
        errors.append("training.lr_d: required by the original trainer")
    if "batch_size" not in src:
        errors.append("training.batch_size: required by the original trainer")
    else:
        out["train"]["batch_size"] = src["batch_size"]
    out["seed"] = src.get("seed", 42)
    out["train"]["log_every"] = src.get("log_interval", 50)
    out["train"]["progress"] = bool(src.get("progress_bar", True)) and src.get("progress_style", "percent") != "off"
    t["compile"] = bool(src.get("use_compile", False))
    t["compile_nets"] = [net for key, net in _COMPILE_NETS.items() if src.get(key, True)]
    if not src.get("drop_last", not src.get("compile_dynamic", False)):
        errors.append("training.drop_last=false: vqfast trains on full batches only; set it true")
    ignored += [f"training.{k} ({why})" for k, why in _INFRA["training"].items() if k in src]


def _visualization(src: dict, out: dict, ignored: list[str], errors: list[str]) -> None:
    v = out["visualization"]
    extra = {"every_epochs", "vae_model_name_or_path", *_INFRA["visualization"]}
    _same(src, ("num_samples", "vae_subfolder", "random_noise_seed"), v, "visualization", errors, extra)
    vae = src.get("vae_model_name_or_path", "runwayml/stable-diffusion-v1-5")
    if vae and Path(vae).is_dir():
        v["vae_path"] = vae
    elif vae:
        ignored.append(f"visualization.vae_model_name_or_path={vae!r} (not a local folder and vqfast never downloads:"
                       " grids show latent channels; give a local diffusers snapshot to decode them)")
    ignored += [f"visualization.{k} ({why})" for k, why in _INFRA["visualization"].items() if k in src]


def _data(src: dict, out: dict, ignored: list[str], errors: list[str]) -> None:
    d = out["data"]
    d["layout"] = "domain_folders"
    extra = {"data_root", "root_dir", "domains", *_INFRA["data"]}
    _same(src, ("epoch_size",), d, "data", errors, extra)
    root = src.get("data_root", src.get("root_dir"))
    if root is None:
        errors.append("data.data_root: required (the folder holding one sub-folder of latents per domain)")
    d["root"] = root
    if not src.get("domains"):
        errors.append("data.domains: required (the domain sub-folder names)")
    d["domains"] = list(src.get("domains") or [])
    ignored += [f"data.{k} ({why})" for k, why in _INFRA["data"].items() if k in src]


def _steps_per_epoch(out: dict, key: str) -> int:
    d, bs = out["data"], out["train"]["batch_size"]
    try:
        sizes = [len(f) for f in domain_files(d["root"], d["domains"])]
    except VQFastError as exc:
        raise DataNotFoundError(f"{key}={d['root']!r}: {exc}") from exc
    epoch_size = d.get("epoch_size") or max(sizes) * len(sizes)
    spe = DomainFolderLatents.steps_per_epoch(int(epoch_size), int(bs))
    if spe == 0:
        raise ConfigError(f"training.batch_size={bs} exceeds the {epoch_size} samples of an epoch")
    return spe


def _resume(src: dict, out: dict, num_epochs: int, ignored: list[str], errors: list[str]) -> int:
    """checkpoint.resume_path → training.init_from (+ start epoch/step); returns the epochs already done."""
    for key in src:
        if key not in ("save_dir", "resume_path"):
            errors.append(f"checkpoint.{key}: not a seed-003 checkpoint key (save_dir, resume_path)")
    ignored += [f"checkpoint.{k} ({why})" for k, why in _INFRA["checkpoint"].items() if k in src]
    path = str(src.get("resume_path", "") or "").strip()
    if not path:
        return 0
    if not Path(path).is_file():
        log.warning("checkpoint.resume_path=%r does not exist: training from scratch (as seed 003 does)", path)
        return 0
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ConfigError(f"checkpoint.resume_path={path!r} cannot be read ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]})") from exc
    done = int(obj.get("epoch", 0)) if isinstance(obj, dict) else 0
    out["training"].update(init_from=path, init_optimizers=True, start_epoch=done + 1,
                           start_step=int(obj.get("global_step", 0)) if isinstance(obj, dict) else 0)
    log.info("checkpoint.resume_path: resuming seed-003 checkpoint %s after epoch %d of %d", path, done, num_epochs)
    return done


def translate(raw: dict, where: str) -> dict[str, Any]:
    errors: list[str] = []
    ignored: list[str] = []
    raw = expand_templates(raw, where)
    out: dict[str, Any] = {"model": {"type": "stargan_v2_latent"}, "training": {}, "loss": {}, "data": {},
                           "train": {}, "visualization": {}, "run_dir": raw.pop("_outputs_dir")}
    for key in raw:
        if key not in _SECTIONS:
            errors.append(f"{key}: not a section of the seed-003 config ({', '.join(_SECTIONS)})")
    exp = _section(raw, "experiment", errors)
    errors += [f"experiment.{k}: not a seed-003 key (name, outputs_dir)" for k in exp if k not in ("name",
                                                                                                     "outputs_dir")]
    translate_model(_section(raw, "model", errors), out, errors)
    _same(_section(raw, "loss", errors), _LOSS_SAME, out["loss"], "loss", errors)
    training = _section(raw, "training", errors)
    _training(training, out, ignored, errors)
    vis = _section(raw, "visualization", errors)
    _visualization(vis, out, ignored, errors)
    _data(_section(raw, "data", errors), out, ignored, errors)
    if "eval" in raw:
        ignored.append("eval (the original's offline utils/eval.py metrics; see python -m vqfast.stargan_sample)")
    num_epochs = int(training.get("num_epochs", 1))
    done = _resume(_section(raw, "checkpoint", errors), out, num_epochs, ignored, errors)
    if errors:
        raise ConfigError(f"seed-003 config {where}:\n  - " + "\n  - ".join(errors))
    spe = _steps_per_epoch(out, "data.data_root" if "data_root" in raw["data"] else "data.root_dir")
    save_every = int(training.get("save_interval", 10))
    vis_every = int(vis.get("every_epochs", training.get("eval_interval", save_every)))
    out["train"].update(max_steps=max(0, num_epochs - done) * spe, ckpt_every=max(1, save_every) * spe,
                        sample_every=max(1, vis_every) * spe)
    if ignored:
        log.warning("seed-003 config %s: keys that steer only the original's infrastructure (no effect on what is "
                    "trained): %s", where, "; ".join(ignored))
    log.info("seed-003 config %s: %d epochs x %d steps (batch %s) from epoch %d; data %s (%s)", where,
             num_epochs - done, spe, out["train"]["batch_size"], done + 1, out["data"]["root"],
             ", ".join(out["data"]["domains"]))
    return out
