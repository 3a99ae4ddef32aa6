"""Fused nearest-codebook lookup: squared-L2 distance + running argmin, never materialising N x K.

Computes, for every row z_i of z[N, D] and the codebook E[K, D]:
    k_i    = argmin_j ( ||E_j||^2 - 2 z_i . E_j )         (ties -> lowest j, as torch.argmin)
    dist_i = max(||z_i||^2 + ||E_{k_i}||^2 - 2 z_i . E_{k_i}, 0)
Matches `vqfast.ops.reference.nearest_code` (taming VectorQuantizer2's expanded distance + argmin).

Launches (O(N + K) extra memory; N x K is never formed):
  _row_sqnorm_kernel        ||E_j||^2 in fp32 once per call (skipped when the caller passes it), and for
                            precision="bf16" on fp32 inputs the bf16 copies of E and z (+ fp32 ||z_i||^2):
                            the cast happens once here, not per codebook tile in the main loop.
  _nearest_code_fwd_kernel  grid (cdiv(N, BLOCK_N), S). One program owns BLOCK_N rows of z; for D <= 256
                            (D <= 128 for "ieee", whose 3xTF32 split doubles the tile)
                            the z tile is loaded once and stays resident (shared memory) while the program
                            walks its codebook range in BLOCK_K tiles -- the codebook loop is the one
                            software-pipelined loop. Larger D walks 64-wide chunks per tile. The tile
                            epilogue folds the precomputed ||E||^2 in and keeps a running (min, argmin) per
                            row; EVEN_K (K % BLOCK_K == 0) drops the codebook masks.
  small N (SPLIT, fewer row blocks than SMs): S > 1 programs split the codebook of each row block and merge
                            through a packed 64-bit key (order-preserving bits of the fp32 minimum << 32 |
                            index) with a relaxed atomic_min into idx (pre-filled with INT64_MAX): the
                            lowest (value, index) wins, so ties go to the lowest index, as torch.argmin.
  _nearest_code_merge_kernel (SPLIT only) unpacks idx, adds ||z||^2 (stored by split 0) and the counts.
Limits: any N, K >= 1, D >= 1, K < 2^31.

Precision (accumulation always fp32; ||z||^2 and ||E||^2 always fp32 from the input values):
    PRECISION=0 "ieee": fp32 tiles on TF32 tensor cores in 3xTF32 (tl.dot input_precision="tf32x3":
                hi*hi + hi*lo + lo*hi), products accurate to ~2^-20 relative (exact fp32 FMA would spill and
                run on CUDA cores; see the bound in vqfast.ops.nearest_code).
    PRECISION=1 "tf32": fp32 tiles on TF32 tensor cores (10-bit mantissa inputs).
    PRECISION=3: fp16/bf16 tiles in their own tensor-core dtype, products exact in fp32 -- half inputs in any
                mode, and "bf16" mode on fp32 inputs after the one-time cast in _row_sqnorm_kernel.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

PRECISIONS = {"ieee": 0, "tf32": 1, "bf16": 2}
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
RESIDENT_MAX_D = 256
INT64_MAX = 2**63 - 1

# (BLOCK_N, BLOCK_K, num_warps, num_stages) per (mode, D class); each entry compiles for sm_90a without
# spills, within shared memory, and (BLOCK_N >= 64, >= 4 warps) on wgmma -- checked by
# vqfast.tools.compile_report and its CI gate. "f32" = tf32, "x3" = ieee (3xTF32), "h" = fp16/bf16 tiles.
_TABLE = {
    ("f32", "small"): [(128, 128, 8, 3), (128, 64, 4, 4), (64, 128, 4, 4), (256, 64, 8, 3)],
    ("f32", "d256"): [(128, 32, 8, 3), (64, 64, 4, 2), (64, 32, 4, 3)],
    ("f32", "big"): [(128, 64, 8, 3), (64, 64, 4, 3)],
    ("x3", "small"): [(128, 64, 8, 3), (64, 64, 4, 3), (128, 128, 8, 3)],
    ("x3", "big"): [(128, 64, 8, 3), (64, 64, 4, 3)],
    ("x3", "small", 80): [(128, 64, 8, 3), (64, 64, 4, 3)],  # sm_80: mma.sync keeps hi/lo operands in registers
    ("x3", "big", 80): [(32, 32, 4, 3)],
    ("h", "small"): [(128, 128, 8, 3), (128, 64, 4, 4), (64, 128, 4, 4), (256, 64, 8, 3)],
    ("h", "d256"): [(128, 64, 8, 3), (128, 128, 8, 2), (256, 64, 8, 2), (64, 64, 4, 3)],
    ("h", "big"): [(128, 128, 8, 3), (64, 64, 4, 3)],
}


def _mode(precision: int) -> str:
    return {0: "x3", 1: "f32"}.get(precision, "h")


def _resident_max_d(precision: int) -> int:
    # 3xTF32 keeps hi and lo copies of the z tile: resident only up to D = 128 (384 KB at D = 256).
    return 128 if precision == 0 else RESIDENT_MAX_D


def _d_class(D: int, precision: int) -> str:
    return "small" if D <= 128 else "d256" if D <= _resident_max_d(precision) else "big"


def _block_d(D: int, precision: int) -> int:
    return max(16, triton.next_power_of_2(D)) if D <= _resident_max_d(precision) else 64


def _table(mode: str, d_class: str, arch: int) -> list:
    """Configs of (mode, D class) for this compute capability (major * 10 + minor); sm_80-class parts get
    their own entry where the Hopper one would spill (checked by the compile report for both)."""
    if arch < 90 and (mode, d_class, 80) in _TABLE:
        return _TABLE[(mode, d_class, 80)]
    return _TABLE[(mode, d_class)]


def _device_arch(t) -> int:
    if not isinstance(t, torch.Tensor) or t.device.type != "cuda":
        return 90
    major, minor = torch.cuda.get_device_capability(t.device)
    return major * 10 + minor


def _configs():
    if _INTERPRET:
        # The interpreter runs on numpy: one small config keeps CPU tests quick and exercises masking.
        return [triton.Config({"BLOCK_N": 16, "BLOCK_K": 16}, num_warps=1)]
    seen, out = set(), []
    for entries in _TABLE.values():
        for e in entries:
            if e not in seen:
                seen.add(e)
                bn, bk, w, s = e
                out.append(triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s))
    return out


def _prune(configs, named_args, **kwargs):
    """Keep the configs of this (precision mode, D class, arch) from _TABLE; `_ARCH` overrides the device's
    compute capability (the compile report prunes for each target)."""
    if _INTERPRET:
        return configs
    a = {**named_args, **kwargs}
    arch = a.get("_ARCH") or _device_arch(a.get("z_ptr"))
    allowed = set(_table(_mode(a["PRECISION"]), _d_class(a["D"], a["PRECISION"]), arch))
    return [c for c in configs if (c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.num_warps, c.num_stages) in allowed]


@triton.jit
def _tile_dot(zt, et, acc, PRECISION: tl.constexpr, INTERPRET: tl.constexpr):
    """acc += zt (BN, BD) @ et (BK, BD)^T in the requested precision, fp32 accumulation."""
    if INTERPRET:
        # Triton's CPU interpreter mis-multiplies half operands and has no 3xTF32: emulate the tensor-core
        # math (input-dtype values, exact products, fp32 accumulation) with fp32 operands.
        acc = tl.dot(zt.to(tl.float32), tl.trans(et.to(tl.float32)), acc, input_precision="ieee")
    elif PRECISION == 0:
        acc = tl.dot(zt, tl.trans(et), acc, input_precision="tf32x3")
    elif PRECISION == 1:
        acc = tl.dot(zt, tl.trans(et), acc, input_precision="tf32")
    else:  # fp16/bf16 tiles: their own tensor-core dtype, exact products
        acc = tl.dot(zt, tl.trans(et), acc)
    return acc


@triton.jit
def _load_tile(ptrs, mrow, mcol, EVEN_R: tl.constexpr, EVEN_C: tl.constexpr):
    """Load a 2-D tile, masking only the axes that can be ragged (zero fill)."""
    if EVEN_R and EVEN_C:
        t = tl.load(ptrs)
    elif EVEN_C:
        t = tl.load(ptrs, mask=mrow[:, None], other=0.0)
    elif EVEN_R:
        t = tl.load(ptrs, mask=mcol[None, :], other=0.0)
    else:
        t = tl.load(ptrs, mask=mrow[:, None] & mcol[None, :], other=0.0)
    return t


@triton.jit
def _codebook_range(K, SPLIT: tl.constexpr, BLOCK_K: tl.constexpr):
    """[k_lo, k_hi) of this program: all of K, or (SPLIT) its share of whole BLOCK_K tiles."""
    if SPLIT:
        n_tiles = tl.cdiv(K, BLOCK_K)
        per = tl.cdiv(n_tiles, tl.num_programs(1))
        k_lo = tl.program_id(1) * per * BLOCK_K
        k_hi = tl.minimum(K, k_lo + per * BLOCK_K)
    else:
        k_lo = 0
        k_hi = K
    return k_lo, k_hi


@triton.jit
def _finish_rows(best, best_idx, zsq, rn64, mask_n, idx_ptr, dist_ptr, counts_ptr, BLOCK_N: tl.constexpr,
                 HAS_COUNTS: tl.constexpr, SPLIT: tl.constexpr):
    if SPLIT:
        v = best + 0.0                                               # -0.0 -> +0.0 (equal in argmin)
        bits = v.to(tl.int32, bitcast=True)
        ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)                 # signed order == float order
        key = (ordered.to(tl.int64) << 32) | best_idx.to(tl.int64)
        tl.atomic_min(idx_ptr + rn64, key, mask=mask_n, sem="relaxed")
        if tl.program_id(1) == 0:
            tl.store(dist_ptr + rn64, zsq, mask=mask_n)
    else:
        tl.store(idx_ptr + rn64, best_idx.to(tl.int64), mask=mask_n)
        tl.store(dist_ptr + rn64, tl.maximum(zsq + best, 0.0), mask=mask_n)
        if HAS_COUNTS:  # code-usage histogram for perplexity / codebook health, no extra pass
            tl.atomic_add(counts_ptr + best_idx, tl.full((BLOCK_N,), 1.0, tl.float32), mask=mask_n,
                          sem="relaxed")


@triton.autotune(configs=_configs(), key=["K", "D", "PRECISION", "N_BUCKET", "SPLIT", "HAS_ZSQ"],
                 prune_configs_by={"early_config_prune": _prune}, reset_to_zero=["counts_ptr"],
                 restore_value=["idx_ptr"])  # SPLIT: every benchmark run starts from the INT64_MAX keys
@triton.heuristics({
    "BLOCK_D": lambda a: _block_d(a["D"], a["PRECISION"]),
    "RESIDENT": lambda a: a["D"] <= _resident_max_d(a["PRECISION"]),
    "EVEN_K": lambda a: a["K"] % a["BLOCK_K"] == 0,
    "EVEN_D": lambda a: a["D"] % _block_d(a["D"], a["PRECISION"]) == 0,
})
@triton.jit
def _nearest_code_fwd_kernel(
    z_ptr,        # (N, D) fp32/fp16/bf16, row stride stride_zn, unit column stride
    cb_ptr,       # (K, D) same dtype as z, row stride stride_ck, unit column stride
    esq_ptr,      # (K,) fp32 ||E_j||^2
    zsq_ptr,      # (N,) fp32 ||z_i||^2, read only when HAS_ZSQ (else computed from the z tile)
    idx_ptr,      # (N,) int64 out; SPLIT: packed (value, index) keys, pre-filled with INT64_MAX
    dist_ptr,     # (N,) fp32 out; SPLIT: ||z_i||^2 (split 0 writes it, the merge kernel finishes)
    counts_ptr,   # (K,) fp32 zero-initialised out: rows assigned to each code, when HAS_COUNTS (not SPLIT)
    N, K, D,
    stride_zn, stride_ck,
    N_BUCKET,     # autotune key only: coarse size class of N
    HAS_ZSQ: tl.constexpr,
    HAS_COUNTS: tl.constexpr,
    SPLIT: tl.constexpr,
    PRECISION: tl.constexpr,
    INTERPRET: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    RESIDENT: tl.constexpr,
    EVEN_K: tl.constexpr,
    EVEN_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)                      # (BN,)
    mask_n = rn < N
    rn64 = rn.to(tl.int64)
    rd = tl.arange(0, BLOCK_D)                                     # (BD,)

    k_lo, k_hi = _codebook_range(K, SPLIT, BLOCK_K)                # SPLIT: whole tiles, EVEN_K holds per tile

    if RESIDENT:  # z tile loaded once, kept on chip for the whole codebook walk
        z_res = _load_tile(z_ptr + rn64[:, None] * stride_zn + rd[None, :], mask_n, rd < D, False, EVEN_D)
        if not HAS_ZSQ:
            zf = z_res.to(tl.float32)
            zsq = tl.sum(zf * zf, axis=1)
    else:
        z_res = tl.zeros((BLOCK_N, BLOCK_D), dtype=z_ptr.dtype.element_ty)                  # unused
        if not HAS_ZSQ:
            zsq = tl.zeros((BLOCK_N,), dtype=tl.float32)
            for d0 in range(0, D, BLOCK_D):
                zt = _load_tile(z_ptr + rn64[:, None] * stride_zn + (d0 + rd)[None, :], mask_n, (d0 + rd) < D,
                                False, EVEN_D).to(tl.float32)                              # (BN, BD)
                zsq += tl.sum(zt * zt, axis=1)
    if HAS_ZSQ:
        zsq = tl.load(zsq_ptr + rn64, mask=mask_n, other=0.0)

    best = tl.full((BLOCK_N,), float("inf"), dtype=tl.float32)     # running min of ||E||^2 - 2 z.E
    best_idx = tl.zeros((BLOCK_N,), dtype=tl.int32)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)                             # (BK,)
        mask_k = rk < K
        rk64 = rk.to(tl.int64)
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)        # z . E^T for this tile
        if RESIDENT:
            et = _load_tile(cb_ptr + rk64[:, None] * stride_ck + rd[None, :], mask_k, rd < D, EVEN_K, EVEN_D)
            acc = _tile_dot(z_res, et, acc, PRECISION, INTERPRET)                          # (BK, BD) tile
        else:
            for d0 in range(0, D, BLOCK_D):
                md = (d0 + rd) < D
                zt = _load_tile(z_ptr + rn64[:, None] * stride_zn + (d0 + rd)[None, :], mask_n, md, False,
                                EVEN_D)                                                    # (BN, BD)
                et = _load_tile(cb_ptr + rk64[:, None] * stride_ck + (d0 + rd)[None, :], mask_k, md, EVEN_K,
                                EVEN_D)                                                    # (BK, BD)
                acc = _tile_dot(zt, et, acc, PRECISION, INTERPRET)
        if EVEN_K:
            d = tl.load(esq_ptr + rk)[None, :] - 2.0 * acc                           # (BN, BK)
        else:
            d = tl.load(esq_ptr + rk, mask=mask_k, other=float("inf"))[None, :] - 2.0 * acc
        tile_min, tile_arg = tl.min(d, axis=1, return_indices=True)  # first index on ties
        better = tile_min < best                                      # strict: earlier tile wins ties
        best = tl.where(better, tile_min, best)
        best_idx = tl.where(better, tile_arg + k0, best_idx)

    _finish_rows(best, best_idx, zsq, rn64, mask_n, idx_ptr, dist_ptr, counts_ptr, BLOCK_N, HAS_COUNTS, SPLIT)


@triton.jit
def _nearest_code_merge_kernel(
    idx_ptr,      # (N,) int64 in: packed keys; out: code index
    dist_ptr,     # (N,) fp32 in: ||z||^2; out: distance
    counts_ptr,   # (K,) fp32 zero-initialised, when HAS_COUNTS
    N,
    HAS_COUNTS: tl.constexpr, BLOCK: tl.constexpr,
):
    r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = r < N
    key = tl.load(idx_ptr + r, mask=m, other=0)
    code = key & 0xFFFFFFFF
    ordered = (key >> 32).to(tl.int32)
    best = (ordered ^ ((ordered >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)
    zsq = tl.load(dist_ptr + r, mask=m, other=0.0)
    tl.store(idx_ptr + r, code, mask=m)
    tl.store(dist_ptr + r, tl.maximum(zsq + best, 0.0), mask=m)
    if HAS_COUNTS:
        tl.atomic_add(counts_ptr + code, tl.full((BLOCK,), 1.0, tl.float32), mask=m, sem="relaxed")


@triton.jit
def _row_sqnorm_kernel(
    x_ptr,        # (R, D) fp32/fp16/bf16, row stride stride_x, unit column stride
    sq_ptr,       # (R,) fp32 out: ||x_r||^2 of the input values
    cast_ptr,     # (R, D) contiguous bf16 out, when CAST
    R, D, stride_x,
    CAST: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    rr = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    mr = rr < R
    rr64 = rr.to(tl.int64)
    acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        rd = d0 + tl.arange(0, BLOCK_D)
        m = mr[:, None] & (rd < D)[None, :]
        x = tl.load(x_ptr + rr64[:, None] * stride_x + rd[None, :], mask=m, other=0.0)
        xf = x.to(tl.float32)
        acc += tl.sum(xf * xf, axis=1)
        if CAST:
            tl.store(cast_ptr + rr64[:, None] * D + rd[None, :], xf.to(tl.bfloat16), mask=m)
    tl.store(sq_ptr + rr, acc, mask=mr)


_SM_COUNT: dict = {}


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4  # interpreter: a small "machine" so CPU tests exercise the split path
    i = device.index if device.index is not None else torch.cuda.current_device()
    if i not in _SM_COUNT:
        _SM_COUNT[i] = torch.cuda.get_device_properties(i).multi_processor_count
    return _SM_COUNT[i]


def _n_bucket(N: int) -> int:
    return 0 if N <= 4096 else 1 if N <= 32768 else 2


def row_sqnorm(x: torch.Tensor, cast_bf16: bool = False):
    """fp32 ||x_r||^2 of every row (one launch) and, with cast_bf16, a contiguous bf16 copy of x."""
    R, D = x.shape
    sq = torch.empty(R, dtype=torch.float32, device=x.device)
    cast = torch.empty(R, D, dtype=torch.bfloat16, device=x.device) if cast_bf16 else sq
    if R:
        br = 16 if _INTERPRET else 32
        bd = min(16 if _INTERPRET else 128, max(16, triton.next_power_of_2(D)))
        _row_sqnorm_kernel[(triton.cdiv(R, br),)](x, sq, cast, R, D, x.stride(0), CAST=cast_bf16, BLOCK_R=br,
                                                 BLOCK_D=bd, num_warps=4)
    return sq, (cast if cast_bf16 else None)


def nearest_code_fwd(z: torch.Tensor, codebook: torch.Tensor, precision: str,
                     codebook_sqnorm: torch.Tensor | None = None, counts: torch.Tensor | None = None):
    """Launch the lookup. z (N, D) and codebook (K, D) share a dtype and have unit column stride;
    codebook_sqnorm, when given, is a contiguous fp32 (K,) ||E||^2; counts, when given, is a zeroed
    contiguous fp32 (K,) buffer that receives the assignments per code."""
    N, D = z.shape
    K = codebook.shape[0]
    dist = torch.empty(N, dtype=torch.float32, device=z.device)
    if N == 0:
        return torch.empty(N, dtype=torch.int64, device=z.device), dist
    prec = PRECISIONS[precision]
    zsq = None
    if prec == 2 and z.dtype == torch.float32:      # bf16 mode on fp32 inputs: cast once, norms from fp32
        zsq, z = row_sqnorm(z, cast_bf16=True)
        esq, codebook = row_sqnorm(codebook, cast_bf16=True)
        if codebook_sqnorm is not None:
            esq = codebook_sqnorm
    else:
        esq = codebook_sqnorm if codebook_sqnorm is not None else row_sqnorm(codebook)[0]
    if z.dtype != torch.float32:
        prec = 3  # half tiles: their own tensor-core dtype (products exact in fp32)
    has_counts = counts is not None
    n_sm = _sm_count(z.device)
    split = triton.cdiv(N, 128) < n_sm and K > 1
    if split:
        idx = torch.full((N,), INT64_MAX, dtype=torch.int64, device=z.device)
    else:
        idx = torch.empty(N, dtype=torch.int64, device=z.device)

    def grid(meta):
        rows = triton.cdiv(N, meta["BLOCK_N"])
        if not split:
            return (rows, 1)
        tiles = triton.cdiv(K, meta["BLOCK_K"])
        s = max(1, min(tiles, triton.cdiv(2 * n_sm, rows)))
        return (rows, triton.cdiv(tiles, triton.cdiv(tiles, s)))

    _nearest_code_fwd_kernel[grid](
        z, codebook, esq, zsq if zsq is not None else dist, idx, dist,
        counts if (has_counts and not split) else dist, N, K, D, z.stride(0), codebook.stride(0), _n_bucket(N),
        HAS_ZSQ=zsq is not None, HAS_COUNTS=has_counts and not split, SPLIT=split, PRECISION=prec,
        INTERPRET=_INTERPRET,
    )
    if split:
        bm = 64 if _INTERPRET else 1024
        _nearest_code_merge_kernel[(triton.cdiv(N, bm),)](idx, dist, counts if has_counts else dist, N,
                                                          HAS_COUNTS=has_counts, BLOCK=bm, num_warps=4)
    return idx, dist
