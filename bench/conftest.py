"""Benchmark session setup: result table at the end; no CUDA call at import.

VQFAST_BENCH_TABLE=path writes the table at the end; VQFAST_BENCH_JSONL=path appends each test's result
rows (with its node id and outcome) as JSON lines as soon as the test ends, so a run stopped part-way
(the device suite's per-step budgets) keeps what it measured.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
_written = 0


def pytest_runtest_logreport(report):
    global _written
    out = os.environ.get("VQFAST_BENCH_JSONL")
    if not out or not (report.when == "call" or (report.when == "setup" and report.skipped)):
        return
    import benchutil

    rows = benchutil.RESULTS[_written:]
    _written = len(benchutil.RESULTS)
    head = {"test": report.nodeid, "outcome": report.outcome}
    if not report.passed:
        head["reason"] = str(report.longrepr)[-400:]
    with open(out, "a") as f:
        if not rows:
            f.write(json.dumps(head) + "\n")
        for r in rows:
            f.write(json.dumps({**head, **r.__dict__}, default=str) + "\n")


def pytest_terminal_summary(terminalreporter):
    import benchutil

    if benchutil.RESULTS:
        terminalreporter.write_sep("=", "vqfast benchmark table (x ref = reference_ms / provider_ms)")
        terminalreporter.write_line(benchutil.format_table())
        out = os.environ.get("VQFAST_BENCH_TABLE")
        if out:
            with open(out, "w") as f:
                f.write(benchutil.format_table() + "\n")
