"""The device suite: everything a short GPU lease should measure, as one command (issue 13 item 5).

On a bare H100/H200 (Python 3.12, torch, triton, pytest and pytest-benchmark preinstalled, no network) it
1. installs the carried wheels from .whl/ (built here beforehand by ../shared/tools/gpu-wheels: the vqfast
   abi3 wheel and lpips) into a private site dir and checks that vqfast imports from there;
2. runs every kernel bench at its target shapes (VQFAST_BENCH_SHAPES=target; torch.compile baseline at
   the first target shape only), the quantizer bench and the VQGAN step bench;
3. runs the GPU parity tests (pytest -m gpu over tests/);
and writes under --out (default $OUT): device_suite.md (step table + result table against the issue's
targets), device_suite.json (steps and every result row), device_suite.log (all output), bench_rows.jsonl.

Every step has a wall-time budget; a step that runs over is killed and reported ("over budget"), and what
it measured so far is kept (the benches append each result row as soon as its test ends). The budgets
add up to at most SUITE_BUDGET_S = 8 minutes; the suite also stops starting steps when the total is spent.
`--dry-run` (the CI check, no GPU needed) lists every step with its command and budget, checks that the
files it names exist and that pytest collects each step's tests, and runs nothing else.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE_BUDGET_S = 480.0
SETUP_STEPS = ("install_wheels", "check_env")     # every other step needs both
BENCHES = ("bench_nearest_code.py", "bench_quantizer.py", "bench_ema_update.py", "bench_channel_stats.py",
           "bench_vq_straight_through.py", "bench_codebook_health.py", "bench_vqgan_step.py")
# the issue's targets (H100), read against the result rows: (op, shape, provider prefix, metric, threshold)
TARGETS = [
    ("nearest_code", "N65536-K16384-D256", "triton_tf32", "pct_bound", 50.0),
    ("nearest_code", "N65536-K16384-D256", "triton_bf16", "pct_bound", 50.0),
    ("nearest_code", "N65536-K16384-D256", "triton_tf32", "x_strongest", 3.0),
    ("nearest_code", "N65536-K16384-D256", "triton_bf16", "x_strongest", 3.0),
    ("nearest_code", "N262144-K65536-D32", "triton_", "runs", 1.0),
    ("vq_fwd_bwd", "B12-C256-16x16-K1024", "vqfast_triton", "x_taming_eager", 2.0),
    ("ema_update_", "N65536-K16384-D256", "triton_atomic", "pct_bound", 50.0),
    ("ema_update_", "N65536-K16384-D256", "triton_atomic", "x_onehot_eager", 10.0),
    ("channel_stats", "8x256x64x64", "triton_fwdbwd_float32", "x_eager", 1.5),
    ("channel_stats", "8x256x64x64", "triton_fwdbwd_float32", "x_compile", 1.0),
]


@dataclass
class Step:
    name: str
    argv: list
    budget_s: float
    env: dict = field(default_factory=dict)
    status: str = "not run"
    seconds: float = 0.0
    rc: int | None = None
    tail: str = ""


def site_dir() -> Path:
    return Path(os.environ.get("VQFAST_DEVICE_SITE", "/tmp/vqfast-site"))


def steps(out: Path) -> list[Step]:
    py = sys.executable
    site = str(site_dir())
    wheels = sorted(str(p) for p in (ROOT / ".whl").glob("*.whl"))
    jsonl = str(out / "bench_rows.jsonl")
    pytest = [py, "-m", "pytest", f"--rootdir={ROOT}", "-q", "-p", "no:cacheprovider", "-W", "default"]
    bench_env = {"VQFAST_BENCH_SHAPES": "target", "VQFAST_BENCH_COMPILE": "primary", "VQFAST_BENCH_JSONL": jsonl}
    check_import = ("import sys, torch, triton, vqfast, vqfast._io; from pathlib import Path; "
                    f"p = Path(vqfast.__file__).resolve(); assert str(p).startswith({site!r}), p; "
                    "print('vqfast', p, '| torch', torch.__version__, '| triton', triton.__version__, '|', "
                    "torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA'); "
                    "sys.exit(0 if torch.cuda.is_available() else 3)")
    install = [py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
               "--upgrade", "--target", site, *wheels]
    if not any(Path(w).name.startswith("vqfast-") for w in wheels):
        install = [py, "-c", "raise SystemExit('no .whl/vqfast-*.whl: build .whl/ with ../shared/tools/gpu-wheels "
                             "and carry it (carry: [\".whl\"])')"]
    out_steps = [
        Step("install_wheels", install, 30),
        Step("check_env", [py, "-c", check_import], 15),
    ]
    def bench(name, file, budget, *extra, **env):
        out_steps.append(Step(name, [*pytest, str(ROOT / "bench" / file), *extra], budget, env={**bench_env, **env}))

    # the issue's headline first: nearest_code tf32/bf16 at (65536, 16384, 256), then the other benches, the
    # GPU parity tests, and the rest of nearest_code's target shapes and modes last
    primary = "N65536-K16384-D256 and (tf32 or bf16)"
    bench("bench_nearest_code_primary", "bench_nearest_code.py", 90, "-k", primary)
    bench("bench_quantizer", "bench_quantizer.py", 40, VQFAST_BENCH_COMPILE="0")   # target is x taming
    bench("bench_ema_update", "bench_ema_update.py", 45)
    bench("bench_channel_stats", "bench_channel_stats.py", 35)
    bench("bench_vq_straight_through", "bench_vq_straight_through.py", 20)
    bench("bench_codebook_health", "bench_codebook_health.py", 15)
    bench("bench_vqgan_step", "bench_vqgan_step.py", 45)
    # all of tests/ (gpu marks come as pytest.mark.gpu or helpers.gpu); a module that cannot import there
    # is reported without stopping the others
    out_steps.append(Step("gpu_parity_tests", [*pytest, str(ROOT / "tests"), "-m", "gpu", "-rfEs",
                                               "--continue-on-collection-errors"], 75))
    bench("bench_nearest_code_rest", "bench_nearest_code.py", 60, "-k", f"not ({primary})")
    return out_steps


def _env(step: Step) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", **step.env)
    site = str(site_dir())
    env["PYTHONPATH"] = site + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_steps(all_steps: list[Step], log, total_budget_s: float = SUITE_BUDGET_S, cwd: str | None = None) -> None:
    """Run the steps in order, each killed at its budget; later steps get what is left of the total."""
    start = time.monotonic()
    cwd = cwd or tempfile.mkdtemp(prefix="vqfast-suite-")   # outside the tree: the installed wheel is imported
    for step in all_steps:
        left = total_budget_s - (time.monotonic() - start)
        budget = min(step.budget_s, left)
        if left < 5:
            step.status = f"skipped: suite budget of {total_budget_s:.0f} s spent"
            continue
        setup = [s for s in all_steps if s.name in SETUP_STEPS and s is not step]
        if step.name not in SETUP_STEPS and any(s.status != "ok" for s in setup):
            step.status = "skipped: " + ", ".join(f"{s.name} {s.status}" for s in setup if s.status != "ok")
            continue
        log.write(f"\n===== {step.name} (budget {budget:.0f} s): {shlex.join(map(str, step.argv))}\n")
        log.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(step.argv, cwd=cwd, env=_env(step), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=budget)
            step.rc = proc.returncode
            step.status = "ok" if proc.returncode == 0 else f"failed (rc {proc.returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            output, _ = proc.communicate()
            step.rc = None
            step.status = f"over budget: killed after {budget:.0f} s (results so far kept)"
        step.seconds = time.monotonic() - t0
        step.tail = output[-3000:]
        log.write(output)
        log.write(f"===== {step.name}: {step.status} in {step.seconds:.1f} s\n")
        log.flush()


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _metric(row: dict, metric: str):
    """runs | pct_bound | x_strongest (every baseline) | x_eager (every eager one) | x_compile | x_<name>."""
    base = row.get("extra", {}).get("baselines_ms", {})
    ms = row.get("ms")
    if metric == "runs":
        return 1.0 if ms else None
    if metric == "pct_bound":
        return row.get("pct_bound")
    if metric == "x_strongest":
        picked = list(base.values())
    elif metric == "x_eager":
        picked = [t for n, t in base.items() if not n.startswith("torch_compile(")]
    elif metric == "x_compile":
        picked = [t for n, t in base.items() if n.startswith("torch_compile(")]
    else:
        picked = [t for n, t in base.items() if n.startswith(metric[2:])]
    return min(picked) / ms if picked and ms else None


def target_table(rows: list[dict]) -> list[str]:
    lines = ["| target | provider | measured | threshold | met |", "|---|---|---|---|---|"]
    for op, shape, prov, metric, thr in TARGETS:
        hits = [r for r in rows if r.get("op") == op and r.get("shape") == shape
                and str(r.get("provider", "")).startswith(prov) and r.get("ms")]
        vals = [(r["provider"], _metric(r, metric)) for r in hits]
        vals = [(p, v) for p, v in vals if v is not None]
        if not vals:
            lines.append(f"| {op} {shape} {metric} | {prov}* | not measured | {thr:g} | - |")
            continue
        for p, v in vals:
            lines.append(f"| {op} {shape} {metric} | {p} | {v:.2f} | {thr:g} | {'yes' if v >= thr else 'NO'} |")
    return lines


def markdown(all_steps: list[Step], rows: list[dict], device: str) -> str:
    out = [f"# vqfast device suite ({device})", "", "| step | status | seconds | budget s |", "|---|---|---|---|"]
    out += [f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.budget_s:.0f} |" for s in all_steps]
    out += ["", "## Targets (issue 13)", "", *target_table(rows), "", "## Results", "",
            "| op | shape | provider | ms | strongest baseline | x strongest | TFLOP/s | GB/s | % H100 bound | note |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r.get("ms"):
            if r.get("outcome") != "passed":
                out.append(f"| {r['test']} | | {r['outcome']} | | | | | | | {r.get('reason', '')[-120:]!r} |")
            continue
        sp = r.get("extra", {}).get("baselines_ms", {})
        strongest = min(sp, key=sp.get) if sp else "-"
        ratio = f"{r['ref_ms'] / r['ms']:.2f}" if r.get("ref_ms") else "-"

        def f(k, fmt=".2f", r=r):
            return format(r[k], fmt) if r.get(k) is not None else "-"
        out.append(f"| {r['op']} | {r['shape']} | {r['provider']} | {r['ms']:.4f} | {strongest} | {ratio} | "
                   f"{f('tflops')} | {f('gbps', '.1f')} | {f('pct_bound', '.1f')} | {r.get('note', '')} |")
    return "\n".join(out) + "\n"


def _collect(argv: list, env: dict) -> tuple[list[str], str]:
    res = subprocess.run([*argv, "--collect-only", "-q"], cwd=ROOT, env=env, capture_output=True, text=True)
    ids = [line.strip() for line in res.stdout.splitlines() if "::" in line]
    return ids, "" if res.returncode in (0, 5) else f"rc {res.returncode}: {(res.stdout + res.stderr)[-800:]}"


def _selected(ids: list[str], argv: list) -> list[str]:
    """The node ids of `ids` that step `argv` runs: its files and its -k expression (pytest's own parser;
    a name matches as a case-insensitive substring of the node id, as -k does for test names)."""
    from _pytest.mark.expression import Expression

    files = [Path(a).resolve() for a in argv if str(a).endswith(".py") and Path(a).is_file()]
    names = {f.name for f in files}
    keep = [i for i in ids if not names or Path(i.split("::")[0]).name in names]
    if "-k" in argv:
        expr = Expression.compile(argv[argv.index("-k") + 1])
        keep = [i for i in keep if expr.evaluate(lambda sub, i=i: sub.lower() in i.lower())]
    return keep


def dry_run(all_steps: list[Step]) -> int:
    """List the steps; check that the named files exist and that pytest collects every step's tests (two
    collection runs at the CUDA shape lists: all benches, and tests/ -m gpu)."""
    problems = []
    total = sum(s.budget_s for s in all_steps)
    print(f"device suite: {len(all_steps)} steps, budgets add up to {total:.0f} s (limit {SUITE_BUDGET_S:.0f} s)")
    if total > SUITE_BUDGET_S:
        problems.append(f"budgets add up to {total:.0f} s > {SUITE_BUDGET_S:.0f} s")
    env = dict(os.environ, VQFAST_BENCH_DRY_COLLECT="1", VQFAST_BENCH_SHAPES="target")   # the CUDA shape list
    env.pop("VQFAST_BENCH_JSONL", None)
    py_test = [sys.executable, "-m", "pytest", f"--rootdir={ROOT}", "-p", "no:cacheprovider"]
    bench_ids, err1 = _collect([*py_test, *(str(ROOT / "bench" / b) for b in BENCHES)], env)
    gpu_ids, err2 = _collect([*py_test, str(ROOT / "tests"), "-m", "gpu"], env)   # every gpu test in tests/
    problems += [f"collection failed, {e}" for e in (err1, err2) if e]
    for s in all_steps:
        env_s = " ".join(f"{k}={v}" for k, v in s.env.items())
        print(f"- {s.name} [{s.budget_s:.0f} s]: {env_s + ' ' if env_s else ''}{shlex.join(map(str, s.argv))}")
        for a in s.argv:
            if str(a).startswith(str(ROOT)) and not str(a).startswith("--") and not Path(a).exists():
                problems.append(f"{s.name}: {a} does not exist")
        if "pytest" in s.argv:
            n = len(_selected(gpu_ids if "gpu" in s.argv else bench_ids, s.argv))
            print(f"    collects {n} tests")
            if n == 0:
                problems.append(f"{s.name}: pytest collects no test")
    if not list((ROOT / ".whl").glob("vqfast-*.whl")):
        print("note: no .whl/vqfast-*.whl here yet; build it with ../shared/tools/gpu-wheels before the run")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "device-suite-out")
    ap.add_argument("--dry-run", action="store_true", help="list and collect the steps, run nothing (CPU CI)")
    ap.add_argument("--only", default="", help="comma-separated step names to run (default: all)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    all_steps = steps(out)
    if args.only:
        keep = set(args.only.split(","))
        all_steps = [s for s in all_steps if s.name in keep or s.name in SETUP_STEPS]
    if args.dry_run:
        return dry_run(all_steps)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_rows.jsonl").unlink(missing_ok=True)
    wall0 = time.monotonic()
    with open(out / "device_suite.log", "w") as log:
        run_steps(all_steps, log)
    rows = read_rows(out / "bench_rows.jsonl")
    env_step = next((s for s in all_steps if s.name == "check_env"), None)
    device = env_step.tail.strip().splitlines()[-1] if env_step and env_step.tail.strip() else "unknown device"
    (out / "device_suite.md").write_text(markdown(all_steps, rows, device))
    (out / "device_suite.json").write_text(json.dumps(
        {"device": device, "wall_s": time.monotonic() - wall0, "budget_s": SUITE_BUDGET_S,
         "steps": [asdict(s) for s in all_steps], "rows": rows}, indent=1, default=str))
    print((out / "device_suite.md").read_text())
    return 0 if all(s.status == "ok" for s in all_steps) else 1


if __name__ == "__main__":
    sys.exit(main())
