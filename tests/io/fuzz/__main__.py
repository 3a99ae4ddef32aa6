"""Long fuzz campaign: ``python tests/io/fuzz --minutes 20 [--seed N] [--report fuzz.json]``
(from the repository root, with the checkout's ``python/`` on ``PYTHONPATH``). Seeds and every
hand-crafted regression case first, then the structured mutators round-robin until the time is
up. Exit status 1 if any input crashed, hung, blew the memory cap, ran code or escaped with
another exception type."""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

if __package__ in (None, ""):  # run as a directory: make `fuzz` importable as a package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fuzz.cases import fixed_cases, generators  # noqa: E402
from fuzz.runner import BAD, run_case, summarise  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tests/io/fuzz", description=__doc__)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per input (SIGKILL after)")
    ap.add_argument("--mem-gib", type=float, default=4.0, help="address space a child may add (RLIMIT_AS)")
    ap.add_argument("--batch", type=int, default=20, help="inputs generated per mutator turn")
    ap.add_argument("--report", default=None, help="write every non-ok result and the table as JSON")
    ap.add_argument("--skip-fixed", action="store_true", help="only the random mutators")
    args = ap.parse_args(argv)
    import torch  # noqa: F401 - imported once in the parent; children are forked

    import vqfast.io  # noqa: F401

    rnd = random.Random(args.seed)
    deadline = time.monotonic() + args.minutes * 60
    results = []

    def run(case) -> None:
        r = run_case(case, timeout_s=args.timeout, mem_bytes=int(args.mem_gib * (1 << 30)))
        results.append(r)
        if r.outcome in BAD:
            print(f"[{r.outcome}] {r.case.category}: {r.case.name} ({r.stage}): {r.detail[:300]}", flush=True)

    if not args.skip_fixed:
        for case in fixed_cases():
            run(case)
    gens = generators()
    names = sorted(gens)
    turn = 0
    while time.monotonic() < deadline:
        cat = names[turn % len(names)]
        turn += 1
        for case in gens[cat](rnd, args.batch):
            if time.monotonic() >= deadline:
                break
            run(case)
    table = summarise(results)
    bad = [r for r in results if r.outcome in BAD]
    print(f"{len(results)} inputs, {len(bad)} bad", flush=True)
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"table": table, "bad": [r.as_dict() for r in bad],
                       "errors": [r.as_dict() for r in results if r.outcome == "ok-error"][:2000]}, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
