"""codebook_health_: one Triton launch (CUDA; the torch reference on CPU) against the reference's ~20 small
torch ops and torch.compile of them (launch-bound by design); outputs checked after timing."""
import pytest
import torch

import vqfast.ops as ops
from benchutil import CUDA, DEVICE, Baseline, compare, shapes

SIZES = shapes(target=[16384], extra=[1024, 65536], cpu=[1024], quick=[1024])


def state(K):
    g = torch.Generator(device=DEVICE).manual_seed(0)
    counts = torch.randint(0, 5, (K,), device=DEVICE, generator=g).float()
    return counts, torch.zeros(K, dtype=torch.long, device=DEVICE), torch.full((K,), 1.0 / K, device=DEVICE)


def reference(counts, steps_unused, usage_ema):
    return ops.reference.codebook_health_(counts, steps_unused, usage_ema, training=True)


@pytest.mark.parametrize("K", SIZES)
def test_codebook_health(benchmark, K):
    c, u, e = state(K)
    start = state(K)
    expect_state = [t.clone() for t in start]
    expect = ops.reference.codebook_health_(*expect_state, training=True)

    def check(name, run, args):
        targets = (c, u, e) if args is None else args
        for t, s0 in zip(targets, start, strict=True):
            t.copy_(s0)
        out = run()
        torch.testing.assert_close(out, expect, atol=1e-3, rtol=1e-4, msg=name)
        torch.testing.assert_close(list(targets), expect_state, msg=name)

    base = {"torch_reference": Baseline(reference, state(K))}
    compare(benchmark, "codebook_health_", f"K{K}", "triton" if CUDA else "torch_reference",
            lambda: ops.codebook_health_(c, u, e, training=True), base, check=check, primary=K == SIZES[0])
