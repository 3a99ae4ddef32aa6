"""Where a config comes from: a file (or shipped name) → raw dict, ``cpu_overrides``, ``--set`` → raw dict.

Family-agnostic: the family registry (``vqfast.train.families``) turns the raw dict into its typed config.
Precedence: dataclass defaults < file < ``cpu_overrides`` (only when training runs on CPU) < ``--set``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from vqfast.errors import ConfigError

log = logging.getLogger("vqfast")
SHIPPED_DIR = Path(__file__).resolve().parent.parent.parent / "configs"
SUFFIXES = (".yaml", ".yml", ".json")


def shipped_configs() -> list[Path]:
    return sorted(p for p in SHIPPED_DIR.iterdir() if p.suffix in SUFFIXES)


def resolve_config_path(name: str | Path) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    for cand in (SHIPPED_DIR / str(name), *(SHIPPED_DIR / f"{name}{ext}" for ext in SUFFIXES)):
        if cand.is_file():
            return cand
    names = ", ".join(p.stem for p in shipped_configs())
    raise ConfigError(f"config {str(name)!r} not found (not a file; shipped configs: {names})")


def read_json(path: Path) -> dict:
    """JSON with the ``//`` comments and ``...`` placeholders seed-002's param.json examples carry."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^((?:[^\"\n]|\"(?:[^\"\\\n]|\\.)*\")*?)\s*//[^\n]*$", r"\1", text)
    text = re.sub(r",\s*\.\.\.\s*", "", text)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: top level must be an object, got {type(obj).__name__}")
    return obj


def read_file(path: Path) -> dict:
    if path.suffix == ".json":
        return read_json(path)
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
    """``["a.b=1", "c=[1, 2]"]`` → ``[("a.b", 1), ("c", [1, 2])]`` (values parsed as YAML)."""
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


def apply_overrides(raw: dict, overrides: list[tuple[str, Any]], what: str = "--set") -> dict:
    raw = copy.deepcopy(raw)
    for key, value in overrides:
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{what} {key}=...: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def _runs_on_cpu(raw: dict, parsed: list[tuple[str, Any]]) -> bool:
    train = raw.get("train") if isinstance(raw.get("train"), dict) else {}
    device = dict(parsed).get("train.device", train.get("device", "auto"))
    if device == "auto":
        import torch
        return not torch.cuda.is_available()
    return str(device).startswith("cpu")


def with_overrides(raw: dict, overrides: Iterable[str], where: str) -> tuple[dict, str]:
    """Apply ``cpu_overrides`` (on CPU) and ``--set`` to ``raw``; returns (raw, where-with-overrides)."""
    parsed = parse_overrides(overrides)
    cpu = raw.get("cpu_overrides") or {}
    if not isinstance(cpu, dict):
        raise ConfigError(f"cpu_overrides in {where}: expected a mapping of dotted keys, got {cpu!r}")
    if cpu and _runs_on_cpu(raw, parsed):
        log.info("training on CPU: applying cpu_overrides from %s: %s", where, cpu)
        raw = apply_overrides(raw, list(cpu.items()), "cpu_overrides")
    raw = apply_overrides(raw, parsed)
    if parsed:
        where += " with --set " + " ".join(k for k, _ in parsed)
    return raw, where


def to_yaml(cfg) -> str:
    """The resolved config as YAML (every value used; informational fields left out)."""
    data = dataclasses.asdict(cfg)
    data.pop("source", None)
    return yaml.safe_dump(data, sort_keys=False)
