"""Draw training curves from a run directory's ``epochs.jsonl`` (epoch means) or ``metrics.jsonl`` to a PNG.

    python -m vqfast.plot RUN_DIR [--file epochs|metrics] [--keys train/total_loss,val/psnr,...] [--out curves.png]

One matplotlib panel per scalar (every loss, lr, codebook usage, validation metric the run logged, unless
``--keys`` names some; throughput is left out).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

from vqfast.errors import VQFastError

log = logging.getLogger("vqfast")

_SKIP = {"step", "epoch", "steps", "partial", "time", "samples_per_s", "steps_per_s", "stopped_by_signal"}


class PlotError(VQFastError, ValueError):
    """The run directory / file holds nothing to plot, or a requested key is absent."""


def read_jsonl(path: Path) -> list[dict]:
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise PlotError(f"{path}:{n}: not JSON: {exc}") from exc
    return records


def _number(v) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def collect_series(records: Sequence[dict], keys: Optional[Sequence[str]], x_key: str) -> dict[str, list]:
    """{key: [(x, y), ...]} for the requested keys (default: every numeric scalar present)."""
    present = [k for r in records for k in r if k not in _SKIP and _number(r[k]) is not None]
    present = list(dict.fromkeys(present))
    if keys:
        missing = [k for k in keys if k not in present]
        if missing:
            raise PlotError(f"keys {missing} not found; available: {', '.join(present) or 'none'}")
        chosen = list(keys)
    else:
        chosen = present
    series: dict[str, list] = {}
    for i, r in enumerate(records):
        x = _number(r.get(x_key))
        x = float(i) if x is None else x
        for k in chosen:
            y = _number(r.get(k))
            if y is not None:
                series.setdefault(k, []).append((x, y))
    if not series:
        raise PlotError("no numeric values to plot")
    return series


def _plot(series: dict[str, list], x_label: str, out: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(series)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, (k, pts) in zip(axes.flat, series.items(), strict=False):  # the grid may have empty panels
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None, lw=1.2)
        ax.set_title(k)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _auto_file(run_dir: Path) -> str:
    """epochs.jsonl once a run has a few epochs (smooth means), else metrics.jsonl (per logged step)."""
    epochs = run_dir / "epochs.jsonl"
    if epochs.is_file() and len(read_jsonl(epochs)) >= 3:
        return "epochs"
    return "metrics" if (run_dir / "metrics.jsonl").is_file() else "epochs"


def plot_run(source: str | Path, *, file: str = "auto", keys: Optional[Sequence[str]] = None,
             out: Optional[str | Path] = None) -> Path:
    """Plot ``source`` (a run dir or a .jsonl file) to ``out`` (default ``<run>/<file>_curves.png``).

    file="auto" picks epochs.jsonl when the run has >= 3 epochs, else metrics.jsonl; every numeric scalar
    present is drawn (losses, lr, codebook usage/perplexity, PSNR) unless ``keys`` names some."""
    if file not in ("auto", "epochs", "metrics"):
        raise PlotError(f"file={file!r}; allowed: 'auto', 'epochs', 'metrics'")
    if file == "auto":
        file = _auto_file(Path(source)) if Path(source).is_dir() else "metrics"
    src = Path(source)
    path = src if src.is_file() else src / f"{file}.jsonl"
    if not path.is_file():
        raise PlotError(f"{path} does not exist (give a run directory holding {file}.jsonl, or a .jsonl file)")
    records = read_jsonl(path)
    if not records:
        raise PlotError(f"{path} is empty")
    x_key = "epoch" if path.stem.startswith("epochs") else "step"
    series = collect_series(records, keys, x_key)
    out = Path(out) if out else path.with_name(f"{path.stem}_curves.png")
    _plot(series, x_key, out, str(path))
    log.info("plotted %d curves from %s to %s", len(series), path, out)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vqfast.plot", description=__doc__.splitlines()[0])
    ap.add_argument("source", help="run directory or a .jsonl file")
    ap.add_argument("--file", choices=("auto", "epochs", "metrics"), default="auto",
                    help="which file of the run directory (default: epochs.jsonl once the run has >= 3 epochs, "
                         "else metrics.jsonl)")
    ap.add_argument("--keys", default=None, help="comma-separated scalars (default: every scalar logged)")
    ap.add_argument("--out", default=None, help="output PNG")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = plot_run(args.source, file=args.file, keys=args.keys.split(",") if args.keys else None, out=args.out)
    except PlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
