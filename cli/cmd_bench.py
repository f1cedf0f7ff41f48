"""``bench NAME``: benchmarks that print one JSON line of measured figures.

Each benchmark module in ``benchmarks/`` has ``add_arguments(parser)`` and
``run(args) -> dict``; ratios are always against a baseline measured in the same run.
"""
from __future__ import annotations

import argparse
import importlib
import json

from cli.common import EXIT_OK, say

BENCHES = {
    "ssl": ("benchmarks.ssl", "SSL extraction: our pipeline vs a naive per-clip loop, probing study"),
    "heads": ("benchmarks.heads", "torch heads: mlp-mtl (uw) and lstm training time"),
    "probe": ("benchmarks.probe", "13-layer x 2-pooling ridge probe on 20,000 clips"),
    "scale": ("benchmarks.scale", "shard + merge vs single process: identity and merge cost per GB"),
    "store": ("benchmarks.store", "store costs (no-op rerun, add a small set, compaction, one-layer "
                                  "read) at 2k/10k clips against reading the bytes once"),
    "finetune-step": ("benchmarks.finetune_step", "one fine-tuning optimiser step (backbone + heads)"),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print one JSON line",
                       description="Benchmarks: " + "; ".join(f"{k}: {v[1]}" for k, v in BENCHES.items()))
    bsub = p.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, (module, text) in BENCHES.items():
        mod = importlib.import_module(module)
        bp = bsub.add_parser(name, help=text, description=text)
        mod.add_arguments(bp)
        bp.set_defaults(func=lambda args, _m=mod: _run(_m, args))


def _run(mod, args: argparse.Namespace) -> int:
    result = mod.run(args)
    say(json.dumps(result, sort_keys=True))
    return EXIT_OK
