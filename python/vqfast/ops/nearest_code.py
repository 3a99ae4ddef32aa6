"""nearest_code: fused squared-L2 distance + argmin over a codebook (Triton kernel + torch reference).

Reproduces the lookup of taming-transformers' VectorQuantizer2 / EMAVectorQuantizer
(d_ij = ||z_i||^2 + ||E_j||^2 - 2 z_i.E_j, k_i = argmin_j d_ij, ties -> lowest index) without
ever allocating the N x K distance matrix: the kernel keeps a running (min, argmin) per row, the
reference walks the codebook in row chunks of bounded size.

Precision contract:
- "ieee": fp32-class products and fp32 accumulation. The reference computes exact fp32 products; the
  kernel runs fp32 inputs on tensor cores in 3xTF32 (hi*hi + hi*lo + lo*hi), products accurate to
  ~3 * 2^-20 relative, covered by u = 2^-19 below. On well-separated data the indices equal the fp32
  reference's; near-ties (|d_a - d_b| below that rounding) may resolve either way.
- "tf32" / "bf16": tensor-core products with 10 / 8 mantissa bits (fp32 accumulation). The chosen code
  is then within `nearest_code_tolerance(z, codebook, precision)` of the true minimum distance:
      d(z_i, E_chosen) - min_j d(z_i, E_j) <= 4 (2u + u^2 + D 2^-24) ||z_i|| max_j ||E_j||
                                               + 2^-20 (||z_i||^2 + max_j ||E_j||^2)
  with u = 2^-19 ("ieee", 3xTF32), 2^-11 (tf32) or 2^-8 (bf16); u = 0 for fp16/bf16 inputs (exact
  products in every mode).
  The returned distance is the one computed in that precision (clamped at 0).
"""
from __future__ import annotations

import torch

from vqfast.errors import InputError
from vqfast.ops._checks import check_finite as _check_finite
from vqfast.ops._checks import check_same_device, check_tensor
from vqfast.ops._dispatch import resolve_backend

PRECISIONS = ("ieee", "tf32", "bf16")
_UNIT_ROUNDOFF = {"ieee": 2.0**-19, "tf32": 2.0**-11, "bf16": 2.0**-8}
# Rows per reference chunk are chosen so one chunk's distance block stays under this many elements.
_REFERENCE_CHUNK_ELEMENTS = 1 << 24


def _validate(z, codebook, precision, codebook_sqnorm, check_values):
    op = "nearest_code"
    check_tensor(op, "z", z, ndim=2)
    check_tensor(op, "codebook", codebook, ndim=2)
    if precision not in PRECISIONS:
        raise InputError(f"{op}: precision={precision!r} is not one of {PRECISIONS}")
    if codebook.shape[0] == 0:
        raise InputError(f"{op}: codebook is empty (shape {tuple(codebook.shape)}); it needs K >= 1 rows")
    if z.shape[1] != codebook.shape[1]:
        raise InputError(f"{op}: z has D={z.shape[1]} but codebook has D={codebook.shape[1]} (shapes "
                         f"{tuple(z.shape)} and {tuple(codebook.shape)})")
    if z.shape[1] == 0:
        raise InputError(f"{op}: D must be >= 1, got z of shape {tuple(z.shape)}")
    if codebook_sqnorm is not None:
        check_tensor(op, "codebook_sqnorm", codebook_sqnorm, ndim=1, dtypes=(torch.float32,))
        if codebook_sqnorm.shape[0] != codebook.shape[0]:
            raise InputError(f"{op}: codebook_sqnorm has {codebook_sqnorm.shape[0]} entries, codebook has "
                             f"K={codebook.shape[0]} rows")
    check_same_device(op, z=z, codebook=codebook, codebook_sqnorm=codebook_sqnorm)
    if check_values:
        _check_finite(op, z=z, codebook=codebook, codebook_sqnorm=codebook_sqnorm)


class _Fp32Matmul:
    """Pin CUDA matmul precision for the reference: no TF32 unless asked for."""

    def __init__(self, allow_tf32: bool):
        self.allow = allow_tf32

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.allow

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.saved


@torch.no_grad()
def nearest_code_reference(z: torch.Tensor, codebook: torch.Tensor, *, backend: str = "auto",
                           precision: str = "ieee", codebook_sqnorm: torch.Tensor | None = None,
                           check_values: bool = True, return_counts: bool = False):
    """Pure-PyTorch nearest_code (taming VectorQuantizer2's distance + argmin), chunked over rows.

    Same signature as `nearest_code`; `backend` is accepted for symmetry and ignored.
    Returns (idx int64[N], dist float32[N]) [+ counts float32[K] with return_counts].
    """
    _validate(z, codebook, precision, codebook_sqnorm, check_values)
    N, K = z.shape[0], codebook.shape[0]
    zf = z.float()                                                    # (N, D)
    cf = codebook.float()                                             # (K, D)
    zsq = (zf * zf).sum(1)                                            # (N,)
    esq = codebook_sqnorm if codebook_sqnorm is not None else (cf * cf).sum(1)  # (K,)
    if precision == "bf16" and z.dtype == torch.float32:
        # bf16-rounded inputs, exact products, fp32 accumulation: what bf16 tensor cores compute
        lhs, rhs = zf.bfloat16().float(), cf.bfloat16().float().t()
    else:
        lhs, rhs = zf, cf.t()                                         # (N, D), (D, K)
    idx = torch.empty(N, dtype=torch.int64, device=z.device)
    dist = torch.empty(N, dtype=torch.float32, device=z.device)
    rows = max(1, _REFERENCE_CHUNK_ELEMENTS // K)
    with _Fp32Matmul(precision == "tf32" and z.dtype == torch.float32):
        for s in range(0, N, rows):
            e = min(N, s + rows)
            d = zsq[s:e, None] + esq[None, :] - 2.0 * (lhs[s:e] @ rhs).float()  # (n, K)
            i = d.argmin(dim=1)                                       # first index on ties
            idx[s:e] = i
            dist[s:e] = d.gather(1, i[:, None]).squeeze(1).clamp_min(0.0)
    if return_counts:
        counts = torch.zeros(K, dtype=torch.float32, device=z.device)
        counts.scatter_add_(0, idx, torch.ones(N, dtype=torch.float32, device=z.device))  # no host sync
        return idx, dist, counts
    return idx, dist


def nearest_code(z: torch.Tensor, codebook: torch.Tensor, *, backend: str = "auto", precision: str = "ieee",
                 codebook_sqnorm: torch.Tensor | None = None, check_values: bool = True,
                 return_counts: bool = False):
    """Index of the nearest codebook row for every row of z, and its squared L2 distance.

    z: (N, D) fp32/fp16/bf16; codebook: (K, D) float (promoted to a common dtype with z);
    codebook_sqnorm: optional precomputed fp32 ||E_j||^2 (K,), e.g. cached between optimizer steps.
    precision: "ieee" | "tf32" | "bf16" (see module docstring for the error bound).
    check_values: reject NaN/Inf inputs with an InputError (costs one host sync; the quantizers turn it off).
    return_counts: also return float32[K] assignments per code (fused into the kernel's epilogue).
    Returns (idx int64[N], dist float32[N]) [+ counts]; no gradient flows through any of them.
    """
    _validate(z, codebook, precision, codebook_sqnorm, check_values)
    be = resolve_backend(backend, z, codebook, op="nearest_code")
    if be == "torch":
        return nearest_code_reference(z, codebook, precision=precision, codebook_sqnorm=codebook_sqnorm,
                                      check_values=False, return_counts=return_counts)
    from vqfast.kernels.nearest_code import nearest_code_fwd

    dtype = torch.promote_types(z.dtype, codebook.dtype)
    z = z.detach().to(dtype)
    codebook = codebook.detach().to(dtype)
    if z.stride(1) != 1:
        z = z.contiguous()
    if codebook.stride(1) != 1:
        codebook = codebook.contiguous()
    if codebook_sqnorm is not None:
        codebook_sqnorm = codebook_sqnorm.detach().contiguous()   # else the kernel computes ||E||^2 once
    counts = torch.zeros(codebook.shape[0], dtype=torch.float32, device=z.device) if return_counts else None
    idx, dist = nearest_code_fwd(z, codebook, precision, codebook_sqnorm, counts)
    return (idx, dist, counts) if return_counts else (idx, dist)


def nearest_code_tolerance(z: torch.Tensor, codebook: torch.Tensor, precision: str) -> torch.Tensor:
    """Per-row bound (fp32[N]) on d(z_i, chosen) - min_j d(z_i, E_j) for the given precision.

    See the module docstring; fp16/bf16 inputs have exact tensor-core products (u = 0).
    """
    if precision not in PRECISIONS:
        raise InputError(f"nearest_code_tolerance: precision={precision!r} is not one of {PRECISIONS}")
    u = 0.0 if z.dtype != torch.float32 else _UNIT_ROUNDOFF[precision]
    D = z.shape[1]
    zn = z.float().norm(dim=1)                                        # (N,)
    en = codebook.float().norm(dim=1).max()                           # ()
    return 4.0 * (2 * u + u * u + D * 2.0**-24) * zn * en + 2.0**-20 * (zn * zn + en * en)
