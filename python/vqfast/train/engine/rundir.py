"""A run owns its run directory: an exclusive lock for its whole life, and no accidental overwrite.

* ``run_dir/.lock`` is held with ``flock`` (released by the OS when the process dies, so a crash never leaves
  a stale lock); it records the holder's pid, host and start time, which a second process names in its error.
* A fresh run (no ``--resume``) into a run directory that holds results (checkpoints, metrics, samples,
  exported weights) stops with an error that says to resume, pick another ``run_dir``, or set
  ``train.overwrite: true``, which deletes those results first. Generated data under ``run_dir/data`` is
  never deleted (it is input, not a result).
"""
from __future__ import annotations

import datetime
import fcntl
import logging
import os
import shutil
import socket
from pathlib import Path

from vqfast.errors import RunDirError

log = logging.getLogger("vqfast")

RESULT_DIRS = ("checkpoints", "samples")
RESULT_FILES = ("metrics.jsonl", "model.safetensors")
LOG_FILES = ("epochs.jsonl", "train.log")


def results(run_dir: Path) -> list[Path]:
    """What a previous run that trained left in ``run_dir``: checkpoints, metrics, samples, exported weights."""
    out = [run_dir / d for d in RESULT_DIRS if (run_dir / d).is_dir() and any((run_dir / d).iterdir())]
    return out + [run_dir / f for f in RESULT_FILES if (run_dir / f).is_file() and (run_dir / f).stat().st_size]


def _logs(run_dir: Path) -> list[Path]:
    return [run_dir / f for f in LOG_FILES if (run_dir / f).is_file()] + sorted(run_dir.glob("events.out.tfevents*"))


class RunDirLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise RunDirError(f"run_dir {str(self.path.parent)!r} is in use by another vqfast run ({holder}); "
                              "wait for it to finish or choose another run_dir") from None
        os.ftruncate(fd, 0)
        now = datetime.datetime.now().isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {now}".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def claim(run_dir: Path, *, resume: bool, overwrite: bool) -> RunDirLock:
    """Lock ``run_dir`` for this run and make sure a fresh run overwrites nothing by accident."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunDirLock(run_dir)
    lock.acquire()
    try:
        found = results(run_dir)
        if found and not resume:
            names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
            if not overwrite:
                raise RunDirError(f"run_dir {str(run_dir)!r} already holds a run ({names}): continue it with "
                                  f"--resume {run_dir}, choose another run_dir, or set train.overwrite=true to "
                                  "delete it and start over")
            log.warning("train.overwrite: deleting the previous run's results in %s (%s)", run_dir, names)
            for p in found + _logs(run_dir):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    except BaseException:
        lock.release()
        raise
    return lock
