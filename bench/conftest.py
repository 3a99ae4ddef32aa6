"""Benchmark session setup: result table at the end; no CUDA call at import."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def pytest_terminal_summary(terminalreporter):
    import benchutil

    if benchutil.RESULTS:
        terminalreporter.write_sep("=", "vqfast benchmark table (x ref = reference_ms / provider_ms)")
        terminalreporter.write_line(benchutil.format_table())
        out = os.environ.get("VQFAST_BENCH_TABLE")
        if out:
            with open(out, "w") as f:
                f.write(benchutil.format_table() + "\n")
