"""Hostile and broken .pt files: always a ShardError naming the file, never a crash or execution."""
from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path

import pytest
import torch

from vqfast.io import CorruptShardError, ShardError, UnsupportedFormatError, load_pt


@pytest.fixture
def good(tmp_path):
    path = str(tmp_path / "good.pt")
    x = torch.randn(16, 8)
    torch.save({"latents": x, "view": x[2:, 1::2], "labels": torch.arange(16), "meta": {"n": 16, "name": "s"}}, path)
    return path


def rewrite(src: str, dst: str, *, replace=None, compress=()):
    """Copy a torch zip, replacing entry bytes and/or deflating some entries."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename.split("/", 1)[1], zin.read(info.filename))
            ctype = zipfile.ZIP_DEFLATED if info.filename.split("/", 1)[1] in compress else zipfile.ZIP_STORED
            zout.writestr(info.filename, data, compress_type=ctype)


def test_truncation_at_every_entry_boundary(good, tmp_path):
    raw = Path(good).read_bytes()
    cuts = set()
    with zipfile.ZipFile(good) as z:
        for info in z.infolist():
            cuts.add(info.header_offset)
            cuts.add(info.header_offset + 30 + len(info.filename))
            data_start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 16  # FB padding
            cuts.update({data_start, data_start + info.file_size // 2, info.header_offset + 1})
    cuts.update({0, 1, 21, len(raw) - 1, len(raw) - 22, len(raw) - 23})
    cuts = sorted(c for c in cuts if 0 <= c < len(raw))
    assert len(cuts) > 20
    for cut in cuts:
        p = str(tmp_path / f"cut_{cut}.pt")
        with open(p, "wb") as f:
            f.write(raw[:cut])
        with pytest.raises(ShardError) as ei:
            load_pt(p)
        assert p in str(ei.value), str(ei.value)


def test_byte_flips_in_data_pkl(good, tmp_path):
    with zipfile.ZipFile(good) as z:
        name = [n for n in z.namelist() if n.endswith("data.pkl")][0]
        pkl = z.read(name)
    rng = random.Random(0)
    outcomes = {"error": 0, "loaded": 0}
    for _ in range(300):
        mutated = bytearray(pkl)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        p = str(tmp_path / "flip.pt")
        rewrite(good, p, replace={"data.pkl": bytes(mutated)})
        try:
            load_pt(p)
            outcomes["loaded"] += 1  # a flip in a string or a float is still a valid pickle
        except ShardError as e:
            assert p in str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 100


def test_random_fuzz_whole_file(good, tmp_path):
    raw = Path(good).read_bytes()
    rng = random.Random(1)
    p = str(tmp_path / "fuzz.pt")
    for _ in range(300):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.3:
            b = b[: rng.randrange(len(b))]
        with open(p, "wb") as f:
            f.write(b)
        try:
            load_pt(p)
        except ShardError:
            pass


def test_deflated_entry(good, tmp_path):
    p = str(tmp_path / "deflated.pt")
    rewrite(good, p, compress=("data/0",))
    with pytest.raises(UnsupportedFormatError, match="deflated") as ei:
        load_pt(p)
    assert p in str(ei.value) and "data/0" in str(ei.value)


def test_big_endian_refused(good, tmp_path):
    p = str(tmp_path / "be.pt")
    rewrite(good, p, replace={"byteorder": b"big"})
    with pytest.raises(UnsupportedFormatError, match="byteorder"):
        load_pt(p)


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_os_system_global_is_refused_and_never_executed(good, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"latents": _Evil(f"touch {marker}")}, protocol=2)
    p = str(tmp_path / "evil.pt")
    rewrite(good, p, replace={"data.pkl": payload})
    with pytest.raises(UnsupportedFormatError) as ei:
        load_pt(p)
    msg = str(ei.value)
    assert p in msg and ("os.system" in msg or "posix.system" in msg) and "offset" in msg
    assert not marker.exists()
    # torch refuses it as well
    with pytest.raises(pickle.UnpicklingError):
        torch.load(p, weights_only=True)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_other_disallowed_globals(good, tmp_path, protocol):
    import builtins

    payload = pickle.dumps({"x": builtins.eval}, protocol=protocol)
    p = str(tmp_path / "g.pt")
    rewrite(good, p, replace={"data.pkl": payload})
    with pytest.raises(UnsupportedFormatError, match=r"(__builtin__|builtins)\.eval"):
        load_pt(p)


def test_view_past_storage_end(good, tmp_path):
    # a tensor claiming more elements than the storage holds
    p = str(tmp_path / "short.pt")
    with zipfile.ZipFile(good) as zin:
        data0 = zin.read("good/data/0")
    rewrite(good, p, replace={"data/0": data0[: len(data0) // 2]})
    with pytest.raises(CorruptShardError, match="storage"):
        load_pt(p)


def test_self_referencing_and_deep_pickles(good, tmp_path):
    l: list = []
    l.append(l)
    p = str(tmp_path / "cyc.pt")
    rewrite(good, p, replace={"data.pkl": pickle.dumps(l, protocol=2)})
    with pytest.raises(CorruptShardError, match="contains itself"):
        load_pt(p)
    # 5000 nested lists, written by hand (Python's pickler would recurse too deep itself)
    deep = b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b"."
    rewrite(good, p, replace={"data.pkl": deep})
    with pytest.raises(CorruptShardError, match="nesting"):
        load_pt(p)


def test_not_a_zip_and_missing_file(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(b"hello world, not a torch file at all" * 3)
    with pytest.raises(CorruptShardError, match="junk.pt"):
        load_pt(str(p))
    with pytest.raises(OSError):
        load_pt(str(tmp_path / "missing.pt"))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ShardError, match="empty.pt"):
        load_pt(str(empty))


def test_missing_file_is_a_file_not_found_error(tmp_path):
    from vqfast.io import ShardIOError, ShardNotFoundError, inspect_pt

    missing = str(tmp_path / "missing.pt")
    for fn in (load_pt, inspect_pt):
        with pytest.raises(FileNotFoundError) as info:
            fn(missing)
        e = info.value
        assert type(e) is ShardNotFoundError and isinstance(e, (ShardError, ShardIOError))
        assert str(e).startswith(missing + ": ") and e.path == missing and e.kind == "not_found"
    # other OS errors stay ShardIOError, not FileNotFoundError
    with pytest.raises(ShardIOError) as info:
        load_pt(str(tmp_path))  # a directory
    assert not isinstance(info.value, FileNotFoundError)
