"""codebook_health_: one Triton launch vs the reference's ~20 small torch ops (launch-bound by design)."""
import pytest
import torch

import vqfast.ops as ops
from benchutil import CUDA, DEVICE, needs_cuda, run

SIZES = [1024, 16384, 65536] if CUDA else [1024]


def state(K):
    g = torch.Generator(device=DEVICE).manual_seed(0)
    counts = torch.randint(0, 5, (K,), device=DEVICE, generator=g).float()
    return counts, torch.zeros(K, dtype=torch.long, device=DEVICE), torch.full((K,), 1.0 / K, device=DEVICE)


@pytest.mark.parametrize("K", SIZES)
def test_codebook_health_reference(benchmark, K):
    c, u, e = state(K)
    run(benchmark, "codebook_health_", f"K{K}", "torch_reference",
        lambda: ops.reference.codebook_health_(c, u, e, training=True))


@needs_cuda
@pytest.mark.parametrize("K", SIZES)
def test_codebook_health_triton(benchmark, K):
    c, u, e = state(K)
    c2, u2, e2 = state(K)
    run(benchmark, "codebook_health_", f"K{K}", "triton",
        lambda: ops.codebook_health_(c, u, e, training=True, backend="triton"),
        ref_fn=lambda: ops.reference.codebook_health_(c2, u2, e2, training=True), note="ref=torch ops")
    out = ops.codebook_health_(*state(K), training=False, backend="triton")
    ref = ops.reference.codebook_health_(*state(K), training=False)
    torch.testing.assert_close(out, ref, atol=1e-3, rtol=1e-4)
