"""Shared benchmark plumbing: timing, H100 bounds, the result table printed at the end of the run.

Every entry runs under pytest-benchmark (`pytest bench --benchmark-only`); kernel entries also time the
reference path the same way so each row carries the fast/reference ratio, achieved TFLOP/s or GB/s,
percent of the H100 bound and peak extra memory. CUDA timing uses triton.testing.do_bench (warm-up,
L2 flush, median) so launch-bound small shapes are measured fairly; CPU timing uses perf_counter.

Fair baselines (issue 13): `compare()` times the vqfast entry and every eager path a user could write for
the same result (`Baseline`s), then `torch.compile` of the fastest eager one (CUDA), records each ratio in
extra_info["speedup_vs"], names the strongest baseline, and checks every output after timing.
VQFAST_BENCH_SHAPES=target restricts CUDA runs to the issue's target shapes (the device suite);
VQFAST_BENCH_COMPILE=primary compiles only at each bench's first target shape, =0 leaves it out;
VQFAST_BENCH_JSONL=path appends every result row as one JSON line as soon as its test ends.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pytest
import torch

CUDA = torch.cuda.is_available()
QUICK = os.environ.get("VQFAST_BENCH_QUICK", "0") == "1"
DEVICE = "cuda" if CUDA else "cpu"
TARGET_ONLY = os.environ.get("VQFAST_BENCH_SHAPES", "all") == "target"
# "1": torch.compile baseline at every shape; "primary": only at each bench's first target shape; "0": never
COMPILE_MODE = os.environ.get("VQFAST_BENCH_COMPILE", "1")
COMPILE = CUDA and COMPILE_MODE in ("1", "primary")

# H100 SXM spec peaks (shared/research/vq-anchors.md §3): FLOP/s and HBM bytes/s.
H100 = {"fp32_simt": 66.9e12, "tf32": 494.7e12, "bf16": 989.4e12, "hbm": 3.35e12, "cuda_core_ops": 33.5e12}

needs_cuda = pytest.mark.skipif(not CUDA, reason="Triton kernel benchmarks need a CUDA device")

RESULTS: list["Row"] = []


@dataclass
class Row:
    op: str
    shape: str
    provider: str
    ms: float
    ref_ms: float | None = None
    tflops: float | None = None
    gbps: float | None = None
    pct_bound: float | None = None
    peak_mb: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def sync():
    if CUDA:
        torch.cuda.synchronize()


def time_ms(fn, reps: int | None = None) -> float:
    """Median milliseconds of fn()."""
    if CUDA:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=100 if reps is None else reps))
    fn()  # warm-up
    n = reps or (3 if QUICK else 5)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def peak_extra_mb(fn) -> float | None:
    if not CUDA:
        return None
    sync()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    sync()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def run(benchmark, op: str, shape: str, provider: str, fn, *, ref_fn=None, flops=None, nbytes=None,
        bound_s=None, note: str = "") -> Row:
    """Time fn with pytest-benchmark, add ratio/throughput/bound/memory to extra_info and the summary table."""
    if DRY_COLLECT:
        raise RuntimeError("VQFAST_BENCH_DRY_COLLECT=1 lists CUDA shapes for --collect-only; it runs nothing")
    def timed():
        fn()
        sync()

    timed()  # warm-up / autotune outside the measurement
    benchmark.pedantic(timed, rounds=3 if QUICK else 10, iterations=1, warmup_rounds=1)
    ms = time_ms(fn)
    row = Row(op, shape, provider, ms, note=note)
    if ref_fn is not None:
        row.ref_ms = time_ms(ref_fn)
    if flops:
        row.tflops = flops / (ms * 1e-3) / 1e12
    if nbytes:
        row.gbps = nbytes / (ms * 1e-3) / 1e9
    if bound_s and CUDA:
        row.pct_bound = 100.0 * bound_s / (ms * 1e-3)
    row.peak_mb = peak_extra_mb(fn)
    benchmark.extra_info.update({k: v for k, v in row.__dict__.items() if k != "extra" and v is not None})
    if row.ref_ms:
        benchmark.extra_info["speedup_vs_reference"] = row.ref_ms / ms
    RESULTS.append(row)
    return row


# The device suite's --dry-run collects (never runs) the CUDA test list on a CPU machine.
DRY_COLLECT = os.environ.get("VQFAST_BENCH_DRY_COLLECT", "0") == "1"


def shapes(target: list, extra: list, cpu: list, quick: list) -> list:
    """CUDA: the target shapes (+ extra unless VQFAST_BENCH_SHAPES=target); CPU: small ones."""
    if CUDA or DRY_COLLECT:
        return list(target) if TARGET_ONLY else list(target) + list(extra)
    return list(quick) if QUICK else list(cpu)


@dataclass
class Baseline:
    """An eager path a user could write: fn(*args). compile=False keeps it out of the torch.compile pick
    (e.g. Python loops over chunks, or a path that only exists as a reference)."""
    fn: object
    args: tuple
    compile: bool = True
    note: str = ""

    def __call__(self):
        return self.fn(*self.args)


def compare(benchmark, op: str, shape: str, provider: str, fn, baselines: dict, *, check, flops=None,
            nbytes=None, bound_s=None, note: str = "", primary: bool = True) -> Row:
    """Time fn and every baseline; ratios against each, the strongest named; outputs checked after timing.

    baselines: name -> Baseline, or a str saying why that path cannot run here. check(name, run, args)
    raises when a path is wrong: run() runs it once more (after its timing), args are its Baseline's args
    (None for fn, "vqfast"), so in-place ops can reset their state first; it is called for fn and every
    baseline that ran. On CUDA the fastest compilable eager baseline is also run through torch.compile
    ("torch_compile(<name>)"); with VQFAST_BENCH_COMPILE=primary only where primary is True.
    """
    row = run(benchmark, op, shape, provider, fn, flops=flops, nbytes=nbytes, bound_s=bound_s, note=note)
    times, skipped = {}, {}
    for name, b in baselines.items():
        if isinstance(b, str):
            skipped[name] = b
            continue
        try:
            if not fits(b):
                skipped[name] = "out of device memory"
                continue
        except (RuntimeError, NotImplementedError) as exc:     # e.g. an op without this dtype on this device
            skipped[name] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
            continue
        times[name] = time_ms(b)
        check(name, b, b.args)
    eager = [n for n in times if baselines[n].compile]
    if COMPILE and eager and (primary or COMPILE_MODE == "1"):
        best = min(eager, key=times.get)
        compiled = torch.compile(baselines[best].fn)
        b = baselines[best]
        name = f"torch_compile({best})"
        try:
            if fits(lambda: compiled(*b.args)):
                times[name] = time_ms(lambda: compiled(*b.args))
                check(name, lambda: compiled(*b.args), b.args)
            else:
                skipped[name] = "out of device memory"
        except Exception as exc:  # reported in the row and extra_info, not hidden
            skipped[name] = f"torch.compile failed: {type(exc).__name__}: {str(exc)[:120]}"
    check("vqfast", fn, None)
    if not times:
        raise AssertionError(f"{op} {shape}: no baseline could run ({skipped})")
    strongest = min(times, key=times.get)
    row.ref_ms = times[strongest]
    row.note = (row.note + ", " if row.note else "") + f"ref=strongest: {strongest}"
    row.extra = {"baselines_ms": times, "skipped": skipped}
    benchmark.extra_info.update({
        "baselines_ms": times, "speedup_vs": {n: t / row.ms for n, t in times.items()},
        "strongest_baseline": strongest, "speedup_vs_strongest": times[strongest] / row.ms,
        "skipped_baselines": skipped, "speedup_vs_reference": times[strongest] / row.ms, "note": row.note})
    return row


def fits(fn) -> bool:
    """Run fn once; False (memory freed) when it runs out of device memory."""
    try:
        fn()
        return True
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return False


def format_table() -> str:
    head = f"{'op':<17} {'shape':<24} {'provider':<22} {'ms':>10} {'x ref':>7} {'TFLOP/s':>8} {'GB/s':>8} {'%H100':>6} {'peakMB':>8}  note"
    lines = [head, "-" * len(head)]
    for r in RESULTS:
        def f(v, fmt):
            width = int(fmt.split(".")[0])
            return format(v, fmt) if v is not None else "-".rjust(width)
        ratio = (r.ref_ms / r.ms) if r.ref_ms else None
        lines.append(f"{r.op:<17} {r.shape:<24} {r.provider:<22} {f(r.ms, '10.4f')} {f(ratio, '7.2f')} "
                     f"{f(r.tflops, '8.2f')} {f(r.gbps, '8.1f')} {f(r.pct_bound, '6.1f')} {f(r.peak_mb, '8.1f')}  {r.note}")
    return "\n".join(lines)
