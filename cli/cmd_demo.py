"""``demo``: the whole pipeline on a generated corpus, in a few minutes on two cores."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from cli.common import EXIT_OK, say

# (task, head, features) trained by the demo
DEMO_RUNS = [
    ("avb-high", "ridge", ("opensmile:eGeMAPSv02",)),
    ("avb-high", "ridge", ("opensmile:ComParE_2016",)),
    ("avb-high", "xgb", ("opensmile:eGeMAPSv02",)),
    ("avb-two", "ridge", ("opensmile:eGeMAPSv02",)),
    ("avb-type", "logreg", ("opensmile:eGeMAPSv02",)),
    ("avb-type", "xgb", ("opensmile:eGeMAPSv02",)),
    ("exvo", "ridge", ("opensmile:eGeMAPSv02",)),
    ("exvo", "logreg", ("opensmile:eGeMAPSv02",)),
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on a built-in demo corpus",
                       description="Generates a demo corpus in the A-VB layout (labels are known "
                                   "functions of the sound), extracts openSMILE ComParE_2016 and "
                                   "eGeMAPSv02, trains ridge / logreg / xgb heads and writes the report.")
    p.add_argument("--workdir", default="runs/demo", metavar="DIR",
                   help="where the corpus, store, runs and report go (default: runs/demo)")
    p.add_argument("--clips", type=int, default=320, help="number of demo clips (default: 320)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default: 0)")
    p.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 2),
                   help="extraction processes (default: all cores)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli import cmd_extract, cmd_report, cmd_train
    from data.demo import make_demo_corpus

    t0 = time.perf_counter()
    wd = Path(args.workdir)
    corpus_dir = wd / "corpus"
    if not (corpus_dir / "labels").is_dir():
        say(f"generating {args.clips} demo clips into {corpus_dir}")
        make_demo_corpus(corpus_dir, n_clips=args.clips, seed=args.seed)
    ns = argparse.Namespace
    rc = cmd_extract.run(ns(corpus=str(corpus_dir), layout="avb", labels=None, workdir=str(wd),
                            features=["opensmile:eGeMAPSv02", "opensmile:ComParE_2016"],
                            workers=args.workers, level="functionals", layers="all",
                            poolings="mean,last", frames_layers="", dtype="float16",
                            device="auto", batch_seconds=64.0, shard=None, flush_rows=256,
                            no_progress=False))
    for task, head, feats in DEMO_RUNS:
        name = f"demo-{task}-{head}-{feats[0].split(':')[1]}"
        cmd_train.run(ns(workdir=str(wd), task=task, features=list(feats), head=head, layer=None,
                         pooling="mean", seeds=1, n_boot=200, run_name=name, jobs=1))
    cmd_report.run(ns(workdir=str(wd)))
    say(f"demo finished in {time.perf_counter() - t0:.0f} s; open {wd / 'report.md'}")
    return rc or EXIT_OK
