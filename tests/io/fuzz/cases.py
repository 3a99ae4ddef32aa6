"""Inputs for the fuzz harness: seeds, hand-crafted hostile files (every class of fuzz-pt-2 as a
regression case) and structured mutators for the 14 categories of that campaign."""
from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

#: The 14 categories of fuzz-pt-2 (§ "What was run").
CATEGORIES = ("seed-pt", "seed-npy", "seed-frames", "hostile", "hostile-npy", "hostile-frames", "truncation",
              "zip-struct", "random-bytes-pt", "pickle-op", "tensor-meta", "npy", "npz", "random-frames")

MARKER = "VQFAST_FUZZ_MARKER"  # hostile pickles try to create this file (code execution check)


@dataclass
class Case:
    """One input: ``kind`` is "pt", "npy", "npz" or "frame" (the file's bytes in ``data``)."""

    name: str
    category: str
    kind: str
    data: bytes
    #: Allowed outcomes (see runner.OUTCOMES); a regression case names what it must give.
    expect: Tuple[str, ...] = ("ok", "ok-error")
    #: For shard-like inputs: the keys to read with LatentShardLoader.
    keys: Tuple[str, ...] = ("latents",)
    shard: bool = False
    extra: Dict[str, object] = field(default_factory=dict)


# ---- pickle writing (raw opcodes, protocol 2; what torch.save writes) ---------------------------

def p_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -(2 ** 31) <= v < 2 ** 31:
        return b"J" + struct.pack("<i", v)
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)


def p_tuple(items: List[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def p_tensor(storage_class: str, key: str, numel: int, offset: int, size, stride, requires_grad=False,
             location="cpu") -> bytes:
    pid = p_tuple([p_str("storage"), f"ctorch\n{storage_class}\n".encode(), p_str(key), p_str(location), p_int(numel)])
    args = p_tuple([pid + b"Q", p_int(offset), p_tuple([p_int(s) for s in size]), p_tuple([p_int(s) for s in stride]),
                    b"\x88" if requires_grad else b"\x89", b"ccollections\nOrderedDict\n)R"])
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


def p_dict(pairs: List[Tuple[bytes, bytes]]) -> bytes:
    return b"}" + b"".join(k + v + b"s" for k, v in pairs)


def pt_zip(pkl: bytes, storages: Optional[Dict[str, bytes]] = None, prefix: str = "archive", zip64: bool = False) -> bytes:
    """A torch.save-style zip (stored entries) holding ``pkl`` as ``data.pkl``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        z.writestr(f"{prefix}/byteorder", b"little")
        for k, v in (storages or {}).items():
            with z.open(f"{prefix}/data/{k}", "w", force_zip64=zip64) as f:
                f.write(v)
        z.writestr(f"{prefix}/version", b"3\n")
    return buf.getvalue()


def tensor_pt(name="latents", storage_class="FloatStorage", numel=24, size=(4, 6), stride=(6, 1), offset=0,
              data: Optional[bytes] = None, requires_grad=False, **kw) -> bytes:
    pkl = b"\x80\x02" + p_dict([(p_str(name), p_tensor(storage_class, "0", numel, offset, size, stride, requires_grad))]) + b"."
    return pt_zip(pkl, {"0": data if data is not None else bytes(numel * 4)}, **kw)


# ---- npy / npz / frames -----------------------------------------------------------------------

def npy_bytes(header: str, data: bytes, version: int = 1, hlen: Optional[int] = None) -> bytes:
    h = header
    pre = 10 if version == 1 else 12
    while (pre + len(h) + 1) % 64:
        h += " "
    h += "\n"
    n = len(h) if hlen is None else hlen
    lenfield = struct.pack("<H", n & 0xFFFF) if version == 1 else struct.pack("<I", n & 0xFFFFFFFF)
    return b"\x93NUMPY" + bytes([version, 0]) + lenfield + h.encode("latin1") + data


def npy_header(descr: str, shape, fortran=False) -> str:
    return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)


def npz_bytes(members: Dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for k, v in members.items():
            z.writestr(f"{k}.npy", v)
    return buf.getvalue()


def np_save(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def image_bytes(fmt: str, shape=(12, 16, 3), mode: Optional[str] = None, **kw) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_with_size(w: int, h: int) -> bytes:
    b = bytearray(image_bytes("PNG"))
    b[16:24] = struct.pack(">II", w, h)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def jpeg_with_size(w: int, h: int) -> bytes:
    b = bytearray(image_bytes("JPEG"))
    i = 2
    while i + 4 < len(b):  # find SOF0 / SOF2
        marker, seglen = b[i + 1], struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC2):
            b[i + 5:i + 9] = struct.pack(">HH", h, w)
            break
        i += 2 + seglen
    return bytes(b)


# ---- seeds ------------------------------------------------------------------------------------

def seed_pt() -> List[Case]:
    import torch

    def save(obj, **kw) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf, **kw)
        return buf.getvalue()

    base = torch.arange(24, dtype=torch.float32).view(4, 6)
    sd = torch.nn.Linear(3, 2).state_dict()
    out = [
        Case("shard_f32", "seed-pt", "pt", save({"latents": base, "labels": torch.arange(4)}), keys=("latents", "labels"), shard=True),
        Case("views", "seed-pt", "pt", save({"a": base, "t": base.t(), "s": base[1:, 2:], "e": base[0].expand(3, 6)})),
        Case("nested", "seed-pt", "pt", save({"x": [base, (1, 2.5, "s", None, True)], 3: {"y": torch.zeros(0)}, (1, 2): b"ab"})),
        Case("state_dict", "seed-pt", "pt", save({"state_dict": sd, "epoch": 3})),
        Case("dtypes", "seed-pt", "pt", save({str(d): torch.ones(3, 2, dtype=d) for d in
                                               (torch.float16, torch.bfloat16, torch.int8, torch.uint8, torch.bool, torch.int64, torch.complex64)})),
        Case("params", "seed-pt", "pt", save({"p": torch.nn.Parameter(torch.ones(2)), "g": torch.ones(2).requires_grad_()})),
        Case("misc", "seed-pt", "pt", save({"size": torch.Size([2, 3]), "dev": torch.device("cpu"), "dt": torch.float32, "big": 2 ** 70,
                                             "set": {1, 2}, "c": complex(1, 2), "nan": float("nan")})),
        Case("shared", "seed-pt", "pt", save({"a": base, "b": base, "l": [base] * 3})),
        Case("legacy", "seed-pt", "pt", save({"latents": base}, _use_new_zipfile_serialization=False)),
        Case("proto4", "seed-pt", "pt", save({"latents": base}, pickle_protocol=4)),
        Case("legacy_p4", "seed-pt", "pt", save({"latents": base, "l": [1, 2]}, _use_new_zipfile_serialization=False, pickle_protocol=4)),
    ]
    return out


def seed_npy() -> List[Case]:
    lat = np.arange(24, dtype=np.float32).reshape(4, 6)
    return [
        Case("npy_f32", "seed-npy", "npy", np_save(lat), shard=True),
        Case("npy_i64", "seed-npy", "npy", np_save(np.arange(5)), shard=True),
        Case("npy_bool", "seed-npy", "npy", np_save(np.ones((3, 2), bool)), shard=True),
        Case("npz_pair", "seed-npy", "npz", npz_bytes({"latents": np_save(lat), "labels": np_save(np.arange(4))}),
             keys=("latents", "labels"), shard=True),
    ]


def seed_frames() -> List[Case]:
    return [Case(f"{fmt}_{mode or 'rgb'}", "seed-frames", "frame", image_bytes(fmt, mode=mode, **kw))
            for fmt, mode, kw in (("PNG", None, {}), ("PNG", "RGBA", {}), ("PNG", "L", {}), ("PNG", "P", {}),
                                  ("JPEG", None, {}), ("JPEG", "L", {}), ("JPEG", None, {"progressive": True}))]


# ---- hand-crafted hostile files: every class of fuzz-pt-2 (A1-A4, B1-B7, C1-C2) + code execution

def _deep(kind: str, n: int, pop: bool = False) -> bytes:
    if kind == "list":
        body = b"]" * n + b"a" * (n - 1)
    elif kind == "tuple":
        body = b"N" + b"\x85" * n
    else:  # dict chain: {0: {0: {...}}} via SETITEM
        body = b"}" + b"K\x00}" * (n - 1) + b"s" * (n - 1)
    return b"\x80\x02" + body + (b"0N" if pop else b"") + b"."


def hostile_pt() -> List[Case]:
    err, ok = ("ok-error",), ("ok",)
    marker_cmd = f"touch {MARKER}".encode()
    t = p_tensor("FloatStorage", "0", 2, 0, (2,), (1,))
    cases = [
        # A1: deep nesting (a SIGSEGV in the recursive drop)
        Case("A1 2e5 nested tuples, popped", "hostile", "pt", pt_zip(_deep("tuple", 200_000, pop=True)), expect=ok),
        Case("A1 1e6 nested tuples", "hostile", "pt", pt_zip(_deep("tuple", 1_000_000)), expect=err),
        Case("A1 1e6 nested lists", "hostile", "pt", pt_zip(_deep("list", 1_000_000)), expect=err),
        Case("A1 2.5e5 nested dicts", "hostile", "pt", pt_zip(_deep("dict", 250_000)), expect=err),
        # A2 / C2: memo amplification (shared references must stay shared)
        Case("A2 1 MiB bytes x 20000 refs", "hostile", "pt",
             pt_zip(b"\x80\x03B" + struct.pack("<I", 1 << 20) + b"a" * (1 << 20) + b"q\x00(" + b"h\x00" * 20000 + b"l."), expect=ok),
        Case("A2 1 MiB str x 5000 refs", "hostile", "pt",
             pt_zip(b"\x80\x03X" + struct.pack("<I", 1 << 20) + b"a" * (1 << 20) + b"q\x00(" + b"h\x00" * 5000 + b"l."), expect=ok),
        Case("C2 billion laughs 10^9 leaves", "hostile", "pt", pt_zip(
            b"\x80\x02Nq\x00" + b"".join(b"(" + bytes([ord("h"), i]) * 10 + b"lq" + bytes([i + 1]) for i in range(9)) + b"."), expect=ok),
        Case("C2 one tensor x 10^6 refs", "hostile", "pt",
             pt_zip(b"\x80\x02" + t + b"q\x00(" + b"h\x00" * 1_000_000 + b"l.", {"0": bytes(8)}), expect=ok),
        # C1: quadratic SETITEM
        Case("C1 3e5 int keys", "hostile", "pt",
             pt_zip(b"\x80\x02}" + b"".join(b"J" + struct.pack("<i", i) + b"Ns" for i in range(300_000)) + b"."), expect=ok),
        Case("C1 2e5 keys one SETITEMS", "hostile", "pt",
             pt_zip(b"\x80\x02}(" + b"".join(b"J" + struct.pack("<i", i) + b"N" for i in range(200_000)) + b"u."), expect=ok),
        # B1-B5, B7: wrong exception types
        Case("B1 entry not whole elements", "hostile", "pt", tensor_pt("x", numel=2, size=(2,), stride=(1,), data=bytes(10)), expect=err),
        Case("B2 int tensor requires_grad", "hostile", "pt",
             tensor_pt("x", "LongStorage", numel=2, size=(2,), stride=(1,), data=bytes(16), requires_grad=True), expect=err),
        Case("B3 numel overflow stride 0", "hostile", "pt",
             tensor_pt("x", numel=4, size=(2 ** 32, 2 ** 32, 2 ** 32), stride=(0, 0, 0), data=bytes(16)), expect=err),
        Case("B3 numel overflow before 0", "hostile", "pt",
             tensor_pt("x", numel=4, size=(2 ** 62, 4, 0), stride=(1, 1, 1), data=bytes(16)), expect=err),
        Case("B4 unhashable dict key", "hostile", "pt", pt_zip(b"\x80\x02}]K\x01s."), expect=err),
        Case("B4 unhashable set item", "hostile", "pt", pt_zip(b"\x80\x02cbuiltins\nset\n(]]l\x85R."), expect=err),
        Case("B5 OrderedDict BUILD __class__", "hostile", "pt",
             pt_zip(b"\x80\x02ccollections\nOrderedDict\n)R}" + p_str("__class__") + b"K\x01sb."), expect=err),
        Case("B5 OrderedDict BUILD __dict__", "hostile", "pt",
             pt_zip(b"\x80\x02ccollections\nOrderedDict\n)R}" + p_str("__dict__") + b"}sb."), expect=err),
        Case("B7 torch.device('bogus')", "hostile", "pt", pt_zip(b"\x80\x02ctorch\ndevice\n" + p_str("bogus") + b"\x85R."), expect=err),
        Case("B7 torch.device('cuda', -5)", "hostile", "pt",
             pt_zip(b"\x80\x02ctorch\ndevice\n" + p_str("cuda") + b"J\xfb\xff\xff\xff\x86R."), expect=err),
        # code execution attempts through every route: refused, marker never created
        Case("exec GLOBAL os.system", "hostile", "pt", pt_zip(b"\x80\x02cos\nsystem\n" + p_str(marker_cmd.decode()) + b"\x85R."), expect=err),
        Case("exec STACK_GLOBAL posix.system", "hostile", "pt",
             pt_zip(b"\x80\x04\x8c\x05posix\x8c\x06system\x93" + p_str(marker_cmd.decode()) + b"\x85R."), expect=err),
        Case("exec INST", "hostile", "pt", pt_zip(b"(" + p_str(marker_cmd.decode()) + b"ios\nsystem\n."), expect=err),
        Case("exec OBJ", "hostile", "pt", pt_zip(b"\x80\x02(cos\nsystem\n" + p_str(marker_cmd.decode()) + b"o."), expect=err),
        Case("exec NEWOBJ", "hostile", "pt", pt_zip(b"\x80\x02csubprocess\nPopen\n(" + p_str("touch") + p_str(MARKER) + b"ll\x85\x81."), expect=err),
        Case("exec BUILD setstate", "hostile", "pt",
             pt_zip(b"\x80\x02ccollections\nOrderedDict\n)R}" + p_str("__setstate__") + b"cos\nsystem\nsb."), expect=err),
        Case("exec PERSID", "hostile", "pt", pt_zip(b"\x80\x02P" + marker_cmd + b"\n."), expect=err),
        Case("exec _rebuild_from_type_v2 eval", "hostile", "pt",
             pt_zip(b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n(cbuiltins\neval\nctorch\nTensor\n(" + p_str("1") + b"t}tR."), expect=err),
        # huge length fields
        Case("huge BINUNICODE8 length", "hostile", "pt", pt_zip(b"\x80\x04\x8d" + struct.pack("<Q", 2 ** 63) + b"."), expect=err),
        Case("huge LONG4", "hostile", "pt", pt_zip(b"\x80\x02\x8b" + struct.pack("<I", 2 ** 31) + b"."), expect=err),
    ]
    return cases


def hostile_npy() -> List[Case]:
    err = ("ok-error",)
    hdr = npy_header
    return [
        Case("A3 npy shape wraps u64", "hostile-npy", "npy", npy_bytes(hdr("|u1", "(64, 288230376151711742)"), bytes(48)), shard=True, expect=err),
        Case("A3 npz member wraps u64", "hostile-npy", "npz",
             npz_bytes({"latents": npy_bytes(hdr("|u1", "(64, 288230376151711742)"), bytes(48))}), shard=True, expect=err),
        Case("B6 npy 0-d", "hostile-npy", "npy", np_save(np.float32(1.5)), shard=True, expect=err),
        Case("B6 npz 0-d member", "hostile-npy", "npz", npz_bytes({"latents": np_save(np.float32(1.5))}), shard=True, expect=err),
        Case("B6 capacity overflow (2^64-16,)", "hostile-npy", "npy", npy_bytes(hdr("|u1", "(18446744073709551600,)"), bytes(16)),
             shard=True, expect=err),
        Case("B6 capacity overflow (2, 2^63-64)", "hostile-npy", "npy", npy_bytes(hdr("<f4", "(2, 9223372036854775744)"), bytes(16)),
             shard=True, expect=err),
        Case("B6 empty rows 2^60 x 0", "hostile-npy", "npy", npy_bytes(hdr("<f4", "(1152921504606846976, 0)"), b""), shard=True, expect=err),
        Case("npy (0, 2^64-1)", "hostile-npy", "npy", npy_bytes(hdr("<f4", "(0, 18446744073709551615)"), b""), shard=True, expect=err),
        Case("npy huge header length", "hostile-npy", "npy", npy_bytes(hdr("<f4", "(2,)"), bytes(8), version=2, hlen=2 ** 32 - 1),
             shard=True, expect=err),
        Case("npy object dtype", "hostile-npy", "npy", npy_bytes(hdr("|O", "(2,)"), bytes(16)), shard=True, expect=err),
    ]


def hostile_frames() -> List[Case]:
    err = ("ok-error",)
    return [
        Case("A4 PNG IHDR 100000x100000", "hostile-frames", "frame", png_with_size(100_000, 100_000), expect=err),
        Case("PNG IHDR 20000x20000", "hostile-frames", "frame", png_with_size(20_000, 20_000), expect=err),
        Case("PNG IHDR 2^31-1 x 1", "hostile-frames", "frame", png_with_size(2 ** 31 - 1, 1), expect=err),
        Case("JPEG SOF 65535x65535", "hostile-frames", "frame", jpeg_with_size(65535, 65535), expect=err),
        Case("PNG IHDR 0x0", "hostile-frames", "frame", png_with_size(0, 0), expect=err),
    ]


def regression_cases() -> List[Case]:
    """Every hand-crafted class: what the CI run checks one by one."""
    return hostile_pt() + hostile_npy() + hostile_frames()


# ---- structured mutators ----------------------------------------------------------------------

def truncations(seed: Case, rnd: random.Random, n: int) -> List[Case]:
    cuts = sorted({rnd.randrange(len(seed.data)) for _ in range(n)})
    return [Case(f"{seed.name} cut {c}", "truncation", seed.kind, seed.data[:c], keys=seed.keys, shard=seed.shard) for c in cuts]


def _zip_fields(data: bytes) -> List[Tuple[int, int]]:
    """(offset, width) of every numeric field of the EOCD, central directory and local headers."""
    out = []
    eocd = data.rfind(b"PK\x05\x06")
    if eocd >= 0:
        out += [(eocd + o, w) for o, w in ((4, 2), (6, 2), (8, 2), (10, 2), (12, 4), (16, 4), (20, 2))]
    for sig, layout in ((b"PK\x01\x02", ((4, 2), (6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (32, 2), (38, 4), (42, 4))),
                        (b"PK\x03\x04", ((4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)))):
        i = data.find(sig)
        while i >= 0:
            out += [(i + o, w) for o, w in layout]
            i = data.find(sig, i + 4)
    return out


def zip_struct(seed: Case, rnd: random.Random, n: int) -> List[Case]:
    fields = _zip_fields(seed.data)
    out = []
    for _ in range(n):
        off, w = rnd.choice(fields)
        v = rnd.choice([0, 1, 2 ** (8 * w) - 1, 2 ** (8 * w - 1), rnd.randrange(2 ** (8 * w)), len(seed.data)]) % 2 ** (8 * w)
        b = bytearray(seed.data)
        b[off:off + w] = v.to_bytes(w, "little")
        out.append(Case(f"{seed.name} zip field {off}:{w}={v}", "zip-struct", seed.kind, bytes(b), keys=seed.keys, shard=seed.shard))
    return out


def byte_mutation(data: bytes, rnd: random.Random) -> Tuple[bytes, str]:
    b = bytearray(data)
    ops = []
    for _ in range(rnd.randint(1, 4)):
        k = rnd.randrange(6)
        i = rnd.randrange(max(len(b), 1))
        if k == 0 and b:
            b[i] ^= 1 << rnd.randrange(8)
            ops.append(f"flip {i}")
        elif k == 1 and b:
            b[i] = rnd.randrange(256)
            ops.append(f"set {i}")
        elif k == 2:
            w = rnd.choice([4, 8])
            b[i:i + w] = rnd.choice([0, 1, 2 ** (8 * w) - 1, 2 ** (8 * w - 2)]).to_bytes(w, "little")
            ops.append(f"u{8 * w} {i}")
        elif k == 3:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
            ops.append(f"insert {i}")
        elif k == 4:
            del b[i:i + rnd.randint(1, 16)]
            ops.append(f"delete {i}")
        else:
            j = rnd.randrange(max(len(b), 1))
            b[j:j] = b[i:i + rnd.randint(1, 32)]
            ops.append(f"dup {i}->{j}")
    return bytes(b), ", ".join(ops)


def random_bytes(seed: Case, rnd: random.Random, n: int, category: str) -> List[Case]:
    out = []
    for _ in range(n):
        data, how = byte_mutation(seed.data, rnd)
        out.append(Case(f"{seed.name}: {how}", category, seed.kind, data, keys=seed.keys, shard=seed.shard))
    return out


_PICKLE_INSERTS = [b"cos\nsystem\n", b"\x93", b"R", b"b", b"\x81", b"o", b"i", b"\x82\x01", b"P0\n", b"Q", b"(", b"t", b"0", b"2",
                   b"h\x00", b"q\x00", b"\x8d" + struct.pack("<Q", 2 ** 62), b"\x80\x06", b"}", b"]", b"s", b"u", b"e", b"\x88", b"."]


def pickle_ops(seed: Case, rnd: random.Random, n: int) -> List[Case]:
    """Opcode-level edits of the seed's data.pkl; the zip is rewritten with valid CRCs."""
    with zipfile.ZipFile(io.BytesIO(seed.data)) as z:
        names = z.namelist()
        entries = {nm: z.read(nm) for nm in names}
    pkl_name = next(nm for nm in names if nm.endswith("/data.pkl"))
    pkl = entries[pkl_name]
    out = []
    for _ in range(n):
        b = bytearray(pkl)
        how = []
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(len(b))
            k = rnd.randrange(3)
            if k == 0:
                ins = rnd.choice(_PICKLE_INSERTS)
                b[i:i] = ins
                how.append(f"insert {ins[:8]!r}@{i}")
            elif k == 1:
                del b[i:i + rnd.randint(1, 3)]
                how.append(f"delete@{i}")
            else:
                b[i] = rnd.choice([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x88, 0x89, ord("N"), ord("K"), ord("J")])
                how.append(f"set@{i}")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for nm in names:
                z.writestr(nm, bytes(b) if nm == pkl_name else entries[nm])
        out.append(Case(f"{seed.name} data.pkl: {'; '.join(how)}", "pickle-op", "pt", buf.getvalue(), keys=seed.keys, shard=seed.shard))
    return out


_BOUNDARY = [0, 1, 2, 3, 7, 2 ** 31 - 1, 2 ** 32, 2 ** 62, 2 ** 63 - 1]
_STORAGES = [("FloatStorage", 4), ("DoubleStorage", 8), ("HalfStorage", 2), ("LongStorage", 8), ("ByteStorage", 1), ("BoolStorage", 1)]


def tensor_meta(rnd: random.Random, n: int) -> List[Case]:
    """Tensor metadata at the validity boundary (numel, offset, sizes, strides, data length)."""
    out = []
    for _ in range(n):
        cls, item = rnd.choice(_STORAGES)
        ndim = rnd.choice([0, 1, 2, 3, 65])
        pick = (lambda: rnd.choice(_BOUNDARY)) if rnd.random() < 0.3 else (lambda: rnd.randrange(5))
        size = tuple(pick() for _ in range(ndim))
        stride = tuple(pick() for _ in range(ndim if rnd.random() < 0.9 else max(ndim - 1, 0)))
        numel = pick() if rnd.random() < 0.3 else rnd.randrange(40)
        offset = pick() if rnd.random() < 0.2 else rnd.randrange(3)
        dlen = rnd.choice([numel * item, numel * item + 1, max(numel * item - 1, 0), rnd.randrange(64)])
        dlen = min(dlen, 4096)
        rg = rnd.random() < 0.2
        data = tensor_pt("latents", cls, numel, size, stride, offset, bytes(dlen), requires_grad=rg)
        out.append(Case(f"{cls} numel={numel} off={offset} size={size} stride={stride} len={dlen} rg={rg}", "tensor-meta", "pt", data, shard=True))
    return out


def npy_headers(rnd: random.Random, n: int) -> List[Case]:
    descrs = ["<f4", "<f2", "|u1", "|b1", "<i8", "<c8", ">f4", "|O", "<f", "=f4", "<f4'"]
    dims = [0, 1, 2, 3, 4, 2 ** 32, 2 ** 63 - 1, 2 ** 64 - 1, 2 ** 64, 288230376151711742]
    out = []
    for _ in range(n):
        shape = tuple(rnd.choice(dims) if rnd.random() < 0.3 else rnd.randrange(5) for _ in range(rnd.choice([0, 1, 2, 3])))
        shape_txt = repr(shape) if rnd.random() < 0.9 else rnd.choice(["(3,,4)", "()", "(-1,)", "(1e3,)", "("])
        fo = rnd.choice(["False", "True", "1", "Fals"])
        header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (rnd.choice(descrs), fo, shape_txt)
        version = rnd.choice([1, 1, 2, 3])
        data = bytes(rnd.choice([0, 1, 16, 37, 96, 4096]))
        out.append(Case(f"npy {header} v{version} len={len(data)}", "npy", "npy", npy_bytes(header, data, version=version), shard=True))
    return out


def npz_edits(seed: Case, rnd: random.Random, n: int) -> List[Case]:
    out = []
    for i in range(n):
        if i % 2:
            out += zip_struct(seed, rnd, 1)
            out[-1].category = "npz"
        else:
            data, how = byte_mutation(seed.data, rnd)
            out.append(Case(f"{seed.name}: {how}", "npz", "npz", data, keys=seed.keys, shard=True))
    return out


Generator = Callable[[random.Random, int], List[Case]]


def generators() -> Dict[str, Generator]:
    """category -> (rnd, n) -> n cases; the round-robin of the long run."""
    pts = [c for c in seed_pt() if not c.name.startswith("legacy")]
    legacy = [c for c in seed_pt() if c.name.startswith("legacy")]
    npys = [c for c in seed_npy() if c.kind == "npy"]
    npzs = [c for c in seed_npy() if c.kind == "npz"]
    frames = seed_frames()
    return {
        "truncation": lambda r, n: truncations(r.choice(pts + legacy + npys + npzs), r, n),
        "zip-struct": lambda r, n: zip_struct(r.choice(pts), r, n),
        "random-bytes-pt": lambda r, n: random_bytes(r.choice(pts + legacy), r, n, "random-bytes-pt"),
        "pickle-op": lambda r, n: pickle_ops(r.choice(pts), r, n),
        "tensor-meta": tensor_meta,
        "npy": lambda r, n: npy_headers(r, n // 2) + random_bytes(r.choice(npys), r, n - n // 2, "npy"),
        "npz": lambda r, n: npz_edits(r.choice(npzs), r, n),
        "random-frames": lambda r, n: random_bytes(r.choice(frames), r, n, "random-frames"),
    }


def fixed_cases() -> List[Case]:
    """Seeds and hand-crafted files (run once per campaign, first)."""
    return seed_pt() + seed_npy() + seed_frames() + regression_cases()
