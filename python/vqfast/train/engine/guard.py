"""Non-finite step guard: a step whose gradients are not finite changes no weight and no optimizer state.

The engine installs the guard on every optimizer of the task (no task code changes): each guarded
``optimizer.step()`` first checks that all of its gradients are finite (one fused norm + one host sync
per optimizer step). If not, the update is skipped, the gradients are cleared, and every later optimizer
step and LR-scheduler step of the same training step is skipped too. Under DDP gradients are all-reduced
before the step, so every rank takes the same decision. The buffers of the task's modules (EMA codebooks,
codebook-health counters, BatchNorm statistics) are snapshotted before each step (one device copy, small
next to the weights) and restored after a skipped one, because they are updated in the forward pass.

Limit: an optimizer that already stepped earlier in the same training step (StarGAN updates D before G)
is not rolled back when a later phase turns out non-finite.
"""
from __future__ import annotations

import logging
from typing import Iterable

import torch

log = logging.getLogger("vqfast")


def _grads(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]


def grads_finite(grads: list[torch.Tensor]) -> bool:
    if not grads:
        return True
    norms = torch._foreach_norm(grads)  # one fused launch per device/dtype group
    return bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())


class StepGuard:
    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], schedulers: dict, modules: dict,
                 snapshot_buffers: bool = True):
        self.bad_optimizers: list[str] = []
        self._snapshot_buffers = snapshot_buffers
        self._buffers = list({id(b): b for m in modules.values() for b in m.buffers()}.values())
        self._saved: list[torch.Tensor] | None = None
        for name, opt in optimizers.items():
            self._wrap_optimizer(name, opt)
        for sched in schedulers.values():
            self._wrap_scheduler(sched)

    # ---- per training step ------------------------------------------------------------------------
    def begin(self) -> None:
        self.bad_optimizers = []
        if self._snapshot_buffers and self._buffers:
            self._saved = [b.detach().clone() for b in self._buffers]

    def end(self) -> bool:
        """True when the step was skipped; restores the buffers then."""
        skipped = bool(self.bad_optimizers)
        if skipped and self._saved is not None:
            with torch.no_grad():
                for b, s in zip(self._buffers, self._saved, strict=True):
                    b.copy_(s)
        self._saved = None
        return skipped

    # ---- wrapping -----------------------------------------------------------------------------------
    def _wrap_optimizer(self, name: str, opt: torch.optim.Optimizer) -> None:
        inner = opt.step  # may already be wrapped by an LR scheduler's step counter: keep the chain
        guard = self

        def step(*args, **kwargs):
            if guard.bad_optimizers or not grads_finite(_grads(opt)):
                guard.bad_optimizers.append(name)
                opt.zero_grad(set_to_none=True)
                return None
            return inner(*args, **kwargs)

        if hasattr(inner, "_wrapped_by_lr_sched"):  # keep the scheduler's "optimizer stepped first" check quiet
            step._wrapped_by_lr_sched = True
        opt.step = step  # instance attribute: shadows the class method for this optimizer only

    def _wrap_scheduler(self, sched) -> None:
        # a per-instance subclass, not an instance attribute: LRScheduler.state_dict() saves its __dict__
        guard, cls = self, type(sched)

        def step(self_, *args, **kwargs):
            if guard.bad_optimizers:
                return None
            return cls.step(self_, *args, **kwargs)

        sched.__class__ = type(f"Guarded{cls.__name__}", (cls,), {"step": step})


def nonfinite_terms(logs: dict[str, torch.Tensor]) -> list[str]:
    """Names of logged loss terms that are NaN/inf (called only after a skipped step: one host sync)."""
    keys = [k for k, v in logs.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return []
    finite = torch.isfinite(torch.stack([logs[k].detach().float().reshape(()) for k in keys])).tolist()
    return [k for k, ok in zip(keys, finite, strict=True) if not ok]


def describe(step: int, optimizers: Iterable[str], terms: list[str]) -> str:
    what = f"non-finite loss term(s) {', '.join(terms)}" if terms else "non-finite gradients (losses finite)"
    return f"step {step}: {what} in {', '.join(optimizers)}; step skipped (no optimizer update)"
