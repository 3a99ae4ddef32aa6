"""LatentShardLoader semantics: determinism, coverage over ranks, drop_last, resume, errors."""
from __future__ import annotations

import gc
import os
import threading
import time
from collections import Counter

import pytest
import torch
from iohelpers import write_shards

from vqfast.io import CorruptShardError, ForkError, LatentShardLoader, SchemaError, verify

SIZES = [13, 7, 20, 1, 16]  # 57 samples, ragged on purpose


def run_epoch(loader):
    out = []
    for b in loader:
        # every row is filled with its own global id, labels = id
        assert torch.equal(b["labels"], b["index"])
        assert torch.equal(b["latents"].flatten(1).amin(1).long(), b["index"])
        assert torch.equal(b["latents"].flatten(1).amax(1).long(), b["index"])
        out.append(b["index"].tolist())
    return out


@pytest.fixture
def shards(shard_dir):
    return write_shards(shard_dir, SIZES)


def make(paths, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("label_key", "labels")
    kw.setdefault("num_threads", 2)
    return LatentShardLoader(paths, **kw)


def test_batches_and_dtypes(shards):
    loader = make(shards, shuffle=False, drop_last=False)
    batches = list(loader)
    assert len(batches) == len(loader) == 15
    b = batches[0]
    assert b["latents"].shape == (4, 2, 3) and b["latents"].dtype == torch.float32
    assert b["labels"].dtype == torch.int64 and b["index"].dtype == torch.int64
    assert [i for b in batches for i in b["index"].tolist()] == list(range(57))
    assert loader.fields == [("latents", torch.float32, (2, 3)), ("labels", torch.int64, ())]


def test_deterministic_per_seed_and_epoch_reshuffled_across_epochs(shards):
    a = run_epoch(make(shards, seed=3))
    b = run_epoch(make(shards, seed=3))
    assert a == b
    loader = make(shards, seed=3)
    loader.set_epoch(1)
    c = run_epoch(loader)
    assert c != a
    assert run_epoch(make(shards, seed=4)) != a
    # iterating again without set_epoch replays the same order
    assert run_epoch(loader) == c


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_cover_each_sample_once_and_get_equal_batch_counts(shards, world_size, drop_last):
    per_rank = []
    for rank in range(world_size):
        loader = make(shards, rank=rank, world_size=world_size, drop_last=drop_last, seed=11)
        loader.set_epoch(2)
        batches = run_epoch(loader)
        assert len(batches) == len(loader)
        per_rank.append(batches)
    counts = {len(b) for b in per_rank}
    assert len(counts) == 1, "every rank must get the same number of batches"
    for k in range(len(per_rank[0])):
        assert len({len(r[k]) for r in per_rank}) == 1, "batch k has the same size on every rank"
    seen = Counter(i for r in per_rank for b in r for i in b)
    n = sum(SIZES)
    if drop_last:
        assert all(c == 1 for c in seen.values())
        assert len(seen) == (n // (4 * world_size)) * 4 * world_size
        assert all(len(b) == 4 for r in per_rank for b in r)
    else:
        assert set(seen) == set(range(n))
        assert sum(seen.values()) == -(-n // world_size) * world_size
        assert max(seen.values()) <= 2


def test_mid_epoch_resume_is_exact(shards):
    loader = make(shards, seed=5)
    loader.set_epoch(3)
    full = run_epoch(loader)
    loader2 = make(shards, seed=5)
    loader2.set_epoch(3)
    it = iter(loader2)
    head = [next(it)["index"].tolist() for _ in range(4)]
    state = loader2.state_dict()
    loader2.close()
    assert state["epoch"] == 3 and state["batch"] == 4
    resumed = make(shards, seed=5)
    resumed.load_state_dict(state)
    tail = run_epoch(resumed)
    assert head + tail == full
    # a loader over different data refuses the state
    other = make(shards[:-1], seed=5)
    with pytest.raises(SchemaError):
        other.load_state_dict(state)


def test_block_shuffle_mixes_within_blocks(shard_dir):
    paths = write_shards(shard_dir, [50] * 8)
    order = make(paths, batch_size=10, block_shards=2, label_key=None).epoch_plan(0).tolist()
    assert sorted(order) == list(range(400))
    for chunk in range(4):
        shards_in_block = {i // 50 for i in order[chunk * 100:(chunk + 1) * 100]}
        assert len(shards_in_block) == 2
    full = make(paths, batch_size=10, block_shards=0, label_key=None).epoch_plan(0).tolist()
    assert len({i // 50 for i in full[:100]}) > 2


@pytest.mark.parametrize("fmt", ["npz", "npy"])
def test_numpy_shards(shard_dir, fmt):
    paths = write_shards(shard_dir, [5, 6], dtype=torch.float16, fmt=fmt)
    loader = LatentShardLoader(paths, batch_size=3, label_key="labels" if fmt == "npz" else None, shuffle=False,
                               drop_last=False, num_threads=1)
    batches = list(loader)
    ids = torch.cat([b["index"] for b in batches])
    assert ids.tolist() == list(range(11))
    lat = torch.cat([b["latents"] for b in batches])
    assert lat.dtype == torch.float16 and torch.equal(lat[:, 0, 0].long(), ids)


def test_bfloat16_and_dotted_keys(tmp_path):
    x = torch.randn(10, 4).bfloat16()
    p = str(tmp_path / "nested.pt")
    torch.save({"data": {"z": x}, "y": torch.arange(10)}, p)
    loader = LatentShardLoader([p], key="data.z", label_key="y", batch_size=5, shuffle=False, num_threads=1)
    b = next(iter(loader))
    assert b["data.z"].dtype == torch.bfloat16
    assert torch.equal(b["data.z"], x[:5])


def test_bad_shard_is_named_and_skip_mode(shards, tmp_path):
    bad = str(tmp_path / "broken.pt")
    with open(shards[0], "rb") as f:
        raw = f.read()
    with open(bad, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(CorruptShardError) as ei:
        make([shards[1], bad, shards[2]])
    assert "broken.pt" in str(ei.value) and ei.value.path == bad
    loader = make([shards[1], bad, shards[2]], on_error="skip", shuffle=False, drop_last=False)
    assert [p for p, _ in loader.errors] == [bad]
    assert loader.num_samples == SIZES[1] + SIZES[2]
    assert sum(len(b["index"]) for b in loader) == SIZES[1] + SIZES[2]


def test_schema_mismatch_is_named(shard_dir, tmp_path):
    paths = write_shards(shard_dir, [4, 4])
    odd = str(tmp_path / "odd.pt")
    torch.save({"latents": torch.zeros(3, 5), "labels": torch.arange(3)}, odd)
    with pytest.raises(SchemaError, match="odd.pt"):
        make(paths + [odd])
    nokey = str(tmp_path / "nokey.pt")
    torch.save({"other": torch.zeros(3, 2, 3)}, nokey)
    with pytest.raises(SchemaError, match="latents"):
        make([nokey], label_key=None)
    trans = str(tmp_path / "trans.pt")
    torch.save({"latents": torch.zeros(3, 4).t()}, trans)
    with pytest.raises(SchemaError, match="contiguous"):
        make([trans], label_key=None)


def test_argument_errors(shards):
    with pytest.raises(ValueError, match="batch_size"):
        make(shards, batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        make(shards, rank=2, world_size=2)
    with pytest.raises(ValueError, match="on_error"):
        make(shards, on_error="ignore")
    with pytest.raises(ValueError, match="no file"):
        make(os.path.join(os.path.dirname(shards[0]), "*.nothing"))


def test_dropping_the_iterator_mid_epoch_does_not_hang(shard_dir):
    paths = write_shards(shard_dir, [400] * 4, row_shape=(64,))
    for _ in range(5):
        loader = LatentShardLoader(paths, batch_size=2, prefetch=8, num_threads=2, label_key="labels")
        it = iter(loader)
        next(it)
        t0 = time.perf_counter()
        del it
        loader.close()
        del loader
        gc.collect()
        assert time.perf_counter() - t0 < 5
    with LatentShardLoader(paths, batch_size=2, num_threads=2) as loader:
        it = iter(loader)
        next(it)
    # closed: the old iterator ends cleanly, a new one starts over
    assert len(list(loader)) == len(loader)


def test_gil_is_released_while_waiting(shard_dir):
    """A Python thread keeps running while the main thread iterates."""
    paths = write_shards(shard_dir, [2000] * 2, row_shape=(1024,))
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.0005)

    t = threading.Thread(target=spin)
    t.start()
    t0 = time.perf_counter()
    try:
        for _ in range(3):
            for _b in LatentShardLoader(paths, batch_size=8, num_threads=1, prefetch=1):
                pass
    finally:
        stop.set()
        t.join()
    elapsed = time.perf_counter() - t0
    # the spinner got a fair share of the wall time (it would starve if waits held the GIL)
    assert len(ticks) * 0.0005 > 0.2 * elapsed, (len(ticks), elapsed)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_use_after_fork_raises(shards):
    loader = make(shards, prefetch=2)
    it = iter(loader)
    next(it)  # worker threads are live at fork time
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            iter(loader)
        except ForkError:
            code = 0
        except BaseException:
            code = 2
        try:  # dropping the parent's loader in the child must not hang on the parent's threads
            del it
            loader.close()
            del loader
            gc.collect()
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_rss_stays_flat_over_many_epochs(shard_dir):
    paths = write_shards(shard_dir, [256] * 4, row_shape=(1024,))  # 4 MiB
    loader = LatentShardLoader(paths, batch_size=32, num_threads=2, label_key="labels")
    rss = []
    for epoch in range(30):
        loader.set_epoch(epoch)
        for _b in loader:
            pass
        if epoch in (5, 29):
            gc.collect()
            rss.append(current_rss())
    assert rss[1] - rss[0] < 20 * 2**20, rss


def test_verify_lists_bad_shards(shards, tmp_path):
    assert verify(shards, label_key="labels") == []
    bad = str(tmp_path / "bad.pt")
    with open(bad, "wb") as f:
        f.write(b"PK\x03\x04" + b"\x00" * 40)
    problems = verify(shards + [bad])
    assert [p for p, _ in problems] == [bad] and "bad.pt" in problems[0][1]
