"""codebook_health_: one-launch perplexities, active/dead counts and in-place counters vs the reference."""
import pytest
import torch

import vqfast.ops as ops
from helpers import BACKENDS, device
from vqfast.errors import InputError


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("K", [1, 7, 1000, 1823])
def test_matches_reference_and_taming_perplexity(backend, training, K):
    g = torch.Generator().manual_seed(K)
    counts = torch.randint(0, 4, (K,), generator=g).float().to(device())
    counts[0] = 3.0
    unused = torch.randint(0, 5, (K,), generator=g).to(device())
    usage = torch.rand(K, generator=g).to(device())
    usage /= usage.sum()
    a = [counts, unused.clone(), usage.clone()]
    b = [counts, unused.clone(), usage.clone()]
    out = ops.codebook_health_(*a, training=training, usage_decay=0.9, dead_code_steps=3, backend=backend)
    ref = ops.reference.codebook_health_(*b, training=training, usage_decay=0.9, dead_code_steps=3)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a[1], b[1])
    torch.testing.assert_close(a[2], b[2], atol=1e-6, rtol=1e-5)
    p = counts / counts.sum()                                         # taming's formula
    torch.testing.assert_close(out[0], torch.exp(-(p * torch.log(p + 1e-10)).sum()), atol=1e-4, rtol=1e-4)
    if training:
        assert torch.equal(a[1][counts > 0], torch.zeros_like(a[1][counts > 0]))


def test_dead_codes_counted_after_the_update():
    counts = torch.tensor([2.0, 0.0, 0.0])
    unused = torch.tensor([5, 2, 0])
    out = ops.codebook_health_(counts, unused, torch.full((3,), 1 / 3), training=True, dead_code_steps=3)
    assert unused.tolist() == [0, 3, 1] and out[3].item() == 1 and out[2].item() == 1


def test_bad_inputs():
    with pytest.raises(InputError, match="one equal length"):
        ops.codebook_health_(torch.zeros(3), torch.zeros(2, dtype=torch.long), torch.zeros(3), training=True)
    with pytest.raises(InputError, match="steps_unused has dtype float32"):
        ops.codebook_health_(torch.zeros(3), torch.zeros(3), torch.zeros(3), training=True)
