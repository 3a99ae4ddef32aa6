"""The launches vqfast ships, as compile_report variants: every kernel, dtype, precision and autotune config.

Shapes are the README targets: nearest_code (65536, 16384, 256) and (262144, 65536, 32), the quantizer
(3072, 1024, 256), ema_update_ (65536, 16384, 256), channel_stats (8, 256, 64, 64), health K = 16384.
Launch parameters that are not autotuned come from the launchers' own helpers, so this table cannot
drift from what the package runs.
"""
from __future__ import annotations

import importlib
import os

from vqfast.tools.compile_report import Variant

_PTR = {"fp32": "*fp32", "bf16": "*bf16", "fp16": "*fp16"}


def _expand(module: str, kernel: str, label: str, args: dict, constexprs: dict, mma=None) -> list[Variant]:
    """Every config the autotuner would try (after its early prune), with the heuristics applied."""
    mod = importlib.import_module(f"vqfast.kernels.{module}")
    tuner = getattr(mod, kernel)
    configs = list(tuner.configs)
    named = {**args, **constexprs}
    prune = getattr(tuner, "early_config_prune", None)
    if prune:
        configs = prune(configs, named)
    heur = getattr(tuner.fn, "values", {})
    out = []
    for c in configs:
        meta = {**named, **c.kwargs}
        derived = {k: f(meta) for k, f in heur.items()}
        kw = dict(c.kwargs)
        cfg = "/".join(str(kw[k]) for k in kw) + f"/w{c.num_warps}/s{c.num_stages}"
        out.append(Variant(kernel, mod.__name__, label, args, {**constexprs, **kw, **derived},
                           c.num_warps, c.num_stages, cfg, mma))
    return out


def nearest_code_variants() -> list[Variant]:
    from vqfast.kernels import nearest_code as nc

    out = []
    shapes = [(65536, 16384, 256, True), (262144, 65536, 32, False)]
    for N, K, D, counts in shapes:
        for dt, prec, name, mma in [("fp32", 0, "ieee", None), ("fp32", 1, "tf32", "tf32"),
                                    ("fp32", 2, "bf16", "bf16"), ("bf16", 3, "bf16-in", "bf16"),
                                    ("fp16", 3, "fp16-in", "bf16")]:
            if dt == "fp16" and D != 256:
                continue  # same code as bf16 inputs; one D is enough
            args = dict(z_ptr=_PTR[dt], cb_ptr=_PTR[dt], sqnorm_ptr="*fp32", idx_ptr="*i64", dist_ptr="*fp32",
                        counts_ptr="*fp32", N=N, K=K, D=D, stride_zn=D, stride_ck=D)
            const = dict(HAS_SQNORM=False, HAS_COUNTS=counts, PRECISION=prec, INTERPRET=False)
            out += _expand("nearest_code", "_nearest_code_fwd_kernel", f"{name} D{D}", args, const, mma)
    del nc
    return out


def ema_variants() -> list[Variant]:
    from vqfast.kernels import ema_update as ema

    N, K, D = 65536, 16384, 256
    bd = ema._block_d(D)
    out = []
    for dt in ("fp32", "bf16", "fp16"):
        out.append(Variant("_ema_scatter_kernel", ema.__name__, f"z {dt} D{D}",
                           dict(z_ptr=_PTR[dt], idx_ptr="*i64", stats_ptr="*fp32", N=N, D=D, stride_zn=D),
                           dict(BLOCK_N=64, BLOCK_D=bd), 4, 3, f"64/{bd}/w4"))
        out.append(Variant("_ema_segment_kernel", ema.__name__, f"z {dt} D{D}",
                           dict(z_ptr=_PTR[dt], order_ptr="*i64", start_ptr="*i64", stats_ptr="*fp32", D=D,
                                stride_zn=D), dict(BLOCK_R=32, BLOCK_D=bd), 4, 3, f"32/{bd}/w4"))
        out.append(Variant("_ema_apply_kernel", ema.__name__, f"W {dt} D{D}",
                           dict(cluster_ptr="*fp32", avg_ptr="*fp32", weight_ptr=_PTR[dt], stats_ptr="*fp32",
                                total_ptr="*fp32", K=K, D=D, stride_a=D, stride_w=D, decay=0.99, eps=1e-5),
                           dict(BLOCK_K=8, BLOCK_D=bd), 4, 3, f"8/{bd}/w4"))
    out.append(Variant("_ema_total_kernel", ema.__name__, f"K{K}",
                       dict(cluster_ptr="*fp32", stats_ptr="*fp32", total_ptr="*fp32", K=K, D=D, decay=0.99),
                       dict(BLOCK_K=1024), 4, 3, "1024/w4"))
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


def all_variants() -> list[Variant]:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        from vqfast.tools.compile_report import CompileReportError

        raise CompileReportError("unset TRITON_INTERPRET: the kernels' shipped configs are not the interpreter's")
    return (nearest_code_variants() + ema_variants() + vq_st_variants() + channel_stats_variants()
            + codebook_health_variants())
