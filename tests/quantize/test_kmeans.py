"""k-means / k-means++ init: finds separated clusters; under 2-rank gloo the result equals one process on
the concatenated rows, on both ranks; segment_stats matches bincount / index_add."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_ddp_sync import free_port

from helpers import BACKENDS
from vqfast.errors import InputError
from vqfast.ops.ema_update import segment_stats
from vqfast.quantize import VectorQuantizer
from vqfast.quantize.kmeans import kmeans


def data(n=600, k=6, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 5
    pick = torch.randint(0, k, (n,), generator=g)
    return centers[pick] + 0.05 * torch.randn(n, d, generator=g), centers


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N,K,D", [(1, 1, 1), (7, 3, 5), (1000, 37, 8)])
def test_segment_stats_matches_index_add(backend, N, K, D):
    g = torch.Generator().manual_seed(N)
    z = torch.randn(N, D, generator=g) + 100
    idx = torch.randint(0, K, (N,), generator=g)
    s = segment_stats(z, idx, K, backend=backend)
    torch.testing.assert_close(s[:, D], torch.bincount(idx, minlength=K).float())
    torch.testing.assert_close(s[:, :D], torch.zeros(K, D).index_add_(0, idx, z), atol=1e-3, rtol=1e-5)


def test_kmeanspp_recovers_separated_clusters():
    x, centers = data()
    c, counts = kmeans(x, 6, iters=5, init="kmeans++", seed=3)
    assert torch.cdist(centers, c).min(1).values.max() < 0.1
    assert int(counts.sum()) == 600
    with pytest.raises(InputError):
        kmeans(x, 6, init="forgy")


def test_quantizer_kmeanspp_init():
    x, centers = data(k=4, d=3, seed=5)
    q = VectorQuantizer(4, 3, kmeans_init=True, kmeans_init_method="kmeans++", layout="channels_last")
    q(x[None])
    assert torch.cdist(centers, q.embedding.weight).min(1).values.max() < 0.1


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, _ = data(n=301, seed=1)
    part = x[:150] if rank == 0 else x[150:]                         # uneven split
    out = {init: kmeans(part, 8, iters=4, init=init, seed=11) for init in ("random", "kmeans++")}
    torch.save(out, os.path.join(out_dir, f"k{rank}.pt"))
    dist.destroy_process_group()


def test_two_ranks_equal_one_process_on_the_concatenation(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "k0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "k1.pt", weights_only=True)
    x, _ = data(n=301, seed=1)
    for init in ("random", "kmeans++"):
        single = kmeans(x, 8, iters=4, init=init, seed=11)
        for a, b, s in zip(r0[init], r1[init], single, strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
            torch.testing.assert_close(a, s, atol=1e-5, rtol=1e-5)
