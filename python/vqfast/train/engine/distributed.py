"""torchrun / DistributedDataParallel plumbing for the engine (PyTorch's own stack, nothing home-made).

``init_from_env`` reads the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) and initialises the default process group: NCCL when the run uses CUDA,
gloo on CPU. The device is ``cuda:LOCAL_RANK`` (set as the current device) or the CPU. Without torchrun
(no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) everything is a no-op and the run is single-process. A process group
initialised by the caller (tests, notebooks) is used as is and not destroyed by the engine.

``ddp_wrapper`` builds the ``wrap_fn`` handed to ``task.wrap_ddp(wrap_fn)``: ``wrap_fn(module, method=None,
ignore=())`` returns ``DistributedDataParallel`` around ``module`` (or around a ``MethodCall`` adapter when the
task calls a method such as ``vq_forward`` rather than ``forward`` — DDP synchronises only what goes through
its ``forward``). ``ignore`` names parameters DDP must leave alone (frozen parts, a discriminator wrapped on
its own). Tasks keep the unwrapped modules in ``modules()``, so checkpoint keys never gain ``module.``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
import torch.nn as nn

from vqfast.errors import ConfigError

log = logging.getLogger("vqfast")


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False
    """True when the engine initialised the process group (and so destroys it at the end)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from exc


def init_from_env(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """(DistInfo, device) for this process; initialises the process group under torchrun."""
    want_cuda = torch.cuda.is_available() and not str(device_name).startswith("cpu")
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), owns_group=False)
    else:
        world = _env_int("WORLD_SIZE", 1)
        info = DistInfo(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0), owns_group=False)
        if world > 1:
            if not dist.is_available():
                raise ConfigError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
            backend = "nccl" if want_cuda else "gloo"
            if want_cuda:
                torch.cuda.set_device(info.local_rank)
            kwargs = {"device_id": torch.device("cuda", info.local_rank)} if want_cuda else {}
            dist.init_process_group(backend=backend, **kwargs)
            info.owns_group = True
            log.info("process group: %s, rank %d/%d, local rank %d", backend, info.rank, world, info.local_rank)
    if device_name == "auto":
        device = torch.device("cuda", info.local_rank) if want_cuda else torch.device("cpu")
    else:
        try:
            device = torch.device(device_name)
        except RuntimeError as exc:
            raise ConfigError(f"train.device={device_name!r} is not a torch device ({exc})") from None
        if device.type == "cuda" and device.index is None and info.active:
            device = torch.device("cuda", info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return info, device


def destroy(info: DistInfo) -> None:
    if info.owns_group and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_active():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """``obj`` from rank ``src`` on every rank (pickled; small control data only)."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no-op single-process)."""
    if is_active():
        dist.all_reduce(t)
    return t


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average logged scalars over ranks (one collective; keys must be the same on every rank)."""
    if not is_active() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def sum_over_ranks(value: float, device: torch.device) -> float:
    """``value`` summed over ranks (one tiny collective; a no-op single-process)."""
    if not is_active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def any_over_ranks(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank (one tiny collective)."""
    if not is_active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class MethodCall(nn.Module):
    """``adapter(name, *args)`` = ``module.name(*args)``: lets DDP see calls to methods other than ``forward``."""

    def __init__(self, module: nn.Module, method: str):
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *args, **kwargs):
        return getattr(self.module, self.method)(*args, **kwargs)


def ddp_wrapper(device: torch.device):
    """The ``wrap_fn(module, method=None, ignore=())`` tasks receive in ``wrap_ddp``.

    Buffers (BatchNorm statistics, EMA codebooks) are synced from rank 0 at each wrapped forward (DDP's
    default); the quantizers additionally all-reduce their EMA statistics, so codebooks never diverge.
    """
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    # newer torch renamed broadcast_buffers (deprecated) to forward_sync_buffers; both default to True
    sync_kw = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters \
        else "broadcast_buffers"

    def wrap(module: nn.Module, method: str | None = None, ignore: Iterable[str] = ()) -> nn.Module:
        target = MethodCall(module, method) if method else module
        prefix = "module." if method else ""
        ignore = [prefix + name for name in ignore]
        if ignore:
            DDP._set_params_and_buffers_to_ignore_for_model(target, ignore)
        kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
        kwargs[sync_kw] = True
        return DDP(target, **kwargs)

    return wrap
