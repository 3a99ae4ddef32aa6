"""2-rank gloo: the learned quantizers added for issue 15 keep identical codebooks across ranks (EMA stages of
ResidualVQ with k-means init and restarts; IBQ with k-means and restarts), and LFQ's codebook entropy is the
entropy of the global batch-mean distribution on every rank."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_ddp_sync import batches, free_port

from vqfast.ops.binary_entropy import codebook_entropy_reference
from vqfast.quantize import IBQ, LFQ, ResidualVQ


def worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)                                             # identical initial codebooks
    rvq = ResidualVQ(2, 16, 4, decay=0.9, kmeans_init=True, restart_dead_codes=True, dead_code_steps=2)
    ibq = IBQ(16, 4, kmeans_init=True, restart_dead_codes=True, dead_code_steps=2)
    lfq = LFQ(4, inv_temperature=1.0)
    torch.manual_seed(1234 + rank)                                   # then different random draws
    for step in range(5):
        z = batches(step)[rank * 2:(rank + 1) * 2]
        rvq(z)
        ibq(z)
    lfq(batches(0)[rank * 2:(rank + 1) * 2])
    torch.save({"rvq": rvq.state_dict(), "ibq": ibq.state_dict(),
                "H": lfq.codebook_metrics()["codebook_entropy"]}, os.path.join(out_dir, f"m{rank}.pt"))
    dist.destroy_process_group()


def test_two_ranks_hold_identical_codebooks_and_global_entropy(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "m0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "m1.pt", weights_only=True)
    for q in ("rvq", "ibq"):
        for key in r0[q]:
            torch.testing.assert_close(r0[q][key], r1[q][key], msg=f"{q}.{key} differs across ranks")
    assert int(r0["rvq"]["layers.0.restarted_codes"]) > 0
    L = 4.0 * batches(0).movedim(1, -1).reshape(-1, 4).double()               # the whole global batch
    H, _ = codebook_entropy_reference(L)
    torch.testing.assert_close(r0["H"].double(), H, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r1["H"], r0["H"])
