"""metrics.jsonl / epochs.jsonl / TensorBoard writer. Values are accumulated as device tensors and
synchronised once per ``log_every`` (one ``.tolist()``), never per step."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

log = logging.getLogger("vqfast")


class RunningMeans:
    """Per-key means of logged scalars. Each key is averaged over the steps that logged it: a D-phase scalar
    (``disc_loss`` with ``train.disc_every=3``) is the mean over the steps that ran a D phase. Sums stay on
    device; ``pop`` synchronises once."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0

    def add(self, logs: dict[str, torch.Tensor]) -> None:
        for k, v in logs.items():
            v = v.detach().float().reshape(())
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1
        self.steps += 1

    def pop(self) -> dict[str, float]:
        keys = list(self.sums)
        values = (torch.stack([self.sums[k] / self.counts[k] for k in keys]).tolist() if keys else [])  # one sync
        self.sums, self.counts, self.steps = {}, {}, 0
        return dict(zip(keys, values, strict=True))


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsWriter:
    def __init__(self, run_dir: Path, tensorboard: bool = True, sinks: list | None = None):
        self.sinks = list(sinks or [])
        """More writers of the same records (``write``/``image``/``close``), e.g. a task's wandb run."""
        self.metrics = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self.epochs = open(run_dir / "epochs.jsonl", "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(log_dir=str(run_dir))
            except Exception as exc:  # tensorboard missing or broken: keep training
                log.warning("TensorBoard disabled: %s", exc)

    def write(self, record: dict, *, epoch_file: bool = False) -> None:
        f = self.epochs if epoch_file else self.metrics
        f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        f.flush()
        if self.tb is not None and not epoch_file:
            step = record.get("step", 0)
            for k, v in record.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
        if not epoch_file:
            for sink in self.sinks:
                sink.write({k: _clean(v) for k, v in record.items()})

    def image(self, tag: str, chw: torch.Tensor, step: int) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, chw, step)
        for sink in self.sinks:
            sink.image(tag, chw, step)

    def close(self) -> None:
        self.metrics.close()
        self.epochs.close()
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
        for sink in self.sinks:
            sink.close()
