#!/usr/bin/env bash
# The device suite in one command (see bench/device_suite.py and the README's "Running the device suite").
# Here, once, from the project root:   ../shared/tools/gpu-wheels        (builds .whl/: vqfast + lpips wheels)
# Then with the device tool:           run(command="bash bench/device_suite.sh", carry=[".whl"], timeout_s=600)
# Results land in $OUT: device_suite.md, device_suite.json, device_suite.log, bench_rows.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec python3 bench/device_suite.py --out "${OUT:-device-suite-out}" "$@"
