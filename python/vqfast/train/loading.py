"""Load a config: vqfast YAML or seed-002 ``param.json`` → typed ``Config`` (defaults < file < ``--set``).

Unknown or mistyped keys fail here, before any work, naming the key and the file.
A bare name (``quickstart``) resolves to a config shipped in ``vqfast/configs``.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterable

import yaml

from vqfast.train import paramjson
from vqfast.train.config import Config
from vqfast.train.errors import ConfigError
from vqfast.train.registry import resolve_family
from vqfast.train.schema import from_dict, raise_if

log = logging.getLogger("vqfast")
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "configs"


def shipped_configs() -> list[Path]:
    return sorted(p for p in SHIPPED_DIR.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def resolve_config_path(name: str | Path) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    for cand in (SHIPPED_DIR / str(name), *(SHIPPED_DIR / f"{name}{ext}" for ext in (".yaml", ".yml", ".json"))):
        if cand.is_file():
            return cand
    names = ", ".join(p.stem for p in shipped_configs())
    raise ConfigError(f"config {str(name)!r} not found (not a file; shipped configs: {names})")


def read_raw(path: Path) -> dict:
    if path.suffix == ".json":
        obj = paramjson.read_json(path)
        return paramjson.translate(obj, str(path)) if paramjson.is_param_json(obj) else obj
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(obj).__name__}")
    return obj


def parse_overrides(items: Iterable[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. train.max_steps=2)")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: bad key {key!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        out.append((key, value))
    return out


def apply_overrides(raw: dict, overrides: list[tuple[str, Any]]) -> dict:
    raw = copy.deepcopy(raw)
    for key, value in overrides:
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}=...: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def build_config(raw: dict, where: str) -> Config:
    from vqfast.train.stargan_config import build_stargan_config, is_stargan_raw

    if is_stargan_raw(raw):  # a whole-config family: its own typed dataclass
        cfg = build_stargan_config(raw, where)
        check_ranges(cfg, where)
        return cfg
    errors: list[str] = []
    raw = dict(raw)
    model_raw = raw.pop("model", None) or {}
    if not isinstance(model_raw, dict):
        raise ConfigError(f"model ({where}): expected a mapping, got {model_raw!r}")
    model_type = model_raw.get("type", "vqgan")
    family = resolve_family(model_type)
    cfg = from_dict(Config, raw, errors, where)
    model_cfg = from_dict(family.config_cls, dict(model_raw, type=family.canonical), errors, where, prefix="model.")
    raise_if(errors, where)
    cfg.model = model_cfg
    cfg.source = where
    check_ranges(cfg, where)
    _cross_checks(cfg, where)
    return cfg


# Field names that mean a count of codes / channels / frames (>= 1) or a learning rate (> 0), wherever
# they sit in a family's config tree: checked generically so every family fails before training.
_AT_LEAST_ONE = {"n_embed", "embed_dim", "nb_entries", "vocab_size", "codebook_size", "codebook_dim", "clip_len",
                 "frame_stride", "num_domains", "style_dim", "latent_dim", "batch_size", "patch_size", "depth",
                 "num_heads", "z_channels", "ch", "in_channels", "hidden_channels", "nb_levels"}
_POSITIVE = {"lr", "disc_lr", "lr_d", "lr_g", "lr_e", "lr_f", "base_learning_rate", "learning_rate"}


def check_ranges(cfg, where: str) -> None:
    """Reject out-of-range values anywhere in a config tree, naming the dotted key (before any work)."""
    problems: list[str] = []

    def walk(node, prefix: str) -> None:
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, key + ".")
            elif isinstance(value, bool) or value is None:
                continue
            elif f.name in _AT_LEAST_ONE and isinstance(value, int) and value < 1:
                problems.append(f"{key}={value} (must be >= 1)")
            elif f.name in _POSITIVE and isinstance(value, (int, float)) and not value > 0:
                problems.append(f"{key}={value} (must be > 0)")

    walk(cfg, "")
    if problems:
        raise ConfigError(f"invalid config {where}:\n  - " + "\n  - ".join(problems))


def _cross_checks(cfg: Config, where: str) -> None:
    problems = []
    if cfg.loss.kind == "vqlpips" and cfg.model.type in ("vqgan", "emavq"):
        if cfg.loss.disc_in_channels != cfg.model.ddconfig.out_ch and not cfg.loss.disc_conditional:
            problems.append(f"loss.disc_in_channels={cfg.loss.disc_in_channels} must equal "
                            f"model.ddconfig.out_ch={cfg.model.ddconfig.out_ch}")
        if cfg.model.ddconfig.resolution != cfg.data.size:
            problems.append(f"model.ddconfig.resolution={cfg.model.ddconfig.resolution} differs from "
                            f"data.size={cfg.data.size} (attention placement depends on it)")
    if len(cfg.data.mean) != len(cfg.data.std):
        problems.append(f"data.mean has {len(cfg.data.mean)} entries but data.std has {len(cfg.data.std)}")
    if problems:
        raise ConfigError(f"invalid config {where}:\n  - " + "\n  - ".join(problems))


def _runs_on_cpu(raw: dict, parsed: list[tuple[str, Any]]) -> bool:
    device = dict(parsed).get("train.device", (raw.get("train") or {}).get("device", "auto"))
    if device == "auto":
        import torch
        return not torch.cuda.is_available()
    return str(device).startswith("cpu")


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    resolved = resolve_config_path(path)
    raw = read_raw(resolved)
    parsed = parse_overrides(overrides)
    cpu = raw.get("cpu_overrides") or {}
    if cpu and _runs_on_cpu(raw, parsed):
        if not isinstance(cpu, dict):
            raise ConfigError(f"cpu_overrides in {resolved}: expected a mapping of dotted keys, got {cpu!r}")
        log.info("training on CPU: applying cpu_overrides from %s: %s", resolved, cpu)
        raw = apply_overrides(raw, list(cpu.items()))
    raw = apply_overrides(raw, parsed)
    where = str(resolved) + (" with --set " + " ".join(f"{k}" for k, _ in parsed) if parsed else "")
    return build_config(raw, where)


def config_to_yaml(cfg: Config) -> str:
    data = dataclasses.asdict(cfg)
    data.pop("source", None)
    return yaml.safe_dump(data, sort_keys=False)
