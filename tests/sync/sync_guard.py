"""Host-sync guard and Triton launch counter for the sync-free / launch-budget tests (CPU, no GPU needed).

`SyncGuard` is a TorchDispatchMode that raises `HostSyncError` on every aten op that, on a CUDA tensor,
makes the host wait for the device:
- ops whose result is a host value: `_local_scalar_dense` (`.item()`, `float(t)`, `int(t)`, `bool(t)`,
  `.tolist()`), `is_nonzero` (`if t:`), `equal`, `allclose`, `_linalg_check_errors` (linalg info checks);
- ops whose output *size* depends on the data, so the CUDA implementation copies a count to the host
  before allocating: `nonzero` / `argwhere` (`nonzero_static` is fine), `unique*`, `masked_select`,
  `masked_scatter`, `bincount`, `histc`, `repeat_interleave` without `output_size`, `index` / `index_put`
  with a boolean (or uint8) mask (`x[mask]`, `x[mask] = v`: both run `nonzero` inside the CUDA kernel).
A plain TorchDispatchMode sees every aten op of forward and backward (the autograd engine propagates
the mode to its threads), so the list is checked at the level where the sync actually happens.

Device-to-host copies are no-ops on a CPU-only machine (`.cpu()` of a CPU tensor dispatches no aten op),
so the guard also holds a TorchFunctionMode that rejects the Python-level host reads `.cpu()`, `.numpy()`,
`.tolist()`, `.to("cpu")` (spelled with the string) and `__array__`; the GPU test in test_graph_capture.py checks the real thing
with `torch.cuda.set_sync_debug_mode("error")`.

`count_launches()` wraps the `run` method of every Triton kernel object (JITFunction, Autotuner,
Heuristics, or the interpreter's InterpretedFunction) defined in `vqfast.kernels.*`, so one user-level
launch counts once (autotuning benchmarks inside it do not). Inside a launch the guard is paused: under
TRITON_INTERPRET=1 the interpreter's own numpy/torch bookkeeping is not what runs on a GPU, where a launch
is one asynchronous call.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import pkgutil
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from vqfast.errors import VQFastError

aten = torch.ops.aten

# Ops that force a CUDA host sync whatever their arguments (OpOverloadPacket names; all overloads).
ALWAYS_SYNC = (
    "_local_scalar_dense", "is_nonzero", "equal", "allclose", "_linalg_check_errors",
    "nonzero", "nonzero_numpy", "argwhere",
    "unique", "_unique", "_unique2", "unique_dim", "unique_consecutive", "unique_dim_consecutive",
    "masked_select", "masked_scatter", "masked_scatter_", "bincount", "histc",
)
_ALWAYS = {name for name in ALWAYS_SYNC if hasattr(aten, name)}
_INDEX_OPS = {"index", "index_put", "index_put_", "_index_put_impl", "_index_put_impl_", "_unsafe_index_put"}


class HostSyncError(VQFastError, RuntimeError):
    """An op that forces a CUDA host sync ran inside a section that must be sync-free."""


def _bool_indices(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in indices or ())


def sync_reason(func, args, kwargs) -> str | None:
    """Why `func(*args, **kwargs)` would sync a CUDA host, or None when it would not."""
    name = func.overloadpacket.__name__
    if name in _ALWAYS:
        return f"aten.{name} reads a device value on the host"
    if name == "repeat_interleave" and kwargs.get("output_size") is None and (
            len(args) < 5 or args[-1] is None):
        repeats = args[1] if func._overloadname == "self_Tensor" else args[0]
        if isinstance(repeats, torch.Tensor):
            return "aten.repeat_interleave with tensor repeats and no output_size sums them on the host"
    if name in _INDEX_OPS and _bool_indices(args):
        return f"aten.{name} with a boolean mask runs nonzero (output size read on the host)"
    return None


_HOST_READS = {torch.Tensor.cpu: "Tensor.cpu()", torch.Tensor.numpy: "Tensor.numpy()",
               torch.Tensor.tolist: "Tensor.tolist()", torch.Tensor.__array__: "Tensor.__array__"}


def _to_host(args, kwargs) -> bool:
    """`.to("cpu")` spelled out. `.to(some_device)` is not flagged: on this CPU-only machine `x.device` is
    the CPU too, and `.to(x.device)` is a no-op in a CUDA run."""
    targets = [kwargs.get("device"), *args[1:2]]
    return any(isinstance(t, str) and t.startswith("cpu") for t in targets)


class _HostReads(TorchFunctionMode):
    """Python-level device-to-host reads (see module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        what = _HOST_READS.get(func)
        if what is None and func is torch.Tensor.to and _to_host(args, kwargs):
            what = "Tensor.to('cpu')"
        if what is not None:
            raise HostSyncError(f"host sync: {what} copies a device tensor to the host")
        return func(*args, **kwargs)


class SyncGuard(TorchDispatchMode):
    """Raise HostSyncError on any host-syncing aten op (see module docstring).

    optimizers: torch.optim keeps its `step` counters on the host unless capturable/fused (so in a CUDA
    run too), and Adam reads them with `.item()`; scalar reads of exactly those tensors (looked up when
    they happen, so state created inside the guarded step counts) are allowed and counted in `allowed`.
    `seen` counts every aten op that went through the mode (proof that it saw the step at all).
    """

    def __init__(self, optimizers=()):
        super().__init__()
        self._optimizers = [o for o in optimizers if o is not None]
        self.seen: Counter = Counter()
        self.allowed = 0

    def _host_step(self, t) -> bool:
        ptr = t.untyped_storage().data_ptr()
        return any(isinstance(st.get("step"), torch.Tensor) and st["step"].untyped_storage().data_ptr() == ptr
                   for opt in self._optimizers for st in opt.state.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.seen[func.overloadpacket.__name__] += 1
        reason = sync_reason(func, args, kwargs)
        if reason is not None:
            if func.overloadpacket.__name__ == "_local_scalar_dense" and self._host_step(args[0]):
                self.allowed += 1
            else:
                raise HostSyncError(f"host sync: {reason} ({func})")
        return func(*args, **kwargs)

    def __enter__(self):
        self._reads = _HostReads()
        self._reads.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._reads.__exit__(*exc)


def triton_kernels() -> list:
    """Every Triton kernel object defined at module level in vqfast.kernels.* (imported here)."""
    from triton.runtime.jit import KernelInterface

    import vqfast.kernels as pkg

    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for attr, obj in vars(mod).items():
            if isinstance(obj, KernelInterface):
                found[f"{info.name}.{attr}"] = obj
    return sorted(found.items())


_MISSING = object()


class LaunchCounter:
    def __init__(self):
        self.by_kernel: Counter = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_kernel.values())


@contextlib.contextmanager
def count_launches():
    """Count Triton launches of vqfast's own kernels; the sync guard is paused inside each launch."""
    counter = LaunchCounter()
    patched = []
    for name, kernel in triton_kernels():
        original = kernel.run
        own = vars(kernel).get("run", _MISSING)

        def run(*args, _name=name, _original=original, **kwargs):
            counter.by_kernel[_name] += 1
            with _disable_current_modes(), torch._C.DisableTorchFunction():
                return _original(*args, **kwargs)

        kernel.run = functools.wraps(original)(run)
        patched.append((kernel, own))
    try:
        yield counter
    finally:
        for kernel, own in patched:
            if own is _MISSING:
                del kernel.run      # back to the class's method
            else:
                kernel.run = own
