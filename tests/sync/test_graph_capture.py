"""GPU only (marked gpu, skipped without CUDA): the quantizer step under torch.cuda.set_sync_debug_mode("error")
(the driver-level check of every sync, device-to-host copies included) and captured whole, forward + backward,
in one CUDA graph that replays to the same values as eager steps from the same state."""
import copy

import pytest
import torch

from vqfast.quantize import EMAVectorQuantizer, VectorQuantizer

pytestmark = pytest.mark.gpu
CLASSES = {"vq": VectorQuantizer, "ema": EMAVectorQuantizer}
SHAPE, K = (4, 64, 16, 16), 512                  # N = 1024 rows, D = 64


def _quantizer(kind, precision="tf32", **kw):
    torch.manual_seed(0)
    return CLASSES[kind](K, SHAPE[1], backend="triton", precision=precision, **kw).cuda().train()


def _step(q, z):
    z_q, loss, (_, _, idx) = q(z)
    dz, = torch.autograd.grad(z_q.square().mean() + loss, z)
    return z_q, loss, idx, dz


def _warm(q, z, n=3):
    """Autotuning and lazy initialisation happen on first calls; run them on a side stream before capture."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(n):
            _step(q, z)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()


@pytest.mark.parametrize("kind", list(CLASSES))
@pytest.mark.parametrize("restart", [False, True])
def test_step_passes_cuda_sync_debug_mode(kind, restart):
    q = _quantizer(kind, restart_dead_codes=restart, dead_code_steps=1)
    z = torch.randn(*SHAPE, device="cuda", requires_grad=True)
    _warm(q, z)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            _step(q, z)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@pytest.mark.parametrize("kind", list(CLASSES))
def test_step_captures_in_a_cuda_graph_and_replays_like_eager(kind):
    q = _quantizer(kind)
    eager = copy.deepcopy(q)
    z_static = torch.randn(*SHAPE, device="cuda", requires_grad=True)
    _warm(q, z_static)
    _warm(eager, z_static)                          # the same three warm-up steps: same state
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = _step(q, z_static)
    # capture does not run the work: replay from the same state as `eager`
    for i in range(3):
        x = torch.randn(*SHAPE, device="cuda", generator=torch.Generator("cuda").manual_seed(i))
        with torch.no_grad():
            z_static.copy_(x)
        graph.replay()
        ref = _step(eager, x.clone().requires_grad_())
        torch.cuda.synchronize()
        assert torch.equal(out[2], ref[2])                       # same codes
        torch.testing.assert_close(out[0], ref[0])
        torch.testing.assert_close(out[1], ref[1])
        torch.testing.assert_close(out[3], ref[3])
        for name, buf in q.named_buffers():                      # EMA state and health counters advanced alike
            torch.testing.assert_close(buf, dict(eager.named_buffers())[name], msg=name)


def test_restart_step_captures_and_replays():
    q = _quantizer("vq", restart_dead_codes=True, dead_code_steps=1)
    z = torch.randn(*SHAPE, device="cuda", requires_grad=True)
    _warm(q, z)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        _step(q, z)
    before = int(q.restarted_codes)
    for _ in range(2):
        graph.replay()
    torch.cuda.synchronize()
    assert int(q.restarted_codes) > before
