"""Checkpoints that survive crashes: modules, optimizers, schedulers, RNG states, step, config, task state.

Writes are atomic and durable: temp file in the same folder → flush + fsync → ``os.replace`` → fsync of
the folder, so a crash (power loss, SIGKILL) leaves either the old or the new file, never a torn one.
``last.pt`` is written first; a periodic ``step_XXXXXXXX.pt`` is then a hard link to it (a copy where
links are unsupported), and only the newest ``keep`` periodic files are kept.

Loading uses ``torch.load(weights_only=True)`` (never executes code). A corrupt or mismatched checkpoint
raises ``CheckpointError`` naming the file and the reason. ``load_latest(run_dir)`` tries ``last.pt``, then
the periodic checkpoints newest first, and warns about every one it had to pass over.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqfast.errors import CheckpointError, CheckpointNotFoundError

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


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened; rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(path: Path, payload: dict[str, Any]) -> None:
    """Atomic, durable ``torch.save``: temp file + fsync + rename + fsync of the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(dict(payload, format=FORMAT, version=VERSION), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` = the finished file ``src`` (hard link, else an atomic copy); durable."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        import shutil
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)
    _fsync_dir(dst.parent)


def candidates(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoints of a run directory (or its ``checkpoints/`` folder), newest first: last.pt, step_* descending."""
    root = Path(run_dir)
    folder = root / "checkpoints" if (root / "checkpoints").is_dir() else root
    out = [folder / "last.pt"] if (folder / "last.pt").is_file() else []
    return out + sorted(folder.glob("step_*.pt"), reverse=True)


def load_latest(path: str | os.PathLike) -> dict[str, Any]:
    """A file: load it (no fallback). A run directory: the newest checkpoint that loads; every one passed
    over is logged as a warning. Raises ``CheckpointError`` listing each failure when none loads."""
    path = Path(path)
    if not path.is_dir():
        return load(path)
    found = candidates(path)
    if not found:
        raise CheckpointError(f"run directory {str(path)!r} has no checkpoints (looked for checkpoints/last.pt "
                              "and checkpoints/step_*.pt)")
    failures = []
    for cand in found:
        try:
            obj = load(cand)
        except CheckpointError as exc:
            failures.append(str(exc))
            log.warning("resume: skipping unreadable checkpoint: %s", exc)
            continue
        if failures:
            log.warning("resume: fell back to %s (step %s) after %d unreadable checkpoint(s)", cand,
                        obj.get("step"), len(failures))
        return obj
    raise CheckpointError(f"no loadable checkpoint in {str(path)!r}:\n  - " + "\n  - ".join(failures))


def load(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        return load_latest(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {str(path)!r} does not exist")
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
    """Keep the newest ``keep`` periodic checkpoints; remove temp files left by crashed writers."""
    periodic = sorted(ckpt_dir.glob("step_*.pt"))
    for old in periodic[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    for tmp in ckpt_dir.glob(".*.tmp*"):
        try:
            pid = int(tmp.name.rsplit(".tmp", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
