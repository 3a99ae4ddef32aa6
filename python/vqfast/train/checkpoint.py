"""Atomic checkpoints (temp file + rename): modules, optimizers, schedulers, RNG states, step, config.

Loading uses ``torch.load(weights_only=True)`` (never executes code). A corrupt or mismatched checkpoint
raises ``CheckpointError`` naming the file and the reason.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqfast.train.errors import CheckpointError

log = logging.getLogger("vqfast")
FORMAT = "vqfast-train-checkpoint"
VERSION = 1


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"python": list(random.getstate()[1]), "python_version": random.getstate()[0],
             "python_gauss": random.getstate()[2],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(dict(payload, format=FORMAT, version=VERSION), tmp)
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        cand = path / "checkpoints" / "last.pt"
        path = cand if cand.is_file() else path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not a vqfast checkpoint "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a vqfast training checkpoint "
                              f"(format={obj.get('format') if isinstance(obj, dict) else type(obj).__name__!r}; "
                              f"expected {FORMAT!r}); for taming weights use model.ckpt_path")
    obj["path"] = str(path)
    return obj


def restore(obj: dict[str, Any], modules: dict, optimizers: dict, schedulers: dict) -> None:
    path = obj.get("path", "?")
    for group, targets in (("modules", modules), ("optimizers", optimizers), ("schedulers", schedulers)):
        stored = obj.get(group, {})
        for name, target in targets.items():
            if name not in stored:
                raise CheckpointError(f"checkpoint {path!r} has no {group[:-1]} {name!r} (it has: "
                                      f"{', '.join(stored) or 'none'}); was it written by a different config?")
            try:
                if group == "modules":
                    target.load_state_dict(stored[name], strict=True)
                else:
                    target.load_state_dict(stored[name])
            except (RuntimeError, ValueError, KeyError) as exc:
                raise CheckpointError(f"checkpoint {path!r}: {group[:-1]} {name!r} does not match the one built "
                                      f"from the config: {str(exc).splitlines()[0][:300]}") from exc


def prune(ckpt_dir: Path, keep: int) -> None:
    periodic = sorted(ckpt_dir.glob("step_*.pt"))
    for old in periodic[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
