"""Tasks: one object per model family, plugged into the single engine loop (``vqfast.train.engine``).

A task supplies ``modules()`` (checkpointed nn.Modules), ``optimizers()``, ``schedulers()``,
``training_step(x, step) -> dict of detached 0-dim tensors``, ``reconstruct(x)`` for samples/PSNR and
``codebook_stats()``. Register new tasks in ``TASKS`` (closed dict of explicit imports).

Hooks for families registered with ``owns_data=True`` (``vqfast.train.registry``):
``ensure_dataset(run_dir)`` (generate data when data.root is unset, before config.yaml is written),
``build_loader(rank=, world_size=)`` (a loader with set_epoch/len whose raw batches go straight to
``training_step``). Optional for every task (checked with hasattr): ``sample(run_dir, step, writer)``
(own sample images instead of input|reconstruction),
``wants_paths`` (receive ``{"images", "paths"}`` instead of the bare tensor) and ``progress_keys``.
"""
from __future__ import annotations

from vqfast.train.errors import FamilyNotImplementedError


def _vq_task(cfg, device):
    from vqfast.train.tasks.vq import VQTask
    return VQTask(cfg, device)


def _quantart_stage1_task(cfg, device):
    from vqfast.train.tasks.quantart import QuantArtStage1Task
    return QuantArtStage1Task(cfg, device)


def _quantart_stage2_task(cfg, device):
    from vqfast.train.tasks.quantart import QuantArtStage2Task
    return QuantArtStage2Task(cfg, device)


def _dinovq_task(cfg, device):
    from vqfast.train.tasks.dinovq import DinoVQTask
    return DinoVQTask(cfg, device)


def _stargan_task(cfg, device):
    from vqfast.train.tasks.stargan import StarGANLatentTask
    return StarGANLatentTask(cfg, device)


TASKS = {"vq": _vq_task, "quantart_stage1": _quantart_stage1_task, "quantart_stage2": _quantart_stage2_task,
         "dinovq": _dinovq_task, "stargan_v2_latent": _stargan_task}


def build_task(name: str, cfg, device):
    if name not in TASKS:
        raise FamilyNotImplementedError(f"no training task {name!r} yet (available: {', '.join(TASKS)})")
    return TASKS[name](cfg, device)
