"""What a family is to the registry: its names, its whole-config class, its task, its foreign formats."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional


def normalize_name(name: str) -> str:
    """``TamingVQGAN`` = ``taming_vqgan`` = ``tamingvqgan`` (case, ``_`` and ``-`` ignored)."""
    return str(name).lower().replace("_", "").replace("-", "")


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    """The whole-config dataclass (a ``vqfast.train.config.RunConfig``)."""
    task_cls: type
    """The ``vqfast.train.engine.task.Task`` that trains it."""
    model_types: Mapping[str, str]
    """Accepted ``model.type`` names (normalised, see ``normalize_name``) → the canonical ``model.type``."""
    translate: Optional[Callable[[dict, str], Optional[dict]]] = None
    """A foreign config format (seed-002 ``param.json``, ...) → this family's raw dict; None when the dict is
    not in that format."""
