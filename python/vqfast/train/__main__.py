"""``python -m vqfast.train --config FILE [--resume CKPT|RUN_DIR] [--set key=value [key=value ...]]``.

Also under ``torchrun --nproc_per_node=N -m vqfast.train ...`` (one process per GPU; rank 0 logs and writes).
Exit codes: 0 done (also after SIGTERM/SIGINT: checkpoint written, resume with ``--resume RUN_DIR``),
2 a problem the user can fix (one line on stderr naming the key, file or path), 3 stopped after
train.max_bad_steps consecutive non-finite steps.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from vqfast.errors import NonFiniteError, VQFastError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vqfast.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True,
                   help="vqfast YAML, a seed-002 param.json, or a shipped config name (e.g. quickstart)")
    p.add_argument("--resume", default=None,
                   help="checkpoint file, or run directory (newest checkpoint that loads; falls back past bad ones)")
    p.add_argument("--set", dest="overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config values, e.g. --set train.max_steps=2 data.size=64 (several pairs per "
                        "flag; the flag may repeat)")
    args = p.parse_args(argv)
    args.overrides = [kv for group in args.overrides for kv in group]
    return args


def _console(rank: int) -> logging.Handler | None:
    """Log lines on stderr for this run (rank-aware: only rank 0 chats); None when the caller set up logging."""
    logger = logging.getLogger("vqfast")
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    if logger.handlers and not all(isinstance(h, logging.NullHandler) for h in logger.handlers):
        return None
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[vqfast] %(message)s"))
    logger.addHandler(handler)
    return handler


def _one_line(exc: Exception) -> str:
    """A collected multi-problem message on one line: 'invalid config F: a; b; c'."""
    return str(exc).replace(":\n  - ", ": ").replace("\n  - ", "; ").replace("\n", " ")


def main(argv=None) -> int:
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0") or 0)
    console = _console(rank)
    from vqfast.train import load_config, trainer

    try:
        run = trainer(load_config(args.config, args.overrides), resume=args.resume)
        summary = run.summary(run.fit())
    except NonFiniteError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 3
    except VQFastError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if console is not None:
            logging.getLogger("vqfast").removeHandler(console)
    if rank == 0:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
