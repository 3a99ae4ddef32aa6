"""vqfast.data.latents.TorchLatentShardLoader is the exact reference of vqfast.io.LatentShardLoader.

Same len, epoch_plan (block shuffle), batches (every key and "index"), state_dict and resume across the two,
and the same skip rule (unreadable shards left out at open) and error classes.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from iohelpers import write_shards

from vqfast.errors import CorruptShardError, SchemaError, ShardNotFoundError, UnsupportedFormatError
from vqfast.io import LatentShardLoader
from vqfast.loaders.latents import LatentDataError, TorchLatentShardLoader

SIZES = [5, 1, 8, 3, 6, 2]  # 25 rows, ragged


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(str(tmp_path_factory.mktemp("latent_parity")), SIZES, row_shape=(2, 3))


def pair(paths, **kw):
    kw.setdefault("label_key", "labels")
    return LatentShardLoader(paths, num_threads=2, **kw), TorchLatentShardLoader(paths, **kw)


def run(loader):
    return [{k: v.clone() for k, v in b.items()} for b in loader]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert list(x) == list(y)
        for k in x:
            assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k


def test_same_signature():
    rust = dict(inspect.signature(LatentShardLoader).parameters)
    ref = dict(inspect.signature(TorchLatentShardLoader).parameters)
    assert list(rust) == list(ref)
    for name in rust:
        assert (rust[name].kind, rust[name].default) == (ref[name].kind, ref[name].default), name


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("block_shards", [0, 1, 2, 4])
def test_same_plan_len_and_state(shards, world_size, block_shards):
    for drop_last in (True, False):
        for shuffle in (True, False):
            for batch_size in (1, 3, 4):
                for rank in range(world_size):
                    r, p = pair(shards, batch_size=batch_size, shuffle=shuffle, seed=9, rank=rank,
                                world_size=world_size, drop_last=drop_last, block_shards=block_shards)
                    assert len(r) == len(p)
                    assert r.state_dict() == p.state_dict()
                    assert r.shard_sizes == p.shard_sizes == SIZES and r.fields == p.fields
                    for epoch in range(3):
                        assert torch.equal(r.epoch_plan(epoch), p.epoch_plan(epoch))
                    r.close()


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_same_batches(shards, world_size):
    for drop_last in (True, False):
        for rank in range(world_size):
            r, p = pair(shards, batch_size=3, seed=2, rank=rank, world_size=world_size, drop_last=drop_last,
                        block_shards=2)
            for epoch in (0, 1, 2):
                r.set_epoch(epoch)
                p.set_epoch(epoch)
                a, b = run(r), run(p)
                assert len(a) == len(r)
                assert_same(a, b)
                for batch in b:  # rows hold their global id
                    assert torch.equal(batch["labels"], batch["index"])
            r.close()


@pytest.mark.parametrize("fmt", ["npz", "npy"])
def test_numpy_shards(tmp_path, fmt):
    paths = write_shards(str(tmp_path), [4, 7, 2], fmt=fmt, dtype=torch.float16)
    kw = dict(label_key="labels") if fmt == "npz" else dict(label_key=None)
    r = LatentShardLoader(paths, batch_size=2, seed=1, drop_last=False, num_threads=1, **kw)
    p = TorchLatentShardLoader(paths, batch_size=2, seed=1, drop_last=False, **kw)
    assert r.fields == p.fields
    assert_same(run(r), run(p))
    r.close()


def test_resume_position_is_interchangeable(shards):
    kw = dict(batch_size=2, seed=3, block_shards=2, drop_last=False, world_size=2, rank=1)
    r, p = pair(shards, **kw)
    r.set_epoch(4)
    full = run(r)
    for first, second in [(r, TorchLatentShardLoader(shards, label_key="labels", **kw)),
                          (p, LatentShardLoader(shards, label_key="labels", num_threads=1, **kw))]:
        first.set_epoch(4)
        it = iter(first)
        head = [{k: v.clone() for k, v in next(it).items()} for _ in range(3)]
        state = first.state_dict()
        assert state["batch"] == 3 and state["epoch"] == 4
        second.load_state_dict(state)
        assert second.state_dict() == state
        assert_same(head + run(second), full)
        first.close()
    with pytest.raises(SchemaError):
        TorchLatentShardLoader(shards, label_key="labels", **{**kw, "seed": 4}).load_state_dict(state)
    r.close()


def test_same_skip_rule_and_error_classes(tmp_path):
    paths = write_shards(str(tmp_path / "s"), [4, 3, 5, 2])
    bad = str(tmp_path / "bad.pt")
    with open(bad, "wb") as f:
        f.write(b"PK\x03\x04 not really a zip")
    nokey = str(tmp_path / "nokey.pt")
    torch.save({"other": torch.zeros(3, 2, 3)}, nokey)
    wrong_shape = str(tmp_path / "shape.pt")
    torch.save({"latents": torch.zeros(3, 3, 2), "labels": torch.arange(3)}, wrong_shape)
    missing = str(tmp_path / "missing.pt")
    strided = str(tmp_path / "strided.pt")
    torch.save({"latents": torch.zeros(3, 3, 2).transpose(1, 2), "labels": torch.arange(3)}, strided)
    mixed = [paths[0], bad, paths[1], nokey, missing, wrong_shape, strided, paths[2], paths[3]]
    r, p = pair(mixed, batch_size=2, seed=5, on_error="skip")
    assert [path for path, _ in r.errors] == [path for path, _ in p.errors] == [bad, nokey, missing, wrong_shape,
                                                                                 strided]
    for (_, mr), (_, mp) in zip(r.errors, p.errors, strict=True):
        assert mr.split(":")[0] == mp.split(":")[0]
    assert r.shard_sizes == p.shard_sizes == [4, 3, 5, 2]
    assert r.state_dict() == p.state_dict()
    assert_same(run(r), run(p))
    r.close()
    # raise mode: the same error classes (the reference's are subclasses that are also LatentDataError)
    for path, cls in [(bad, CorruptShardError), (nokey, SchemaError), (missing, ShardNotFoundError),
                      (wrong_shape, SchemaError), (strided, SchemaError)]:
        for loader_cls in (LatentShardLoader, TorchLatentShardLoader):
            with pytest.raises(cls) as info:
                loader_cls([paths[0], path], label_key="labels", batch_size=2)
            assert str(info.value).startswith(path + ": ")
    with pytest.raises(FileNotFoundError):
        TorchLatentShardLoader([missing], batch_size=1)
    with pytest.raises(LatentDataError, match="no readable shard"):
        TorchLatentShardLoader([bad, missing], batch_size=1, on_error="skip")
    with pytest.raises(ValueError, match="no readable shard"):
        LatentShardLoader([bad, missing], batch_size=1, on_error="skip")


def test_same_refusals_for_numpy_layouts(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.savez_compressed(tmp_path / "deflated.npz", latents=x)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(x))
    np.save(tmp_path / "good.npy", x)
    for name in ("deflated.npz", "fortran.npy"):
        path = str(tmp_path / name)
        for cls in (LatentShardLoader, TorchLatentShardLoader):
            with pytest.raises(UnsupportedFormatError) as info:
                cls([str(tmp_path / "good.npy"), path], batch_size=1)
            assert str(info.value).startswith(path + ": ")


def test_directory_glob_and_argument_checks(shards):
    import os
    root = os.path.dirname(shards[0])
    for arg in (root, os.path.join(root, "shard_*.pt"), shards):
        r, p = pair(arg, batch_size=4, seed=1)
        assert r.paths == p.paths == shards
        r.close()
    for bad in (dict(batch_size=0), dict(block_shards=-1), dict(seed=-1), dict(rank=3, world_size=3),
                dict(on_error="ignore"), dict(label_key="latents")):
        kw = {**dict(batch_size=2, label_key="labels"), **bad}
        got = []
        for cls in (LatentShardLoader, TorchLatentShardLoader):
            with pytest.raises(ValueError) as info:
                cls(shards, **kw)
            got.append((type(info.value), str(info.value)))
        assert got[0] == got[1]


def test_latent_data_error_is_a_vqfast_data_error():
    from vqfast.errors import DataError, VQFastError
    assert issubclass(LatentDataError, DataError) and issubclass(LatentDataError, VQFastError)
    assert issubclass(LatentDataError, ValueError)
