"""The launches vqfast ships, as compile_report variants: every kernel, dtype, precision and autotune config.

Shapes are the README targets: nearest_code (65536, 16384, 256) and (262144, 65536, 32), the quantizer
(3072, 1024, 256), ema_update_ (65536, 16384, 256), channel_stats (8, 256, 64, 64), health K = 16384.
Launch parameters that are not autotuned come from the launchers' own helpers, so this table cannot
drift from what the package runs.
"""
from __future__ import annotations

import importlib
import os

from vqfast.tools._aot import ARCHS, CompileReportError, Variant

_PTR = {"fp32": "*fp32", "bf16": "*bf16", "fp16": "*fp16"}


def _expand(module: str, kernel: str, label: str, args: dict, constexprs: dict, mma=None) -> list[Variant]:
    """Every config the autotuner would try on each target (after its early prune, told the arch through
    `_ARCH`), with the heuristics applied."""
    mod = importlib.import_module(f"vqfast.kernels.{module}")
    tuner = getattr(mod, kernel)
    prune = getattr(tuner, "early_config_prune", None)
    heur = getattr(tuner.fn, "values", {})
    out = []
    for arch in ARCHS:
        named = {**args, **constexprs}
        configs = prune(list(tuner.configs), {**named, "_ARCH": arch}) if prune else list(tuner.configs)
        for c in configs:
            meta = {**named, **c.kwargs}
            derived = {k: f(meta) for k, f in heur.items()}
            kw = dict(c.kwargs)
            cfg = "/".join(str(kw[k]) for k in kw) + f"/w{c.num_warps}/s{c.num_stages}"
            out.append(Variant(kernel, mod.__name__, label, args, {**constexprs, **kw, **derived},
                               c.num_warps, c.num_stages, cfg, mma, archs=(arch,)))
    return out


def nearest_code_variants() -> list[Variant]:
    from vqfast.kernels import nearest_code as nc

    out = []
    # (N, K, D, SPLIT): the two kernel targets, and the quantizer's small N (fewer row blocks than SMs)
    shapes = [(65536, 16384, 256, False), (262144, 65536, 32, False), (3072, 1024, 256, True)]
    modes = [("fp32", 0, "ieee", False, "tf32x3"), ("fp32", 1, "tf32", False, "tf32"),
             ("bf16", 3, "bf16 (fp32 cast once)", True, "bf16"), ("bf16", 3, "bf16-in", False, "bf16"),
             ("fp16", 3, "fp16-in", False, "bf16")]
    for N, K, D, split in shapes:
        for dt, prec, name, has_zsq, mma in modes:
            if (dt == "fp16" or has_zsq) and split:
                continue  # same code as the bf16-input split variant up to the dtype / the zsq load
            args = dict(z_ptr=_PTR[dt], cb_ptr=_PTR[dt], esq_ptr="*fp32", zsq_ptr="*fp32", idx_ptr="*i64",
                        dist_ptr="*fp32", counts_ptr="*fp32", N=N, K=K, D=D, stride_zn=D, stride_ck=D,
                        N_BUCKET=nc._n_bucket(N))
            const = dict(HAS_ZSQ=has_zsq, HAS_COUNTS=not split, SPLIT=split, PRECISION=prec, INTERPRET=False)
            tag = f"{name} D{D}" + (f" split N{N}" if split else "")
            out += _expand("nearest_code", "_nearest_code_fwd_kernel", tag, args, const, mma)
    out.append(Variant("_nearest_code_merge_kernel", nc.__name__, "N3072 counts",
                       dict(idx_ptr="*i64", dist_ptr="*fp32", counts_ptr="*fp32", N=3072),
                       dict(HAS_COUNTS=True, BLOCK=1024), 4, 3, "1024/w4"))
    for dt, cast in (("fp32", True), ("fp32", False), ("bf16", False)):
        out.append(Variant("_row_sqnorm_kernel", nc.__name__, f"{dt} D256 cast={int(cast)}",
                           dict(x_ptr=_PTR[dt], sq_ptr="*fp32", cast_ptr="*bf16", R=65536, D=256, stride_x=256),
                           dict(CAST=cast, BLOCK_R=32, BLOCK_D=128), 4, 3, "32/128/w4"))
    return out


def ema_variants() -> list[Variant]:
    from vqfast.kernels import ema_update as ema

    N, K, D = 65536, 16384, 256
    bd = ema._block_d(D)
    P, chunk, bk_t = ema._total_launch(K)
    out = []
    for dt in ("fp32", "bf16", "fp16"):
        out.append(Variant("_ema_scatter_kernel", ema.__name__, f"z {dt} D{D}",
                           dict(z_ptr=_PTR[dt], idx_ptr="*i64", sums_ptr="*fp32", counts_ptr="*fp32", N=N, D=D,
                                stride_zn=D, stride_s=D), dict(BLOCK_N=64, BLOCK_D=bd), 4, 3, f"64/{bd}/w4"))
        out.append(Variant("_ema_segment_kernel", ema.__name__, f"z {dt} D{D}",
                           dict(z_ptr=_PTR[dt], order_ptr="*i64", start_ptr="*i64", sums_ptr="*fp32",
                                counts_ptr="*fp32", D=D, stride_zn=D, stride_s=D),
                           dict(BLOCK_R=32, BLOCK_D=bd), 4, 3, f"32/{bd}/w4"))
        out.append(Variant("_ema_apply_kernel", ema.__name__, f"W {dt} D{D}",
                           dict(cluster_ptr="*fp32", avg_ptr="*fp32", weight_ptr=_PTR[dt], sums_ptr="*fp32",
                                counts_ptr="*fp32", partial_ptr="*fp32", K=K, D=D, stride_a=D, stride_w=D,
                                stride_s=D, P=P, decay=0.99, eps=1e-5),
                           dict(BLOCK_K=8, BLOCK_D=bd, BLOCK_P=max(16, P)), 4, 3, f"8/{bd}/w4"))
    out.append(Variant("_ema_total_kernel", ema.__name__, f"K{K} P{P}",
                       dict(cluster_ptr="*fp32", counts_ptr="*fp32", partial_ptr="*fp32", K=K, decay=0.99),
                       dict(CHUNK=chunk, BLOCK_K=bk_t), 4, 3, f"{chunk}/{bk_t}/w4"))
    return out


def vq_st_variants() -> list[Variant]:
    from vqfast.kernels import vq_straight_through as vq

    N, D = 3072, 256
    bn, bd = vq._blocks(D)
    out = []
    for dt in ("fp32", "bf16", "fp16"):
        out.append(Variant("_vq_st_fwd_kernel", vq.__name__, f"{dt} D{D}",
                           dict(z_ptr=_PTR[dt], cb_ptr=_PTR[dt], idx_ptr="*i64", zq_ptr=_PTR[dt], partial_ptr="*fp32",
                                N=N, D=D, stride_z=D, stride_c=D), dict(BLOCK_N=bn, BLOCK_D=bd), 4, 3, f"{bn}/{bd}/w4"))
        for need in (True, False):
            out.append(Variant("_vq_st_bwd_kernel", vq.__name__, f"{dt} D{D} dcb={int(need)}",
                               dict(z_ptr=_PTR[dt], cb_ptr=_PTR[dt], idx_ptr="*i64", gzq_ptr=_PTR[dt],
                                    gloss_ptr="*fp32", dz_ptr=_PTR[dt], dcb_ptr="*fp32", N=N, D=D, stride_z=D,
                                    stride_c=D, commit_scale=0.1, book_scale=0.1),
                               dict(HAS_GZQ=True, HAS_GLOSS=True, NEED_DCB=need, BLOCK_N=bn, BLOCK_D=bd), 4, 3,
                               f"{bn}/{bd}/w4"))
    return out


def channel_stats_variants() -> list[Variant]:
    from vqfast.kernels import channel_stats as cs

    L = 64 * 64
    bl_f, bl_b = cs._block(L, 2048), cs._block(L, 1024)
    out = []
    for dt in ("fp32", "bf16", "fp16"):
        out.append(Variant("_channel_stats_fwd_kernel", cs.__name__, f"{dt} L{L}",
                           dict(x_ptr=_PTR[dt], mean_ptr="*fp32", std_ptr="*fp32", L=L, eps=1e-5, denom=4095.0),
                           dict(BLOCK_L=bl_f), 4 if bl_f <= 1024 else 8, 3, f"{bl_f}/w{4 if bl_f <= 1024 else 8}"))
        out.append(Variant("_channel_stats_bwd_kernel", cs.__name__, f"{dt} L{L}",
                           dict(x_ptr=_PTR[dt], gmean_ptr="*fp32", gstd_ptr="*fp32", mean_ptr="*fp32",
                                std_ptr="*fp32", dx_ptr=_PTR[dt], L=L, denom=4095.0),
                           dict(BLOCK_L=bl_b), 4, 3, f"{bl_b}/w4"))
    return out


def codebook_health_variants() -> list[Variant]:
    from vqfast.kernels import codebook_health as ch

    out = []
    for training in (True, False):
        out.append(Variant("_codebook_health_kernel", ch.__name__, f"K16384 training={int(training)}",
                           dict(counts_ptr="*fp32", unused_ptr="*i64", usage_ptr="*fp32", out_ptr="*fp32", K=16384,
                                usage_decay=0.99, dead_steps=100),
                           dict(TRAINING=training, BLOCK_K=2048), 8, 3, "2048/w8"))
    return out


def binary_entropy_variants() -> list[Variant]:
    from vqfast.kernels import binary_entropy as be

    out = []
    for N, d in ((65536, 18), (65536, 10)):  # LFQ/BSQ at 2^18 codes (the target) and a 2^10 codebook
        h = (d + 1) // 2
        lo = d - h
        KH, KL = 1 << h, 1 << lo
        bn, bh, bl = be._blocks(KH, KL)
        const = dict(BLOCK_N=bn, BH=bh, BL=bl, HB=16)
        cfg = f"{bn}/{bh}/{bl}/w4"
        out.append(Variant("_be_fwd_kernel", be.__name__, f"d{d}",
                           dict(l_ptr="*fp32", a_ptr="*fp32", N=N, d=d, h=h, lo=lo, KH=KH, KL=KL, inv_n=1.0 / N),
                           const, 4, 3, cfg))
        out.append(Variant("_be_bwd_kernel", be.__name__, f"d{d}",
                           dict(l_ptr="*fp32", w_ptr="*fp32", dl_ptr="*fp32", N=N, d=d, h=h, lo=lo, KH=KH, KL=KL),
                           dict(const, BLOCK_N=min(bn, be.BWD_BLOCK_N)), be.BWD_WARPS, 3,
                           f"{min(bn, be.BWD_BLOCK_N)}/{bh}/{bl}/w{be.BWD_WARPS}"))
    return out


def ibq_soft_variants() -> list[Variant]:
    from vqfast.kernels import ibq_soft as ibq

    out = []
    for N, K, D in ((8192, 262144, 64), (8192, 262144, 128)):  # IBQ's soft path at 2^18 codes (D <= MAX_D)
        bn, bk, bd, w = ibq._blocks(D)
        const, cfg = dict(BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=bd), f"{bn}/{bk}/{bd}/w{w}"
        out.append(Variant("_ibq_fwd_kernel", ibq.__name__, f"D{D}",
                           dict(z_ptr="*fp32", e_ptr="*fp32", o_ptr="*fp32", lse_ptr="*fp32", N=N, K=K, D=D),
                           const, w, 3, cfg))
        grads = dict(z_ptr="*fp32", e_ptr="*fp32", g_ptr="*fp32", lse_ptr="*fp32", dv_ptr="*fp32")
        out.append(Variant("_ibq_bwd_dz_kernel", ibq.__name__, f"D{D}", dict(grads, dz_ptr="*fp32", N=N, K=K, D=D),
                           const, w, 3, cfg))
        out.append(Variant("_ibq_bwd_de_kernel", ibq.__name__, f"D{D}", dict(grads, de_ptr="*fp32", N=N, K=K, D=D),
                           const, w, 3, cfg))
    return out


def all_variants() -> list[Variant]:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise CompileReportError("unset TRITON_INTERPRET: the kernels' shipped configs are not the interpreter's")
    return (nearest_code_variants() + ema_variants() + vq_st_variants() + channel_stats_variants()
            + codebook_health_variants() + binary_entropy_variants() + ibq_soft_variants())
