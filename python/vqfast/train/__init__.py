"""Training front end: configs, the engine loop, tasks, checkpoints (``python -m vqfast.train``)."""
from vqfast.train.config import Config
from vqfast.train.errors import CheckpointError, ConfigError, FamilyNotImplementedError
from vqfast.train.loading import load_config


def train(cfg, resume=None):
    from vqfast.train.engine import train as _train
    return _train(cfg, resume)


__all__ = ["Config", "ConfigError", "CheckpointError", "FamilyNotImplementedError", "load_config", "train"]
