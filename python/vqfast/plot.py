"""Draw training curves from a run directory's ``epochs.jsonl`` (epoch means) or ``metrics.jsonl`` to a PNG.

    python -m vqfast.plot RUN_DIR [--file epochs|metrics] [--keys d_loss,g_loss,...] [--out curves.png]

One panel per scalar. Uses matplotlib when installed, else a small PIL renderer (no extra dependency).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

log = logging.getLogger("vqfast")

DEFAULT_KEYS = ("d_loss", "g_loss", "g_adv", "sty", "ds", "cyc", "id", "r1", "lambda_ds")
_SKIP = {"step", "epoch", "steps", "partial", "time"}


class PlotError(ValueError):
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
    """{key: [(x, y), ...]} for the requested keys (default: the StarGAN scalars present, else every numeric key)."""
    present = [k for r in records for k in r if k not in _SKIP and _number(r[k]) is not None]
    present = list(dict.fromkeys(present))
    if keys:
        missing = [k for k in keys if k not in present]
        if missing:
            raise PlotError(f"keys {missing} not found; available: {', '.join(present) or 'none'}")
        chosen = list(keys)
    else:
        chosen = [k for k in DEFAULT_KEYS if k in present] or present
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


def _plot_matplotlib(series: dict[str, list], x_label: str, out: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(series)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, (k, pts) in zip(axes.flat, series.items(), strict=True):
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


def _plot_pil(series: dict[str, list], x_label: str, out: Path, title: str) -> None:
    from PIL import Image, ImageDraw

    n = len(series)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    pw, ph, top = 360, 240, 28
    img = Image.new("RGB", (cols * pw, rows * ph + top), "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 8), title, fill="black")
    for i, (k, pts) in enumerate(series.items()):
        r, c = divmod(i, cols)
        x0, y0 = c * pw + 50, top + r * ph + 22
        w, h = pw - 70, ph - 60
        draw.rectangle([x0, y0, x0 + w, y0 + h], outline="gray")
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        xmin, xmax = min(xs), max(xs)
        ymin, ymax = min(ys), max(ys)
        xspan, yspan = (xmax - xmin) or 1.0, (ymax - ymin) or 1.0
        coords = [(x0 + (x - xmin) / xspan * w, y0 + h - (y - ymin) / yspan * h) for x, y in pts]
        if len(coords) > 1:
            draw.line(coords, fill=(31, 119, 180), width=2)
        for cx, cy in coords if len(coords) < 30 else []:
            draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=(31, 119, 180))
        draw.text((x0, y0 - 16), k, fill="black")
        draw.text((x0 - 46, y0 - 4), f"{ymax:.3g}", fill="black")
        draw.text((x0 - 46, y0 + h - 8), f"{ymin:.3g}", fill="black")
        draw.text((x0, y0 + h + 4), f"{xmin:g}", fill="black")
        draw.text((x0 + w - 40, y0 + h + 4), f"{xmax:g} {x_label}", fill="black")
    img.save(out, format="PNG")


def _auto_file(run_dir: Path) -> str:
    """epochs.jsonl once a run has a few epochs (smooth means), else metrics.jsonl (per logged step)."""
    epochs = run_dir / "epochs.jsonl"
    if epochs.is_file() and len(read_jsonl(epochs)) >= 3:
        return "epochs"
    return "metrics" if (run_dir / "metrics.jsonl").is_file() else "epochs"


def plot_run(source: str | Path, *, file: str = "auto", keys: Optional[Sequence[str]] = None,
             out: Optional[str | Path] = None, backend: str = "auto") -> Path:
    """Plot ``source`` (a run dir or a .jsonl file) to ``out`` (default ``<run>/<file>_curves.png``).

    file="auto" picks epochs.jsonl when the run has >= 3 epochs, else metrics.jsonl; every numeric scalar
    present is drawn (losses, lr, codebook usage/perplexity, PSNR) unless ``keys`` names some."""
    if file not in ("auto", "epochs", "metrics"):
        raise PlotError(f"file={file!r}; allowed: 'auto', 'epochs', 'metrics'")
    if file == "auto":
        file = _auto_file(Path(source)) if Path(source).is_dir() else "metrics"
    if backend not in ("auto", "matplotlib", "pil"):
        raise PlotError(f"backend={backend!r}; allowed: 'auto', 'matplotlib', 'pil'")
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
    use_mpl = backend == "matplotlib"
    if backend == "auto":
        try:
            import matplotlib  # noqa: F401
            use_mpl = True
        except ImportError:
            use_mpl = False
    (_plot_matplotlib if use_mpl else _plot_pil)(series, x_key, out, str(path))
    log.info("plotted %d curves from %s to %s (%s)", len(series), path, out, "matplotlib" if use_mpl else "PIL")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vqfast.plot", description=__doc__.splitlines()[0])
    ap.add_argument("source", help="run directory or a .jsonl file")
    ap.add_argument("--file", choices=("auto", "epochs", "metrics"), default="auto",
                    help="which file of the run directory (default: epochs.jsonl once the run has >= 3 epochs, "
                         "else metrics.jsonl)")
    ap.add_argument("--keys", default=None, help="comma-separated scalars (default: the StarGAN losses present)")
    ap.add_argument("--out", default=None, help="output PNG")
    ap.add_argument("--backend", choices=("auto", "matplotlib", "pil"), default="auto")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = plot_run(args.source, file=args.file, keys=args.keys.split(",") if args.keys else None,
                       out=args.out, backend=args.backend)
    except PlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
