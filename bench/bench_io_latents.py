"""Latent-shard loading: vqfast.io.LatentShardLoader vs pure-torch paths, one full shuffled epoch.

Providers (same epoch order: every baseline consumes LatentShardLoader.epoch_plan(), equal thread
budget N = VQFAST_BENCH_IO_THREADS):
  vqfast        LatentShardLoader(num_threads=N) in the main process (Rust pread gather, prefetch).
  dl_mmap       map-style Dataset over torch.load(mmap=True, weights_only=True) shards in
                DataLoader(num_workers=N) -- the strongest pure-torch path.
  dl_load       the same Dataset but torch.load without mmap (whole shard read, LRU of one block
                of shards per worker).
Each runs warm (page cache hot) and cold (posix_fadvise(DONTNEED) on every shard first).
Reported: samples/s (whole epoch and steady state after 5 batches), time to first batch,
p50/p95 wait in next() while the consumer simulates a step of VQFAST_BENCH_IO_STEP_MS, CPU
seconds (process + reaped children) and, in the subprocess driver, peak RSS. Every provider's
output is checked against a plain torch.load reference (same ids, same bytes).

Sizes come from the environment so CI stays small (defaults: 16 MiB in 2 MiB shards):
  VQFAST_BENCH_IO_TOTAL_MB, VQFAST_BENCH_IO_SHARD_MB, VQFAST_BENCH_IO_BATCH, VQFAST_BENCH_IO_THREADS,
  VQFAST_BENCH_IO_STEP_MS, VQFAST_BENCH_IO_DIR (where shards are written / reused).
The real target run (>= 2 GB of 64 MiB shards, each provider in a fresh process, peak RSS):
  VQFAST_BENCH_IO_TOTAL_MB=2048 VQFAST_BENCH_IO_SHARD_MB=64 python bench/bench_io_latents.py
"""
from __future__ import annotations

import bisect
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from typing import Dict, List

import numpy as np
import pytest
import torch

TOTAL_MB = float(os.environ.get("VQFAST_BENCH_IO_TOTAL_MB", "16"))
SHARD_MB = float(os.environ.get("VQFAST_BENCH_IO_SHARD_MB", "2"))
BATCH = int(os.environ.get("VQFAST_BENCH_IO_BATCH", "64"))
THREADS = int(os.environ.get("VQFAST_BENCH_IO_THREADS", "2"))
STEP_MS = float(os.environ.get("VQFAST_BENCH_IO_STEP_MS", "0"))
ROUNDS = int(os.environ.get("VQFAST_BENCH_IO_ROUNDS", "1"))
BLOCK_SHARDS = 4
SEED, EPOCH = 0, 1
ROW_SHAPE = (4, 64, 64)  # float32: 64 KiB per sample, an SD-VAE latent of a 512^2 image
ROW_BYTES = 4 * int(np.prod(ROW_SHAPE))
PROVIDERS = ["vqfast", "dl_mmap", "dl_load"]


# ---------------------------------------------------------------------------------------------
# data

def shard_dir() -> str:
    base = os.environ.get("VQFAST_BENCH_IO_DIR") or os.path.join(tempfile.gettempdir(), "vqfast-bench-io")
    return os.path.join(base, f"latents_{TOTAL_MB:g}MB_{SHARD_MB:g}MB")


def make_shards() -> List[str]:
    """Write (or reuse) shards {'latents': (n, 4, 64, 64) f32, 'labels': int64 (n,)}."""
    root = shard_dir()
    rows = max(1, int(SHARD_MB * 2**20 // ROW_BYTES))
    n_shards = max(1, int(round(TOTAL_MB / SHARD_MB)))
    paths = [os.path.join(root, f"shard_{i:04d}.pt") for i in range(n_shards)]
    done = os.path.join(root, "COMPLETE")
    if os.path.exists(done):
        return paths
    os.makedirs(root, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    for i, p in enumerate(paths):
        latents = torch.randn((rows, *ROW_SHAPE), generator=g)  # (n, 4, 64, 64)
        torch.save({"latents": latents, "labels": torch.arange(i * rows, (i + 1) * rows)}, p)
    open(done, "w").close()
    return paths


def evict(paths: List[str]) -> None:
    """Drop the files from the page cache (cold start); works unprivileged on Linux."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def epoch_order(paths: List[str]) -> List[int]:
    from vqfast.io import LatentShardLoader

    loader = LatentShardLoader(paths, label_key="labels", batch_size=BATCH, seed=SEED, block_shards=BLOCK_SHARDS,
                               num_threads=1)
    return loader.epoch_plan(EPOCH).tolist()


# ---------------------------------------------------------------------------------------------
# providers: each returns an iterator of (latents (B,4,64,64), labels (B,), ids (B,))

def iter_vqfast(paths, order):
    from vqfast.io import LatentShardLoader

    loader = LatentShardLoader(paths, label_key="labels", batch_size=BATCH, seed=SEED, block_shards=BLOCK_SHARDS,
                               num_threads=THREADS, prefetch=4)
    loader.set_epoch(EPOCH)
    for b in loader:
        yield b["latents"], b["labels"], b["index"]


class _Rows(torch.utils.data.Dataset):
    """Map-style dataset over .pt shards; opened lazily in each worker."""

    def __init__(self, paths: List[str], sizes: List[int], mmap: bool) -> None:
        self.paths, self.mmap = paths, mmap
        self.starts = list(np.cumsum([0] + sizes[:-1]))
        self.total = sum(sizes)
        self.cache: "OrderedDict[int, dict]" = OrderedDict()

    def __len__(self) -> int:
        return self.total

    def _shard(self, s: int) -> dict:
        d = self.cache.get(s)
        if d is None:
            d = torch.load(self.paths[s], weights_only=True, mmap=self.mmap)
            self.cache[s] = d
            if not self.mmap and len(self.cache) > BLOCK_SHARDS:
                self.cache.popitem(last=False)
        return d

    def __getitem__(self, gid: int):
        s = bisect.bisect_right(self.starts, gid) - 1
        d = self._shard(s)
        r = gid - self.starts[s]
        return d["latents"][r], d["labels"][r], gid


def _worker_init(_):
    torch.set_num_threads(1)


def iter_dataloader(paths, order, mmap: bool):
    sizes = [int(torch.load(p, weights_only=True, mmap=True)["labels"].shape[0]) for p in paths]
    ds = _Rows(paths, sizes, mmap)
    dl = torch.utils.data.DataLoader(ds, batch_size=BATCH, sampler=order, num_workers=THREADS, drop_last=True,
                                     prefetch_factor=2, worker_init_fn=_worker_init)
    for latents, labels, ids in dl:
        yield latents, labels, ids


def provider_iter(name, paths, order):
    if name == "vqfast":
        return iter_vqfast(paths, order)
    if name == "dl_mmap":
        return iter_dataloader(paths, order, mmap=True)
    if name == "dl_load":
        return iter_dataloader(paths, order, mmap=False)
    raise ValueError(f"unknown provider {name!r}; allowed: {PROVIDERS}")


# ---------------------------------------------------------------------------------------------
# measurement

def _cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _rss_kb(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_rss_mb() -> float:
    """RSS of this process plus its children (DataLoader workers), in MiB (Linux /proc)."""
    total = _rss_kb("self")
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                total += sum(_rss_kb(c) for c in f.read().split())
    except OSError:
        pass
    return total / 1024


class RssSampler:
    """Peak RSS of the process tree, sampled every 10 ms on a thread, while active."""

    def __init__(self) -> None:
        import threading

        self.base = _tree_rss_mb()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _tree_rss_mb())

    def stop(self) -> Dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"rss_before_mb": self.base, "peak_tree_rss_mb": self.peak}


def run_epoch(name: str, paths: List[str], order: List[int]) -> Dict:
    """One epoch; metrics plus a digest (ids, first value of every row, the whole first batch)."""
    sampler = RssSampler()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    it = provider_iter(name, paths, order)
    waits, ids, firsts, first_batch, t_first, t5, n = [], [], [], None, None, None, 0
    while True:
        tw = time.perf_counter()
        try:
            latents, labels, index = next(it)
        except StopIteration:
            break
        waits.append(time.perf_counter() - tw)
        if t_first is None:
            t_first = time.perf_counter() - t0
            first_batch = latents.clone()
        ids.append(index.numpy().copy())
        firsts.append(latents.reshape(latents.shape[0], -1)[:, 0].clone())
        assert torch.equal(labels, index), "labels must equal the global ids in this data"
        n += latents.shape[0]
        if len(waits) == 5:
            t5 = (time.perf_counter(), n)
        if STEP_MS:
            time.sleep(STEP_MS / 1000)
    total = time.perf_counter() - t0
    del it
    cpu = _cpu_seconds() - cpu0
    steady = (n - t5[1]) / (time.perf_counter() - t5[0]) if t5 and n > t5[1] else n / total
    w = np.array(waits[1:] or waits) * 1e3
    rss = sampler.stop()
    return {
        **rss,
        "provider": name,
        "samples": n,
        "seconds": total,
        "samples_per_s": n / total,
        "steady_samples_per_s": steady,
        "first_batch_ms": (t_first or 0) * 1e3,
        "wait_p50_ms": float(np.percentile(w, 50)),
        "wait_p95_ms": float(np.percentile(w, 95)),
        "cpu_s": cpu,
        "digest": {"ids": np.concatenate(ids), "firsts": torch.cat(firsts), "first_batch": first_batch},
    }


def reference_digest(paths: List[str], order: List[int]) -> Dict:
    """Plain torch.load, indexing rows in the plan's order (the correctness baseline)."""
    shards = [torch.load(p, weights_only=True, mmap=True) for p in paths]
    starts = list(np.cumsum([0] + [s["labels"].shape[0] for s in shards[:-1]]))
    n_used = len(order) // BATCH * BATCH
    ids = np.asarray(order[:n_used], dtype=np.int64)
    loc = [(bisect.bisect_right(starts, g) - 1, g) for g in ids.tolist()]
    firsts = torch.stack([shards[s]["latents"][g - starts[s]].reshape(-1)[0] for s, g in loc])
    first_batch = torch.stack([shards[s]["latents"][g - starts[s]] for s, g in loc[:BATCH]])
    return {"ids": ids, "firsts": firsts, "first_batch": first_batch}


def assert_same(digest: Dict, ref: Dict, name: str) -> None:
    assert np.array_equal(digest["ids"], ref["ids"]), f"{name}: sample ids differ from the reference"
    assert torch.equal(digest["firsts"], ref["firsts"]), f"{name}: row data differs from the reference"
    assert torch.equal(digest["first_batch"], ref["first_batch"]), f"{name}: first batch differs"


# ---------------------------------------------------------------------------------------------
# pytest-benchmark entries

@pytest.fixture(scope="module")
def data():
    paths = make_shards()
    order = epoch_order(paths)
    return paths, order, reference_digest(paths, order)


@pytest.mark.parametrize("cache", ["warm", "cold"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_latent_epoch(benchmark, data, provider, cache):
    paths, order, ref = data
    results = []

    def setup():
        if cache == "cold":
            evict(paths)
        else:
            for p in paths:  # warm the page cache
                with open(p, "rb") as f:
                    while f.read(1 << 24):
                        pass

    benchmark.group = f"latents {TOTAL_MB:g}MB/{SHARD_MB:g}MB shards B={BATCH} N={THREADS} {cache}"
    benchmark.pedantic(lambda: results.append(run_epoch(provider, paths, order)), setup=setup, rounds=ROUNDS,
                       iterations=1)
    r = results[-1]
    assert_same(r.pop("digest"), ref, provider)
    benchmark.extra_info.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})


@pytest.mark.parametrize("provider", ["vqfast_load_pt", "torch_load_mmap"])
def test_open_time(benchmark, data, provider):
    """Time to open one shard: load_pt vs torch.load(mmap=True) (both lazy, memory-mapped)."""
    from vqfast.io import load_pt

    path = data[0][0]
    fn = (lambda: load_pt(path)) if provider == "vqfast_load_pt" else (
        lambda: torch.load(path, weights_only=True, mmap=True))
    benchmark.group = "open one .pt shard"
    out = benchmark(fn)
    ref = torch.load(path, weights_only=True)
    assert torch.equal(out["latents"], ref["latents"]) and torch.equal(out["labels"], ref["labels"])


# ---------------------------------------------------------------------------------------------
# subprocess driver: each provider in a fresh process (peak RSS is per provider)

def _child(provider: str, cache: str) -> None:
    paths = make_shards()
    order = epoch_order(paths)
    if cache == "cold":
        evict(paths)
    r = run_epoch(provider, paths, order)  # RSS is sampled during the epoch only
    digest = r.pop("digest")
    ref = reference_digest(paths, order)
    assert_same(digest, ref, provider)
    r["cache"] = cache
    print("RESULT " + json.dumps(r))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return
    paths = make_shards()
    print(f"# {len(paths)} shards, {TOTAL_MB:g} MB total, batch {BATCH}, threads/workers {THREADS}, step {STEP_MS} ms",
          flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    rows = []
    for cache in ("warm", "cold"):
        for provider in PROVIDERS:
            if cache == "warm":
                for p in paths:
                    with open(p, "rb") as f:
                        while f.read(1 << 24):
                            pass
            out = subprocess.run([sys.executable, __file__, "--child", provider, cache], env=env, check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
            rows.append(r)
            print(f"{cache:4s} {provider:8s} {r['samples_per_s']:9.0f} samples/s (steady {r['steady_samples_per_s']:8.0f})"
                  f"  first {r['first_batch_ms']:7.1f} ms  wait p50 {r['wait_p50_ms']:6.2f} p95 {r['wait_p95_ms']:6.2f} ms"
                  f"  cpu {r['cpu_s']:6.1f} s  peak RSS (process tree) {r['peak_tree_rss_mb']:6.0f} MB (before {r['rss_before_mb']:4.0f})",
                  flush=True)
    out_json = os.environ.get("VQFAST_BENCH_IO_JSON")
    if out_json:
        import platform

        with open(out_json, "w") as f:
            json.dump({"machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "total_mb": TOTAL_MB, "shard_mb": SHARD_MB, "batch": BATCH, "threads": THREADS,
                       "step_ms": STEP_MS, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
