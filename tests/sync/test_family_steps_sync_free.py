"""Every family's training step (G and D phases, no log window) runs without a host sync, in both backends:
VQGAN, EMA-VQ, VQ-VAE, VQ-VAE-2, QuantArt stage 1 and 2, DinoVQ, latent StarGAN v2. The data loader and
host-side batch preparation happen outside the guard (they run before the step, on the host, by design);
torch.optim's host-resident step counters are the only scalar reads allowed."""
import pytest
import torch
from sync_families import FAMILIES
from sync_guard import HostSyncError, SyncGuard, count_launches

from vqfast.nn.discriminator import ActNorm

# the first step runs under the guard too (optimizer state, k-means init and lazy buffers are created there),
# except for ActNorm, whose one-time data-dependent init reads a flag on the host on the first forward
STEPS = {"torch": (0, 1), "triton": (0,)}
UNGUARDED_FIRST_STEP = {"vqgan_actnorm"}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_training_step_is_sync_free(tmp_path, family, backend):
    if family in UNGUARDED_FIRST_STEP and backend == "triton":
        pytest.skip("the discriminator's norm has no Triton path: the torch run covers it")
    task, batch = FAMILIES[family](tmp_path, backend)
    task.train()
    steps = STEPS[backend]
    if family in UNGUARDED_FIRST_STEP:
        task.training_step(batch(0), 0)
        steps = (1, 2)
        norms = [m for m in task.discriminator.modules() if isinstance(m, ActNorm)]
        assert norms and all(int(m.initialized) == 1 for m in norms)
    guard = SyncGuard(task.optimizers().values())
    with count_launches() as launches, guard:
        for step in steps:
            logs = task.training_step(batch(step), step)
    assert guard.seen["convolution_backward"] + guard.seen["mm"] + guard.seen["bmm"] > 0   # backward was seen
    assert (launches.total > 0) == (backend == "triton"), dict(launches.by_kernel)
    assert logs and all(v.dim() == 0 and torch.isfinite(v) for v in logs.values())


def test_guard_sees_a_real_sync_in_a_family_step(tmp_path):
    """Control: ActNorm's one-time init reads `initialized` on the host; guarding that first step must fail."""
    task, batch = FAMILIES["vqgan_actnorm"](tmp_path, "torch")
    task.train()
    with pytest.raises(HostSyncError, match="_local_scalar_dense"):
        with SyncGuard(task.optimizers().values()):
            task.training_step(batch(0), 0)
