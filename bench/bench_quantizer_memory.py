"""Peak memory and fwd+bwd time of the streamed LFQ/BSQ entropy and IBQ soft path against the eager
(N x K table) formulations (issue 15). On CUDA: torch.cuda.max_memory_allocated at K = 2^18. On CPU the
figures are measured at a scaled-down shape as the peak RSS growth of a fresh subprocess over the run (the
peak mark is reset first through /proc/self/clear_refs; the allocator returns big blocks to the OS, so RSS growth
~ peak tensor bytes).

    python bench/bench_quantizer_memory.py [entropy ibq ibq_entropy]   # prints the table
    pytest bench/bench_quantizer_memory.py -s        # the same, asserting the O(N + K) behaviour
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import torch

CUDA = torch.cuda.is_available()
# (N tokens, bits d -> K = 2^d) for the entropy; (N, K, D) for IBQ
ENTROPY = [(4096, 18), (8192, 18)] if CUDA else [(1024, 14), (2048, 14), (2048, 16)]
IBQ = [(4096, 262144, 256)] if CUDA else [(1024, 8192, 64), (2048, 8192, 64), (2048, 32768, 64)]

_SNIPPET = """
import json, sys, time, torch
sys.path.insert(0, {path!r})
from vqfast.ops import binary_entropy as be, ibq_soft as ib
dev = "cuda" if torch.cuda.is_available() else "cpu"
kind, provider, shape = {kind!r}, {provider!r}, {shape!r}
g = torch.Generator(device=dev).manual_seed(0)
if kind == "entropy":
    N, d = shape
    x = torch.randn(N, d, device=dev, generator=g, requires_grad=True)
    fn = be.codebook_entropy if provider == "streamed" else be.codebook_entropy_reference
    run = lambda: fn(x)[0].backward()
else:
    N, K, D = shape
    z = torch.randn(N, D, device=dev, generator=g, requires_grad=True)
    E = torch.randn(K, D, device=dev, generator=g, requires_grad=True)
    from vqfast.ops import nearest_code                      # argmax z.E without an N x K table
    idx = nearest_code(z.detach(), E.detach(), codebook_sqnorm=torch.zeros(K, device=dev), check_values=False)[0]
    go = torch.randn(N, D, device=dev, generator=g)
    if kind == "ibq":
        fn = ib.ibq_soft if provider == "streamed" else ib.ibq_soft_reference
        run = lambda: (fn(z, E, idx) * go).sum().backward()
    else:  # ibq_entropy: SEED-Voken's entropy loss over softmax(z E^T / T)
        fn = ib.ibq_entropy_loss if provider == "streamed" else ib.ibq_entropy_loss_reference
        run = lambda: fn(z, E, temperature=0.01)[0].backward()
def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)
if dev == "cuda":
    torch.cuda.synchronize(); base = torch.cuda.memory_allocated(); torch.cuda.reset_peak_memory_stats()
else:
    # reset the kernel's peak-RSS mark (proc(5) clear_refs "5"), so the peak below is this run's own; ru_maxrss
    # alone keeps the import-time peak and reads 0 growth when the run stays under it
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_kb("VmRSS") * 1024
t = time.perf_counter(); run()
if dev == "cuda":
    torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() - base
else:
    peak = status_kb("VmHWM") * 1024 - base
print(json.dumps({{"peak_mb": peak / 2**20, "ms": (time.perf_counter() - t) * 1e3}}))
"""


def measure(kind: str, provider: str, shape) -> dict:
    import os
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
    code = textwrap.dedent(_SNIPPET.format(path=path, kind=kind, provider=provider, shape=tuple(shape)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(only=None) -> list[dict]:
    rows = []
    for kind, shapes in (("entropy", ENTROPY), ("ibq", IBQ), ("ibq_entropy", IBQ)):
        if only and kind not in only:
            continue
        for shape in shapes:
            s = {p: measure(kind, p, shape) for p in ("streamed", "eager")}
            rows.append({"op": kind, "shape": shape, "streamed_mb": s["streamed"]["peak_mb"],
                         "eager_mb": s["eager"]["peak_mb"], "streamed_ms": s["streamed"]["ms"],
                         "eager_ms": s["eager"]["ms"]})
    return rows


def render(rows) -> str:
    lines = [f"{'op':12} {'shape':22} {'streamed MB':>12} {'eager MB':>10} {'ratio':>7} {'streamed ms':>12} {'eager ms':>9}"]
    for r in rows:
        ratio = r["streamed_mb"] / max(r["eager_mb"], 1e-9)
        lines.append(f"{r['op']:12} {str(r['shape']):22} {r['streamed_mb']:12.1f} {r['eager_mb']:10.1f} "
                     f"{ratio:7.3f} {r['streamed_ms']:12.1f} {r['eager_ms']:9.1f}")
    return "\n".join(lines)


def test_streamed_memory_grows_like_n_plus_k_not_n_times_k():
    rows = table(["entropy", "ibq"])
    print("\n" + render(rows))
    by = {(r["op"], tuple(r["shape"])): r for r in rows}
    if not CUDA:
        e1, e2 = by[("entropy", (1024, 14))], by[("entropy", (2048, 14))]
        assert e2["eager_mb"] > 1.6 * e1["eager_mb"]                 # the table doubles with N
        assert e2["streamed_mb"] < 0.1 * e2["eager_mb"]
        i1, i2 = by[("ibq", (1024, 8192, 64))], by[("ibq", (2048, 32768, 64))]
        assert i2["eager_mb"] > 4 * i1["eager_mb"]                   # N x K grows 8x
        assert i2["streamed_mb"] < 0.25 * i2["eager_mb"]


if __name__ == "__main__":
    t = time.perf_counter()
    print(render(table(sys.argv[1:])))                               # optional op names: entropy ibq ibq_entropy
    print(f"({'cuda' if CUDA else 'cpu'}, {time.perf_counter() - t:.1f} s)")
