"""``python -m vqfast.train --config FILE [--resume CKPT|RUN_DIR] [--set key=value ...]``.

Also under ``torchrun --nproc_per_node=N -m vqfast.train ...`` (one process per GPU; rank 0 logs and writes).
Exit codes: 0 done (also after SIGTERM/SIGINT: checkpoint written, resume with ``--resume RUN_DIR``),
2 bad config/checkpoint, 3 stopped after train.max_bad_steps consecutive non-finite steps.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from vqfast.train.errors import CheckpointError, ConfigError, FamilyNotImplementedError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vqfast.train", description=__doc__)
    p.add_argument("--config", required=True, help="vqfast YAML, seed-002 param.json, or a shipped config name")
    p.add_argument("--resume", default=None,
                   help="checkpoint file, or run directory (newest checkpoint that loads; falls back past bad ones)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=2 (repeatable)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logger = logging.getLogger("vqfast")
    if not logger.handlers or all(isinstance(h, logging.NullHandler) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[vqfast] %(message)s"))
        logger.addHandler(handler)
    rank = int(os.environ.get("RANK", "0") or 0)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)  # rank-aware: only rank 0 chats
    from vqfast.train.engine import train
    from vqfast.train.guard import NonFiniteError
    from vqfast.train.loading import load_config

    try:
        cfg = load_config(args.config, args.overrides)
        last = train(cfg, resume=args.resume)
    except (ConfigError, CheckpointError, FamilyNotImplementedError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if rank != 0:
        return 0
    print(json.dumps({"run_dir": cfg.run_dir, **{k: v for k, v in last.items()
                                                   if k in ("step", "train/total_loss", "train/rec_loss", "val/psnr")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
