"""Training: ``python -m vqfast.train --config FILE`` (see ``__main__``), or from Python::

    cfg = load_config("quickstart", ["train.max_steps=2"])   # a family's typed config
    last = train(cfg)                                        # last logged metrics

Layout: ``config/`` (sources, schema, shared sections) ← ``engine/`` (the loop and the Task contract) ←
``families/`` (one package per family; ``families/__init__.py`` is the registry) ← ``__main__``.
"""
from __future__ import annotations

from vqfast.errors import CheckpointError, ConfigError
from vqfast.train.engine.loop import Trainer
from vqfast.train.families import load_config, task_for


def trainer(cfg, resume: str | None = None) -> Trainer:
    """The engine's ``Trainer`` for ``cfg`` with its family's task."""
    return Trainer(cfg, task_for(cfg), resume)


def train(cfg, resume: str | None = None) -> dict[str, float]:
    """Run (or resume from a checkpoint file or run directory) training of ``cfg``; returns the last metrics."""
    return trainer(cfg, resume).fit()


__all__ = ["CheckpointError", "ConfigError", "Trainer", "load_config", "train", "trainer"]
