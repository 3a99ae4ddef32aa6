"""The device suite (bench/device_suite.py) without a device: its --dry-run (every step listed within the
8-minute budget, every named file present, pytest collecting each step's tests at the CUDA shapes), the
budget enforcement (a step over its budget is killed and reported, later steps still run; failed set-up
skips the rest) and the report (targets read from result rows)."""
import io
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import device_suite as ds  # noqa: E402

PY = sys.executable


def test_dry_run_lists_every_step_within_budget():
    res = subprocess.run([PY, str(ROOT / "bench" / "device_suite.py"), "--dry-run"], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    for bench in ds.BENCHES:
        assert bench in res.stdout, bench
    assert "-m gpu" in res.stdout and "install_wheels" in res.stdout
    assert "PROBLEM" not in res.stdout
    counts = [int(line.split()[1]) for line in res.stdout.splitlines() if line.strip().startswith("collects")]
    assert len(counts) == len(ds.steps(Path("x"))) - len(ds.SETUP_STEPS) and min(counts) > 0
    assert sum(s.budget_s for s in ds.steps(Path("x"))) <= ds.SUITE_BUDGET_S


def _step(name, code, budget=20):
    return ds.Step(name, [PY, "-c", code], budget)


def test_over_budget_step_is_killed_and_the_rest_runs(tmp_path):
    steps = [_step("install_wheels", "pass"), _step("check_env", "pass"),
             _step("slow", "import time; print('started', flush=True); time.sleep(60)", budget=2),
             _step("after", "print('ran')"), _step("bad", "raise SystemExit(4)")]
    ds.run_steps(steps, io.StringIO(), total_budget_s=60, cwd=str(tmp_path))
    status = {s.name: s.status for s in steps}
    assert status["slow"].startswith("over budget") and "started" in steps[2].tail
    assert steps[2].seconds < 20
    assert status["after"] == "ok" and "ran" in steps[3].tail
    assert status["bad"] == "failed (rc 4)"


def test_failed_setup_skips_the_rest_and_total_budget_holds(tmp_path):
    steps = [_step("install_wheels", "raise SystemExit(1)"), _step("check_env", "pass"), _step("x", "pass")]
    ds.run_steps(steps, io.StringIO(), total_budget_s=60, cwd=str(tmp_path))
    assert steps[0].status == "failed (rc 1)" and steps[2].status.startswith("skipped: install_wheels")
    steps = [_step("install_wheels", "pass"), _step("check_env", "pass"), _step("y", "pass")]
    ds.run_steps(steps, io.StringIO(), total_budget_s=3, cwd=str(tmp_path))
    assert steps[2].status.startswith("skipped: suite budget")


def test_missing_wheels_fail_the_install_step_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(ds, "ROOT", tmp_path)              # no .whl/ there
    install = ds.steps(tmp_path / "out")[0]
    res = subprocess.run(install.argv, capture_output=True, text=True)
    assert res.returncode != 0 and "gpu-wheels" in res.stderr


@pytest.mark.parametrize("ms,met", [(1.0, "yes"), (10.0, "NO")])
def test_report_reads_targets_from_rows(ms, met):
    row = {"op": "vq_fwd_bwd", "shape": "B12-C256-16x16-K1024", "provider": "vqfast_triton", "ms": ms,
           "ref_ms": 2.5, "extra": {"baselines_ms": {"taming_eager": 2.5, "vqfast_torch_backend": 3.0}},
           "test": "t", "outcome": "passed", "note": "ref=strongest: taming_eager"}
    md = ds.markdown([], [row], "NVIDIA H100")
    line = next(x for x in md.splitlines() if "vq_fwd_bwd B12-C256-16x16-K1024 x_taming_eager" in x)
    assert f"{2.5 / ms:.2f}" in line and line.rstrip().endswith(f"| {met} |")
    assert "nearest_code N65536-K16384-D256 pct_bound | triton_tf32* | not measured" in md
