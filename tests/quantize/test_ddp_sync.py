"""DDP semantics of the quantizers on CPU with gloo and 2 processes: EMA statistics are all-reduced in one
buffer, so every rank holds the identical codebook, equal to a 1-process run on the concatenated batch;
k-means init and dead-code restarts are decided by rank 0 and broadcast; health metrics are global."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqfast.quantize import EMAVectorQuantizer, VectorQuantizer

K, D, STEPS = 16, 4, 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batches(step: int):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(4, D, 3, 3, generator=g) * 2                  # global batch of 4; rank r takes 2


def build(kind, seed=0):
    torch.manual_seed(seed)
    if kind == "ema":
        return EMAVectorQuantizer(K, D, decay=0.9, kmeans_init=True, restart_dead_codes=True, dead_code_steps=2)
    return VectorQuantizer(K, D, kmeans_init=True, restart_dead_codes=True, dead_code_steps=2)


def worker(rank, world, port, kind, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(1234 + rank)                                   # ranks draw different random numbers
    q = build(kind)
    for step in range(STEPS):
        z = batches(step)[rank * 2:(rank + 1) * 2]
        q(z)
    m = {k: v.float() for k, v in q.codebook_metrics().items()}
    torch.save({"state": q.state_dict(), "metrics": m}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["ema", "vq"])
def test_two_ranks_hold_identical_codebooks(tmp_path, kind):
    mp.spawn(worker, args=(2, free_port(), kind, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert int(r0["state"]["restarted_codes"]) > 0, "the scenario should exercise dead-code restarts"
    for key in r0["state"]:  # VQ: no optimizer here, so only k-means init and restarts move the codebook
        torch.testing.assert_close(r0["state"][key], r1["state"][key], msg=f"{key} differs across ranks")
    for name in ("perplexity", "active_codes", "dead_codes"):
        torch.testing.assert_close(r0["metrics"][name], r1["metrics"][name])


def test_two_rank_ema_equals_one_rank_on_the_whole_batch(tmp_path):
    """Without k-means/restarts (whose random draws differ), 2 x B/2 == 1 x B up to summation order."""
    def plain():
        torch.manual_seed(0)
        return EMAVectorQuantizer(K, D, decay=0.9)

    single = plain()
    for step in range(STEPS):
        single(batches(step))
    mp.spawn(_plain_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "plain0.pt", weights_only=True)
    for key in ("embedding.weight", "embedding.cluster_size", "embedding.embed_avg"):
        torch.testing.assert_close(r0[key], single.state_dict()[key], atol=1e-5, rtol=1e-5)


def _plain_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    q = EMAVectorQuantizer(K, D, decay=0.9)
    for step in range(STEPS):
        q(batches(step)[rank * 2:(rank + 1) * 2])
    torch.save(q.state_dict(), os.path.join(out_dir, f"plain{rank}.pt"))
    dist.destroy_process_group()
