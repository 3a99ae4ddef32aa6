"""Tasks: one object per model family, plugged into the single engine loop (``vqfast.train.engine``).

A task supplies ``modules()`` (checkpointed nn.Modules), ``optimizers()``, ``schedulers()``,
``training_step(x, step) -> dict of detached 0-dim tensors``, ``reconstruct(x)`` for samples/PSNR and
``codebook_stats()``. Register new tasks in ``TASKS`` (closed dict of explicit imports).
"""
from __future__ import annotations

from vqfast.train.errors import FamilyNotImplementedError


def _vq_task(cfg, device):
    from vqfast.train.tasks.vq import VQTask
    return VQTask(cfg, device)


TASKS = {"vq": _vq_task}


def build_task(name: str, cfg, device):
    if name not in TASKS:
        raise FamilyNotImplementedError(f"no training task {name!r} yet (available: {', '.join(TASKS)})")
    return TASKS[name](cfg, device)
