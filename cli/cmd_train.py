"""``train``: fit a head on cached features, select on Val, write a run directory."""
from __future__ import annotations

import argparse
import logging

from cli.common import EXIT_OK, UsageError, add_workdir, say

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a head on cached features (fit on Train, select on Val)",
        description="Fits on Train, selects hyper-parameters on Val, reports Val scores with a "
                    "bootstrap 95 %% CI and writes Test predictions in the challenge submission "
                    "format to WORKDIR/runs/<run-name>/.")
    add_workdir(p)
    p.add_argument("--task", required=True, metavar="TASK[,TASK..]",
                   help="avb-high, avb-two, avb-culture, avb-type, country, exvo; for csv corpora "
                        "regress:COL[,COL..] or classify:COL; several tasks separated by commas")
    p.add_argument("--features", nargs="+", metavar="SPEC|KEY",
                   help="feature sets to use (concatenated): spec, name or key as shown by `list`")
    p.add_argument("--head", help="head: ridge, svr, logreg, svc, xgb (classical) or a torch head")
    p.add_argument("--layer", type=int, help="SSL hidden-state index (default: the last stored)")
    p.add_argument("--pooling", default="mean", help="SSL pooling (default: mean)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds; mean and std are reported")
    p.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples for the Val CI")
    p.add_argument("--run-name", help="folder name under WORKDIR/runs (default: settings + time)")
    p.add_argument("--jobs", type=int, default=1, help="CPU threads for heads that use them")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from data.corpus import CorpusError
    from data.tasks import TaskError
    from heads.experiment import ExperimentConfig, run_experiment
    from heads.features import FeatureError

    if not args.features or not args.head:
        raise UsageError("train needs --features and --head")
    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    cfg = ExperimentConfig(workdir=args.workdir, task=args.task, features=tuple(args.features),
                           head=args.head, layer=args.layer, pooling=args.pooling,
                           seeds=args.seeds, n_boot=args.n_boot, run_name=args.run_name,
                           n_jobs=args.jobs)
    try:
        result = run_experiment(cfg)
    except (FeatureError, TaskError, CorpusError, FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    print_result(result.metrics, result.run_dir)
    return EXIT_OK


def print_result(metrics: dict, run_dir) -> None:
    for task, entry in metrics["tasks"].items():
        v = entry["val"]
        ci = v.get("ci") or [float("nan")] * 2
        std = f" ± {v['score_std']:.4f}" if v.get("score_std") else ""
        say(f"{task}: Val {v['metric']} = {v['score']:.4f}{std} (95% CI {ci[0]:.4f} to {ci[1]:.4f}, "
            f"n={v.get('n')})")
        for tname, t in v.get("targets", {}).items():
            if len(v.get("targets", {})) > 1:
                say(f"  {tname}: {t['metric']} = {t['score']:.4f}")
    say(f"run written to {run_dir}")
