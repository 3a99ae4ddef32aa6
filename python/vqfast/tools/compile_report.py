"""Ahead-of-time compile report of every Triton kernel in vqfast.kernels, for sm_90a (H100) and sm_80 (A100).

    python -m vqfast.tools.compile_report [--md FILE] [--json FILE] [--arch 90 80] [--jobs N] [--check]

CPU only: each kernel is compiled through Triton's own pipeline (``triton.compiler.ASTSource`` +
``triton.compile(..., target=GPUTarget("cuda", arch, 32))``) with the wheel's ptxas, then disassembled
with its nvdisasm. No GPU and no CUDA driver are needed. Every launch the package ships is compiled:
each autotune config (after the kernel's own config pruning) of each autotuned kernel, and the fixed
launch parameters of the others, for every dtype / precision the kernel serves, at the target shapes
(the integer arguments get the runtime's ``tt.divisibility=16`` specialisation exactly when they are
multiples of 16, as Triton's binder does).

Recorded per (kernel, variant, config, arch): registers, spill stores/loads and stack frame (``ptxas -v``),
shared memory (``metadata.shared``), the MMA instructions in the SASS (``HGMMA`` = wgmma on sm_90a,
``HMMA`` = mma.sync), and fenced atomics: an ``ATOM``/``RED`` with a ``MEMBAR`` among the instructions
before it or a ``CCTL.IVALL`` after it (what Triton's default ``sem="acq_rel"`` compiles to); atomics
inside a loop (a backward branch) are counted separately.

``--check`` exits 1 when a gate fails (`gate_failures`): a spill in any shipped config; a tf32 / bf16 /
ieee (3xTF32) nearest_code variant without wgmma on sm_90a (mma.sync on sm_80); a fenced atomic in any
kernel (all of vqfast's atomics sit on per-row hot paths, so none may be fenced); shared memory over
227 KB on sm_90a, or no config of a variant within 163 KB on sm_80.

Requires Triton >= 3.3 (name-keyed ``ASTSource`` signatures); results are cached per PTX hash under
$TRITON_CACHE_DIR (or ~/.triton/cache)/vqfast_compile_report.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

from vqfast.tools._aot import ARCH_NAME, ARCHS, SMEM_LIMIT, CompileReportError, Variant

__all__ = ["ARCHS", "ARCH_NAME", "SMEM_LIMIT", "CompileReportError", "Variant", "Result", "run", "gate_failures",
           "markdown", "scan_sass", "parse_ptxas", "tool_paths", "compile_variant", "main"]


@dataclasses.dataclass
class Result:
    variant: Variant
    arch: int
    regs: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    smem: int = 0
    hgmma: int = 0
    hmma: int = 0
    ffma: int = 0
    atomics: int = 0
    fenced_atomics: int = 0
    loop_atomics: int = 0
    fenced_loop_atomics: int = 0
    error: str = ""

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        v = d.pop("variant")
        d.update(kernel=v["kernel"], label=v["label"], config=v["config"], mma=v["mma"], arch=ARCH_NAME[self.arch])
        return d


# ----------------------------------------------------------------------------------------------- toolchain

def _triton():
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except Exception as e:  # ImportError or a broken install
        raise CompileReportError(f"compile_report needs Triton: {e}") from e
    return triton, GPUTarget, ASTSource


def tool_paths() -> dict:
    """Paths of the wheel's ptxas (per arch) and nvdisasm; raises CompileReportError when absent."""
    _triton()
    try:
        import triton.backends.nvidia.compiler as nvc
    except Exception as e:
        raise CompileReportError(f"Triton's NVIDIA backend does not import: {e}") from e
    paths = {}
    for arch in ARCHS:
        try:
            paths[arch] = nvc.get_ptxas(arch).path
        except Exception:  # older Triton: get_ptxas() without the arch argument
            paths[arch] = nvc.get_ptxas().path  # type: ignore[call-arg]
    paths["nvdisasm"] = os.path.join(os.path.dirname(paths[90]), "nvdisasm")
    for k, p in paths.items():
        if not (p and os.path.isfile(p) and os.access(p, os.X_OK)):
            raise CompileReportError(f"{k} not found at {p!r} (it ships in the triton wheel under "
                                     "triton/backends/nvidia/bin)")
    return paths


def _jit_fn(kernel):
    """Unwrap Autotuner / Heuristics down to the JITFunction."""
    triton, _, _ = _triton()
    fn = kernel
    while not isinstance(fn, triton.runtime.jit.JITFunction):
        fn = fn.fn
    return fn


# ----------------------------------------------------------------------------------------------- SASS scan

_INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_BRA = re.compile(r"\bBRA\b[^`]*`\((\.L_x_\d+)\)")


def scan_sass(sass: str) -> dict:
    """Opcode counts, loop ranges (backward branches) and fenced atomics of one nvdisasm -c listing."""
    insns: list[tuple[str, str]] = []        # (opcode, full line)
    label_at: dict[str, int] = {}
    loops: list[tuple[int, int]] = []
    for line in sass.splitlines():
        m = _LABEL.match(line)
        if m:
            label_at[m.group(1)] = len(insns)
            continue
        m = _INSN.search(line)
        if not m:
            continue
        insns.append((m.group(2), line))
        b = _BRA.search(line)
        if b and b.group(1) in label_at:               # target already seen: a backward branch
            loops.append((label_at[b.group(1)], len(insns) - 1))
    out = dict(hgmma=0, hmma=0, ffma=0, atomics=0, fenced_atomics=0, loop_atomics=0, fenced_loop_atomics=0)
    for i, (op, _) in enumerate(insns):
        base = op.split(".")[0]
        if base == "HGMMA":
            out["hgmma"] += 1
        elif base == "HMMA":
            out["hmma"] += 1
        elif base == "FFMA":
            out["ffma"] += 1
        elif base in ("ATOM", "ATOMG", "RED", "REDG"):
            out["atomics"] += 1
            before = [o for o, _ in insns[max(0, i - 8):i]]
            after = [o for o, _ in insns[i + 1:i + 9]]
            fenced = any(o.startswith("MEMBAR") for o in before) or any(o.startswith("CCTL.IVALL") for o in after)
            in_loop = any(a <= i <= b for a, b in loops)
            out["fenced_atomics"] += fenced
            out["loop_atomics"] += in_loop
            out["fenced_loop_atomics"] += fenced and in_loop
    return out


_PTXAS_REGS = re.compile(r"Used (\d+) registers")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def parse_ptxas(log: str) -> dict:
    regs = _PTXAS_REGS.search(log)
    spill = _PTXAS_SPILL.search(log)
    if not regs or not spill:
        raise CompileReportError(f"unexpected ptxas -v output:\n{log}")
    return dict(regs=int(regs.group(1)), stack=int(spill.group(1)), spill_stores=int(spill.group(2)),
                spill_loads=int(spill.group(3)))


# ----------------------------------------------------------------------------------------------- compile

def _cache_dir() -> Path:
    base = os.environ.get("TRITON_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".triton", "cache")
    return Path(base) / "vqfast_compile_report"


def _signature(fn, v: Variant):
    sig, constexprs, attrs = {}, dict(v.constexprs), {}
    for i, name in enumerate(fn.arg_names):
        if name in v.constexprs:
            sig[name] = "constexpr"
            continue
        if name not in v.args:
            raise CompileReportError(f"{v.kernel} [{v.label}]: no type given for argument {name!r}")
        a = v.args[name]
        if isinstance(a, str):                            # pointer: torch allocations are 16-B aligned
            sig[name] = a
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(a, bool) or not isinstance(a, (int, float)):
            raise CompileReportError(f"{v.kernel}: argument {name!r} has unsupported example {a!r}")
        elif isinstance(a, float):
            sig[name] = "fp32"
        elif a == 1:                                      # the binder turns ints equal to 1 into constants
            sig[name] = "constexpr"
            constexprs[name] = 1
        else:
            sig[name] = "i32" if -2**31 <= a < 2**31 else "i64"
            if a % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, constexprs, attrs


def compile_variant(v: Variant, arch: int, paths: dict) -> Result:
    """Compile one variant for one arch and measure it (cached by PTX hash)."""
    import importlib

    triton, GPUTarget, ASTSource = _triton()
    res = Result(variant=v, arch=arch)
    fn = _jit_fn(getattr(importlib.import_module(v.module), v.kernel))
    sig, constexprs, attrs = _signature(fn, v)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")               # Triton's knob deprecation notices
            ck = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs),
                                target=GPUTarget("cuda", arch, 32),
                                options={"num_warps": v.num_warps, "num_stages": v.num_stages})
    except Exception as e:  # report it: a shipped launch that does not compile is a finding
        res.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
        return res
    ptx, cubin = ck.asm["ptx"], ck.asm["cubin"]
    md = ck.metadata
    res.smem = int(md["shared"] if isinstance(md, dict) else md.shared)
    key = hashlib.sha256(ptx.encode() + bytes([arch])).hexdigest()
    cache = _cache_dir() / f"{key}.json"
    if cache.is_file():
        measured = json.loads(cache.read_text())
    else:
        gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
        with tempfile.TemporaryDirectory() as d:
            p_ptx, p_bin = os.path.join(d, "k.ptx"), os.path.join(d, "k.cubin")
            Path(p_ptx).write_text(ptx)
            Path(p_bin).write_bytes(cubin)
            log = subprocess.run([paths[arch], "-v", "--regAllocOptLevel=2", f"--gpu-name={gpu}", p_ptx, "-o",
                                  os.path.join(d, "v.cubin")], capture_output=True, text=True)
            if log.returncode != 0:   # older ptxas without --regAllocOptLevel
                log = subprocess.run([paths[arch], "-v", f"--gpu-name={gpu}", p_ptx, "-o",
                                      os.path.join(d, "v.cubin")], capture_output=True, text=True)
            measured = parse_ptxas(log.stderr + log.stdout)
            sass = subprocess.run([paths["nvdisasm"], "-c", p_bin], capture_output=True, text=True, check=True).stdout
            measured.update(scan_sass(sass))
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(measured))
        tmp.replace(cache)
    for k, val in measured.items():
        setattr(res, k, val)
    return res


def _job(args):
    v, arch, paths = args
    return compile_variant(v, arch, paths)


def run(variants: Sequence[Variant], archs: Sequence[int] = ARCHS, jobs: Optional[int] = None) -> list[Result]:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise CompileReportError("compile_report compiles real kernels: unset TRITON_INTERPRET (it is 1)")
    paths = tool_paths()
    work = [(v, a, paths) for v in variants for a in archs if a in v.archs]
    jobs = jobs or min(len(work), os.cpu_count() or 1)
    if jobs <= 1:
        return [_job(w) for w in work]
    import multiprocessing

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as ex:
        return list(ex.map(_job, work, chunksize=1))


# ----------------------------------------------------------------------------------------------- gates

def gate_failures(results: Sequence[Result]) -> list[str]:
    """Spills, missing tensor-core MMA, fenced atomics; shared memory over the limit on sm_90a (the target),
    and on sm_80 a variant none of whose configs fits (the autotuner skips configs that do not fit)."""
    fails = []
    fits_80: dict = {}
    for r in results:
        if r.arch < 90 and not r.error:
            key = (r.variant.kernel, r.variant.label)
            fits_80[key] = fits_80.get(key, False) or r.smem <= SMEM_LIMIT[r.arch]
    fails += [f"{k} [{lab}] on sm_80: no config fits in {SMEM_LIMIT[80]} B of shared memory"
              for (k, lab), ok in fits_80.items() if not ok]
    for r in results:
        v = r.variant
        where = f"{v.kernel} [{v.label}] {v.config} on {ARCH_NAME[r.arch]}"
        if r.error:
            fails.append(f"{where}: does not compile: {r.error}")
            continue
        if r.spill_stores or r.spill_loads:
            fails.append(f"{where}: spills {r.spill_stores} B stores / {r.spill_loads} B loads")
        if v.mma and r.arch >= 90 and not r.hgmma:
            fails.append(f"{where}: {v.mma} path without wgmma (HGMMA)")
        if v.mma and r.arch < 90 and not r.hmma:
            fails.append(f"{where}: {v.mma} path without mma.sync (HMMA)")
        if r.arch >= 90 and r.smem > SMEM_LIMIT[r.arch]:
            fails.append(f"{where}: {r.smem} B of shared memory exceeds {SMEM_LIMIT[r.arch]}")
        if r.fenced_atomics:
            fails.append(f"{where}: {r.fenced_atomics} fenced atomic(s) ({r.fenced_loop_atomics} in a loop)")
    return fails


# ----------------------------------------------------------------------------------------------- output

def _mma_cell(r: Result) -> str:
    if r.hgmma:
        return f"wgmma×{r.hgmma}"
    if r.hmma:
        return f"mma×{r.hmma}"
    return "—"


def _arch_cell(r: Optional[Result]) -> str:
    if r is None:
        return ""
    if r.error:
        return "compile error"
    spill = f"{r.spill_stores}" if r.spill_stores or r.spill_loads else "0"
    fence = f", **{r.fenced_atomics} fenced atomics**" if r.fenced_atomics else ""
    return f"{r.regs} / {spill} / {r.smem // 1024} / {_mma_cell(r)}{fence}"


def markdown(results: Sequence[Result]) -> str:
    """One row per variant; per arch: registers / spill-store bytes / shared KB / MMA instructions."""
    archs = sorted({r.arch for r in results}, reverse=True)
    rows: dict[tuple, dict[int, Result]] = {}
    for r in results:
        v = r.variant
        rows.setdefault((v.kernel, v.label, v.config), {})[r.arch] = r
    head = "| kernel | variant | config | " + " | ".join(f"{ARCH_NAME[a]} regs / spill B / smem KB / MMA"
                                                         for a in archs) + " |"
    lines = [head, "|" + "---|" * (3 + len(archs))]
    for (kernel, label, config), per in rows.items():
        lines.append(f"| `{kernel}` | {label} | {config} | " + " | ".join(_arch_cell(per.get(a)) for a in archs)
                     + " |")
    n = len(results)
    spills = sum(bool(r.spill_stores or r.spill_loads) for r in results)
    fenced = sum(r.fenced_atomics for r in results)
    atomics = sum(r.atomics for r in results)
    lines.append("")
    lines.append(f"{len(rows)} launches × {len(archs)} archs = {n} compiles; {spills} spill; "
                 f"{atomics} atomic instructions, {fenced} fenced. Config = BLOCK sizes / warps / stages.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- CLI

def collect_variants() -> list[Variant]:
    from vqfast.tools._compile_variants import all_variants

    return all_variants()


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vqfast.tools.compile_report", description=__doc__.split("\n")[0])
    ap.add_argument("--md", help="write the markdown table here")
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--arch", type=int, nargs="+", default=list(ARCHS), choices=ARCHS)
    ap.add_argument("--jobs", type=int, default=None, help="parallel compiles (default: CPU count)")
    ap.add_argument("--kernel", action="append", default=None, help="only kernels whose name contains this")
    ap.add_argument("--check", action="store_true", help="exit 1 when a gate fails")
    a = ap.parse_args(argv)
    try:
        variants = collect_variants()
        if a.kernel:
            variants = [v for v in variants if any(s in v.kernel for s in a.kernel)]
        results = run(variants, a.arch, a.jobs)
    except CompileReportError as e:
        print(f"compile_report: {e}", file=sys.stderr)
        return 2
    md = markdown(results)
    if a.md:
        Path(a.md).write_text(md + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps([r.as_dict() for r in results], indent=1))
    if not a.md:
        print(md)
    fails = gate_failures(results)
    for f in fails:
        print(f"GATE: {f}", file=sys.stderr)
    print(f"compile_report: {len(results)} compiles, {len(fails)} gate failure(s)", file=sys.stderr)
    return 1 if (a.check and fails) else 0


if __name__ == "__main__":
    sys.exit(main())
