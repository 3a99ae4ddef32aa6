"""CI gate on the ahead-of-time compile report (vqfast.tools.compile_report): every shipped kernel launch
compiles for sm_90a and sm_80 with no spills, within shared memory, on tensor cores where it must, and
with no fenced atomics. Runs on CPU with the triton wheel's own ptxas / nvdisasm; no GPU involved."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vqfast.tools import compile_report as cr

KERNELS_DIR = Path(cr.__file__).resolve().parents[1] / "kernels"


def _toolchain_or_skip():
    try:
        return cr.tool_paths()
    except cr.CompileReportError as e:
        pytest.skip(f"no AOT toolchain: {e}")


def _shipped_kernel_names() -> set:
    names = set()
    for f in KERNELS_DIR.glob("*.py"):
        names |= set(re.findall(r"^def (_\w+_kernel)\(", f.read_text(), flags=re.M))
    return names


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    _toolchain_or_skip()
    out = tmp_path_factory.mktemp("compile_report")
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "vqfast.tools.compile_report", "--json", str(out / "r.json"),
                           "--md", str(out / "r.md"), "--check"], env=env, capture_output=True, text=True,
                          timeout=1800)
    return proc, out


def test_every_shipped_launch_passes_the_gates(report):
    proc, out = report
    gates = [line for line in proc.stderr.splitlines() if line.startswith("GATE")]
    assert proc.returncode == 0, "compile report gates failed:\n" + "\n".join(gates or [proc.stderr[-3000:]])
    rows = json.loads((out / "r.json").read_text())
    assert {r["arch"] for r in rows} == {"sm_90a", "sm_80"}
    assert not [r for r in rows if r["error"]]
    assert _shipped_kernel_names() <= {r["kernel"] for r in rows}, "a kernel is missing from the report"
    nc = [r for r in rows if r["kernel"] == "_nearest_code_fwd_kernel"]
    assert nc and all(r["hgmma"] > 0 for r in nc if r["arch"] == "sm_90a")
    assert all(r["fenced_atomics"] == 0 for r in rows)
    assert sum(r["atomics"] for r in rows) > 0          # the scan does see the (relaxed) atomics
    md = (out / "r.md").read_text()
    assert "| kernel | variant | config |" in md and "sm_90a" in md


SASS_FENCED = """
        /*0100*/                   MEMBAR.ALL.GPU ;
        /*0110*/                   ERRBAR;
        /*0120*/                   ATOMG.E.ADD.F32.FTZ.RN.STRONG.GPU PT, R5, desc[UR4][R2.64], R7 ;
        /*0130*/                   CCTL.IVALL ;
"""
SASS_LOOP = """
.L_x_3:
        /*0200*/                   HGMMA.64x128x8.F32.TF32 R24, gdesc[UR4], R24 ;
        /*0210*/                   REDG.E.ADD.F32x4.FTZ.RN.STRONG.GPU desc[UR6][R2.64], R8 ;
        /*0220*/               @P0 BRA `(.L_x_3) ;
        /*0230*/                   EXIT ;
"""


def test_sass_scan_finds_fences_loops_and_mma():
    f = cr.scan_sass(SASS_FENCED)
    assert (f["atomics"], f["fenced_atomics"], f["loop_atomics"]) == (1, 1, 0)
    lp = cr.scan_sass(SASS_LOOP)
    assert (lp["atomics"], lp["fenced_atomics"], lp["loop_atomics"], lp["hgmma"]) == (1, 0, 1, 1)
    assert cr.scan_sass(SASS_LOOP.replace("REDG", "MEMBAR.ALL.GPU ;\n /*0215*/ REDG"))["fenced_loop_atomics"] == 1


def test_gates_reject_spills_missing_wgmma_and_fences():
    v = cr.Variant("_k", "m", "tf32", {}, {}, 4, 3, "cfg", mma="tf32")
    ok = cr.Result(v, 90, regs=100, hgmma=8, smem=1024)
    assert cr.gate_failures([ok]) == []
    bad = [cr.Result(v, 90, regs=255, spill_stores=16, hgmma=8), cr.Result(v, 90, hgmma=0),
           cr.Result(v, 90, hgmma=8, atomics=1, fenced_atomics=1), cr.Result(v, 90, hgmma=8, smem=240 * 1024),
           cr.Result(v, 80, hmma=0)]
    msgs = cr.gate_failures(bad)
    assert len(msgs) == 5 and "spills" in msgs[0] and "without wgmma" in msgs[1] and "fenced" in msgs[2]
    assert "exceeds" in msgs[3] and "mma.sync" in msgs[4]


def test_ptxas_log_parsing():
    log = ("ptxas info    : Used 168 registers, used 1 barriers, 24 bytes cumulative stack size\n"
           "ptxas info    : 24 bytes stack frame, 24 bytes spill stores, 24 bytes spill loads\n")
    assert cr.parse_ptxas(log) == dict(regs=168, stack=24, spill_stores=24, spill_loads=24)
    with pytest.raises(cr.CompileReportError):
        cr.parse_ptxas("garbage")
