"""``compare``: a paired significance test between two runs on the same clips."""
from __future__ import annotations

import argparse
import json

from cli.common import EXIT_OK, UsageError, say


def add_parser(sub: argparse._SubParsersAction) -> None:
    from heads.compare import TESTS

    p = sub.add_parser(
        "compare", help="paired significance test between two runs (bootstrap or permutation)",
        description="Scores two runs' per-clip predictions (predictions_val_<task>.csv, and Test "
                    "when both runs have Test predictions and the corpus Test labels) on the same "
                    "clips, per task and per target, and prints each run's score, the difference "
                    "A - B, its paired-bootstrap CI and a two-sided p-value for 'no difference': "
                    "from the paired bootstrap shifted to the null (default), or from swapping "
                    "the two runs' predictions per clip (--test permutation; exact when 2^n <= "
                    "--resamples). Refuses runs of other tasks or clips. A run's predictions are "
                    "those train wrote (with --seeds N, the median-scoring seed's).")
    p.add_argument("run_a", metavar="RUN_A", help="a run folder (WORKDIR/runs/<run>), or a run "
                                                  "name with --workdir")
    p.add_argument("run_b", metavar="RUN_B", help="the other run, likewise")
    p.add_argument("--workdir", metavar="DIR", help="where run names are looked up (WORKDIR/runs/)")
    p.add_argument("--test", default="bootstrap", choices=TESTS,
                   help="bootstrap (default: resamples clips jointly) or permutation (swaps the "
                        "runs' predictions per clip)")
    p.add_argument("--resamples", type=int, default=5000, metavar="B",
                   help="bootstrap resamples / random swaps (default 5000)")
    p.add_argument("--level", type=float, default=0.95, metavar="L",
                   help="level of the CI of the difference (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=run)


def _f(x: float) -> str:
    return f"{x:.4f}" if x == x else "nan"


def run(args: argparse.Namespace) -> int:
    from heads.compare import CompareError, compare_runs, open_run

    try:
        a, b = open_run(args.run_a, args.workdir), open_run(args.run_b, args.workdir)
        result = compare_runs(a, b, test=args.test, resamples=args.resamples, seed=args.seed,
                              level=args.level)
    except (CompareError, FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        say(json.dumps(result.to_json(), indent=2))
        return EXIT_OK
    say(f"A = {a.name} ({a.path})")
    say(f"B = {b.name} ({b.path})")
    pct = f"{100 * result.level:g}%"
    for r in result.rows:
        what = r.task if r.part is None else f"  {r.task}/{r.part}"
        arrow = "higher is better" if r.greater_is_better else "lower is better"
        verdict = {"A": ", A better", "B": ", B better", None: ""}[r.better]
        say(f"{r.split} {what}: {r.metric} ({arrow}, n={r.n}) A {_f(r.score_a)}  B {_f(r.score_b)}  "
            f"A-B {r.diff:+.4f} ({pct} CI {_f(r.ci[0])} to {_f(r.ci[1])})  p = {r.p:.4g} "
            f"[{r.test}, {r.resamples}]{verdict}")
    for note in result.notes:
        say(f"note: {note}")
    return EXIT_OK
