"""The guard itself: it must see ops (forward and backward), catch every deliberate host sync, let the
sync-free equivalents through, allow only torch.optim's host-resident step counters, and the launch
counter must count one user-level Triton launch as one."""
import pytest
import torch
from sync_guard import HostSyncError, SyncGuard, count_launches, sync_reason, triton_kernels

import vqfast.ops as ops

X = torch.arange(12.0).reshape(3, 4) - 5.0
MASK = X > 0
IDX = torch.tensor([0, 2, 2, 1])


def _setitem_mask():
    y = X.clone()
    y[MASK] = torch.arange(6.0)        # a tensor value: index_put_ with the mask (a scalar becomes masked_fill_)


def _if_tensor():
    if (X > 100).any():
        raise AssertionError("unreachable")


SYNCS = {
    "item": lambda: X.sum().item(),
    "float": lambda: float(X.sum()),
    "int": lambda: int(IDX.max()),
    "bool_if": _if_tensor,
    "tolist": lambda: IDX.tolist(),
    "cpu": lambda: X.cpu(),
    "numpy": lambda: X.numpy(),
    "to_cpu": lambda: X.to("cpu"),
    "to_device_cpu": lambda: X.to(device="cpu", dtype=torch.float64),
    "nonzero": lambda: torch.nonzero(MASK),
    "where_1arg": lambda: torch.where(MASK),
    "argwhere": lambda: torch.argwhere(MASK),
    "bool_index": lambda: X[MASK],
    "bool_index_put": _setitem_mask,
    "unique": lambda: torch.unique(IDX),
    "unique_consecutive": lambda: torch.unique_consecutive(IDX),
    "masked_select": lambda: torch.masked_select(X, MASK),
    "bincount": lambda: torch.bincount(IDX, minlength=4),
    "repeat_interleave": lambda: torch.repeat_interleave(IDX),
    "repeat_interleave_self": lambda: X[0].repeat_interleave(IDX),
    "equal": lambda: torch.equal(X, X),
    "allclose": lambda: torch.allclose(X, X),
    "histc": lambda: torch.histc(X, bins=4),
}

# Not listed: F.one_hot, which range-checks with .item() on CPU only (on CUDA a device assert does it).
SYNC_FREE = {
    "scatter_add": lambda: torch.zeros(3).scatter_add_(0, IDX, torch.ones(4)),
    "index_add": lambda: torch.zeros(3, 4).index_add_(0, IDX.clamp_max(2), torch.ones(4, 4)),
    "setitem_mask_scalar": lambda: X.clone().__setitem__(MASK, 0.0),   # dispatched as masked_fill_
    "nonzero_static": lambda: torch.nonzero_static(MASK, size=12),
    "repeat_interleave_output_size": lambda: torch.repeat_interleave(IDX, output_size=5),
    "repeat_interleave_int": lambda: X.repeat_interleave(2, dim=0),
    "where_3arg": lambda: torch.where(MASK, X, 0.0),
    "masked_fill": lambda: X.masked_fill(MASK, 0.0),
    "long_index": lambda: X[IDX.clamp_max(2)],
    "count_nonzero": lambda: torch.count_nonzero(MASK),
    "to_dtype": lambda: X.to(torch.float64),
    "to_own_device": lambda: X.to(X.device) + 1,      # .to(x.device): a no-op in a CUDA run as well
    "randint_gather": lambda: X.index_select(0, torch.randint(0, 3, (5,))),
}


@pytest.mark.parametrize("name", list(SYNCS))
def test_guard_catches_deliberate_sync(name):
    with pytest.raises(HostSyncError, match="host sync"):
        with SyncGuard():
            SYNCS[name]()


@pytest.mark.parametrize("name", list(SYNC_FREE))
def test_guard_lets_sync_free_ops_through(name):
    guard = SyncGuard()
    with guard:
        SYNC_FREE[name]()
    assert sum(guard.seen.values()) >= 1


class _ItemInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        g.sum().item()
        return g * 2


def test_guard_sees_forward_and_backward_ops():
    x = torch.randn(4, 3, requires_grad=True)
    guard = SyncGuard()
    with guard:
        torch.nn.functional.linear(x, torch.randn(2, 3)).square().sum().backward()
    assert guard.seen["mm"] >= 2 and guard.seen["pow"] + guard.seen["mul"] >= 1   # forward and backward GEMMs
    with pytest.raises(HostSyncError):
        with SyncGuard():
            _ItemInBackward.apply(x).sum().backward()


def test_optimizer_host_steps_are_the_only_allowed_scalar_reads():
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=1e-3)
    guard = SyncGuard([opt])
    with guard:
        for _ in range(2):                               # the first step creates the state inside the guard
            p.grad = torch.ones(3)
            opt.step()
    assert guard.allowed >= 2                           # Adam reads its host-side step counter
    with pytest.raises(HostSyncError):
        with SyncGuard([opt]):
            p.sum().item()


def test_sync_reason_names_the_op():
    assert "bincount" in sync_reason(torch.ops.aten.bincount.default, (IDX,), {})
    assert sync_reason(torch.ops.aten.add.Tensor, (X, X), {}) is None


def test_launch_counter_counts_one_launch_per_kernel_call():
    kernels = dict(triton_kernels())
    assert any(name.startswith("nearest_code.") for name in kernels), sorted(kernels)
    z, cb = torch.randn(7, 8), torch.randn(5, 8)
    guard = SyncGuard()
    with count_launches() as launches, guard:
        idx, _ = ops.nearest_code(z, cb, backend="triton", check_values=False)
    # row norms, the (small-N split) search and its merge: each kernel counted once per call
    assert launches.total == len(launches.by_kernel) >= 1, dict(launches.by_kernel)
    assert all(name.startswith("nearest_code.") for name in launches.by_kernel), dict(launches.by_kernel)
    assert sum(guard.seen.values()) >= 1              # the launcher's own allocations were checked
    torch.testing.assert_close(idx, ops.reference.nearest_code(z, cb)[0])
    with count_launches() as launches:                # restored: counting starts from zero again
        pass
    assert launches.total == 0
    # the torch backend launches none of ours
    with count_launches() as launches:
        ops.nearest_code(z, cb, backend="torch", check_values=False)
    assert launches.total == 0
