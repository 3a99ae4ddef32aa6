"""load_pt / inspect_pt against torch.load(weights_only=True) on files written by torch.save."""
from __future__ import annotations

import collections
import io
import zipfile
from pathlib import Path

import pytest
import torch

from vqfast.io import ShardError, inspect_pt, load_pt

DTYPES = [
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
    torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128, torch.uint16, torch.uint32,
    torch.uint64, torch.float8_e4m3fn, torch.float8_e5m2,
]


def bits(t: torch.Tensor) -> torch.Tensor:
    """A dtype-agnostic bit pattern (works for dtypes without comparison kernels)."""
    t = t.contiguous()
    return t.view(torch.uint8) if t.dim() > 0 and t.numel() > 0 else t.reshape(-1).view(torch.uint8)


def assert_same(got, ref, path="root"):
    assert type(got) is type(ref), f"{path}: {type(got)} vs {type(ref)}"
    if isinstance(ref, torch.Tensor):
        assert got.dtype == ref.dtype, path
        assert got.shape == ref.shape, path
        assert got.stride() == ref.stride(), path
        assert got.storage_offset() == ref.storage_offset(), path
        assert got.requires_grad == ref.requires_grad, path
        assert torch.equal(bits(got), bits(ref)), path
    elif isinstance(ref, dict):
        assert list(got.keys()) == list(ref.keys()), path
        for k in ref:
            assert_same(got[k], ref[k], f"{path}.{k}")
    elif isinstance(ref, (list, tuple)):
        assert len(got) == len(ref), path
        for i, (g, r) in enumerate(zip(got, ref, strict=True)):
            assert_same(g, r, f"{path}[{i}]")
    else:
        assert got == ref, path


def roundtrip(tmp_path, obj, name="x.pt", ref_weights_only=True, **save_kw):
    path = str(tmp_path / name)
    torch.save(obj, path, **save_kw)
    ref = torch.load(path, weights_only=ref_weights_only)
    got = load_pt(path)
    assert_same(got, ref)
    return got, ref, path


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_bit_equal(tmp_path, dtype):
    base = torch.randn(5, 7, dtype=torch.float64) * 100
    if dtype == torch.bool:
        t = base > 0
    elif dtype.is_complex:
        t = torch.complex(base, -base).to(dtype)
    elif dtype in (torch.uint16, torch.uint32, torch.uint64):
        t = base.abs().to(torch.int64).to(dtype)
    else:
        t = base.to(dtype)
    got, _, _ = roundtrip(tmp_path, {"t": t, "col": t[:, 2], "sub": t[1:4, 3:]})
    assert got["t"].dtype == dtype


def test_views_transposes_offsets_and_shared_storage(tmp_path):
    x = torch.randn(6, 8)
    obj = {"x": x, "t": x.t(), "row": x[3], "col": x[:, 5], "step": x[::2, 1::3], "narrow": x[2:5], "x_again": x}
    got, ref, _ = roundtrip(tmp_path, obj)
    ptr = got["x"].untyped_storage().data_ptr()
    for k in obj:
        assert got[k].untyped_storage().data_ptr() == ptr, k
    # writes through one view show through the others, as with torch.load
    got["x"][3, 0] = 1234.0
    assert got["row"][0] == 1234.0
    assert got["t"][0, 3] == 1234.0


def test_zero_dim_empty_and_parameters(tmp_path):
    p = torch.nn.Parameter(torch.randn(3, 2))
    frozen = torch.nn.Parameter(torch.randn(2), requires_grad=False)
    obj = {"scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4), "empty_i": torch.empty(0, dtype=torch.int64),
           "p": p, "frozen": frozen, "grad": torch.ones(2, requires_grad=True)}
    got, _, _ = roundtrip(tmp_path, obj)
    assert isinstance(got["p"], torch.nn.Parameter) and got["p"].requires_grad
    assert isinstance(got["frozen"], torch.nn.Parameter) and not got["frozen"].requires_grad


def test_nested_containers_and_scalars(tmp_path):
    obj = {
        "list": [1, -2, 3.5, None, True, False, "é", b"\x00\xff", (1, (2, [3]))],
        "od": collections.OrderedDict([("b", torch.ones(2)), ("a", {"deep": [torch.zeros(1)]})]),
        1: "int key",
        (1, 2): "tuple key",
        "big": [2**63 - 1, -(2**63), 2**100, -(2**90)],
        "floats": [float("inf"), -0.0, 1e-300],
        "size": torch.Size([3, 4]),
        "complex": 1 + 2j,
        "set": {1, 2, 3},
        "dtype": torch.float16,
        "device": torch.device("cpu"),
    }
    got, ref, _ = roundtrip(tmp_path, obj)
    assert isinstance(got["od"], collections.OrderedDict)


def test_state_dict_of_a_module(tmp_path):
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    got, ref, _ = roundtrip(tmp_path, m.state_dict())
    m2 = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    m2.load_state_dict(got)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_protocols(tmp_path, protocol):
    """torch's own weights_only unpickler rejects protocol >= 4 (FRAME); ours reads it, so the
    reference for those is the full unpickler on this trusted, test-made file."""
    x = torch.randn(3, 4)
    roundtrip(tmp_path, {"x": x, "v": x[1:], "meta": ["a", 1, None], "s": {"k": 2}}, ref_weights_only=protocol <= 3,
              pickle_protocol=protocol)


def test_prefix_is_the_file_stem_and_bytesio_archive(tmp_path):
    x = torch.arange(10)
    path = str(tmp_path / "my_shard-01.pt")
    torch.save({"x": x}, path)
    names = zipfile.ZipFile(path).namelist()
    assert names[0].startswith("my_shard-01/")
    assert torch.equal(load_pt(path)["x"], x)
    buf = io.BytesIO()
    torch.save({"x": x}, buf)  # prefix "archive"
    p2 = tmp_path / "other.pt"
    p2.write_bytes(buf.getvalue())
    assert torch.equal(load_pt(str(p2))["x"], x)


def test_data_is_memory_mapped_and_aligned(tmp_path):
    x = torch.randn(256, 64)
    path = str(tmp_path / "m.pt")
    torch.save({"x": x}, path)
    got = load_pt(path)
    assert got["x"].data_ptr() % 64 == 0
    # it is a view of the file mapping, not a copy: the numpy base is the Rust archive object
    assert torch.equal(got["x"], x)


def test_zip64_archive(tmp_path, monkeypatch):
    """Rewrite a torch.save file with every record in zip64 form (as huge files get)."""
    x = torch.randn(4, 5)
    src = tmp_path / "src.pt"
    torch.save({"x": x, "t": x.t()}, str(src))
    dst = tmp_path / "z64.pt"
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 16)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            with zout.open(info.filename, "w", force_zip64=True) as f:
                f.write(zin.read(info.filename))
    monkeypatch.undo()
    raw = dst.read_bytes()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw  # zip64 end record + locator
    ref = torch.load(str(dst), weights_only=True)
    assert_same(load_pt(str(dst)), ref)


def test_legacy_format(tmp_path):
    """_use_new_zipfile_serialization=False files: read (data copied where it is not aligned)."""
    x = torch.randn(5, 3, dtype=torch.float64)
    obj = {"x": x, "t": x.t(), "row": x[2], "h": torch.arange(7).half(), "b": torch.tensor([True, False]),
           "bf": torch.randn(4).bfloat16(), "meta": [1, "a", None], "p": torch.nn.Parameter(torch.ones(2))}
    got, _, path = roundtrip(tmp_path, obj, name="legacy.pt", _use_new_zipfile_serialization=False)
    assert got["x"].untyped_storage().data_ptr() == got["t"].untyped_storage().data_ptr()
    raw = Path(path).read_bytes()
    for cut in (20, 140, len(raw) // 2, len(raw) - 3):
        p = str(tmp_path / f"legacy_cut{cut}.pt")
        with open(p, "wb") as f:
            f.write(raw[:cut])
        with pytest.raises(ShardError) as ei:
            load_pt(p)
        assert p in str(ei.value)


def test_inspect_pt_reports_without_reading(tmp_path):
    x = torch.randn(8, 3, dtype=torch.float64)
    path = str(tmp_path / "i.pt")
    torch.save({"model": {"w": x, "wt": x.t()}, "layers": [torch.zeros(2, dtype=torch.bfloat16)], "step": 3}, path)
    info = inspect_pt(path)
    assert set(info) == {"model.w", "model.wt", "layers.0"}
    assert info["model.wt"].shape == (3, 8) and info["model.wt"].stride == (1, 3)
    assert info["layers.0"].dtype == torch.bfloat16 and info["layers.0"].nbytes == 4
    assert info["model.w"].storage_key == info["model.wt"].storage_key
