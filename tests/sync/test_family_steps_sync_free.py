"""Every family's training step (G and D phases, no log window) runs without a host sync, in both backends:
VQGAN, EMA-VQ, VQ-VAE, VQ-VAE-2, QuantArt stage 1 and 2, DinoVQ, latent StarGAN v2. The data loader and
host-side batch preparation happen outside the guard (they run before the step, on the host, by design);
torch.optim's host-resident step counters are the only scalar reads allowed."""
import pytest
import torch
from sync_families import FAMILIES
from sync_guard import SyncGuard, count_launches

# the first step runs under the guard too (optimizer state, k-means init and lazy buffers are created there)
STEPS = {"torch": (0, 1), "triton": (0,)}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_training_step_is_sync_free(tmp_path, family, backend):
    task, batch = FAMILIES[family](tmp_path, backend)
    task.train()
    guard = SyncGuard(task.optimizers().values())
    with count_launches() as launches, guard:
        for step in STEPS[backend]:
            logs = task.training_step(batch(step), step)
    assert guard.seen["convolution_backward"] + guard.seen["mm"] + guard.seen["bmm"] > 0   # backward was seen
    assert (launches.total > 0) == (backend == "triton"), dict(launches.by_kernel)
    assert logs and all(v.dim() == 0 and torch.isfinite(v) for v in logs.values())
