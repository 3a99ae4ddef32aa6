"""Every op, reference and Triton, forward and backward, with check_values=False (the hot-path setting) is
free of host syncs; with check_values=True the documented one-sync validation is what the guard reports."""
import pytest
import torch
from sync_guard import HostSyncError, SyncGuard, count_launches

import vqfast.ops as ops

BACKENDS = ["torch", "triton"]


def _data():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(37, 8, generator=g)
    cb = torch.randn(11, 8, generator=g)
    return z, cb


@pytest.mark.parametrize("backend", BACKENDS)
def test_nearest_code_and_ema_update(backend):
    z, cb = _data()
    cs, ea, w = torch.rand(11), cb.clone(), cb.clone()
    with count_launches() as launches, SyncGuard():
        idx, _, counts = ops.nearest_code(z, cb, backend=backend, check_values=False, return_counts=True)
        ops.ema_update_(cs, ea, w, z, idx, decay=0.9, eps=1e-5, backend=backend, check_values=False)
        ops.codebook_health_(counts, torch.zeros(11, dtype=torch.long), torch.full((11,), 1 / 11), training=True,
                             backend=backend)
    assert (launches.total > 0) == (backend == "triton")
    assert int(counts.sum()) == 37


@pytest.mark.parametrize("backend", BACKENDS)
def test_vq_straight_through_and_channel_stats_fwd_bwd(backend):
    z, cb = _data()
    z.requires_grad_()
    cb.requires_grad_()
    idx = torch.arange(37) % 11
    x = torch.randn(2, 3, 5, 7, requires_grad=True)
    with SyncGuard():
        z_q, loss = ops.vq_straight_through(z, cb, idx, c_commit=1.0, c_book=0.25, backend=backend)
        mean, std = ops.channel_stats(x, backend=backend, check_values=False)
        (z_q.sum() + loss + mean.sum() + std.sum()).backward()
    assert z.grad is not None and cb.grad is not None and x.grad is not None


def test_check_values_is_the_one_documented_sync():
    z, cb = _data()
    with pytest.raises(HostSyncError):
        with SyncGuard():
            ops.nearest_code(z, cb, backend="torch", check_values=True)
