"""``probe``: one light head per (layer, pooling) of an SSL feature set; the best layer named."""
from __future__ import annotations

import argparse
import logging
import math

from cli.common import EXIT_OK, UsageError, add_workdir, parse_int_list, say, step_progress
from heads.catalog import head_names

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe", help="layer probing: a head per (layer, pooling) of cached SSL features",
        description="Fits a head on every stored layer and pooling of an SSL feature set "
                    "(cached features only: nothing is extracted), over several seeds. Writes "
                    "WORKDIR/probes/<name>/probe.json, probe.csv (layer x pooling: score, 95 % "
                    "CI, std over seeds) and probe.png (score against layer, one line per "
                    "pooling, CI band), and names the best layer on Val with its Test score (when Test "
                    "has labels); it is starred (*) only when its CI does not overlap the next "
                    "best's. CI: percentile bootstrap over Val clips of the seed-mean score. For ridge, seed 0 fits all of Train and "
                    "chooses alpha on Val; seed k > 0 refits it on a bootstrap resample of Train.")
    add_workdir(p)
    p.add_argument("--features", required=True, metavar="SPEC|KEY",
                   help="an ssl: feature set (spec, name or key as shown by `list`)")
    p.add_argument("--task", required=True,
                   help="one task: avb-high, avb-two, avb-culture, avb-type, country, exvo, "
                        "iemocap4, regress:COL, classify:COL; speaker (speaker identity, UAR; "
                        "each speaker's clips split 3:1:1 into Train/Val/Test); text (a linear "
                        "CTC head per stored frame layer, CER; needs extract --frames-layers and "
                        "the corpus's transcripts)")
    p.add_argument("--head", default="ridge",
                   help="ridge (default, fast path) or any head `train` knows: "
                        f"{', '.join(head_names())} (seeds then change its initialisation)")
    p.add_argument("--poolings", default=None,
                   help="comma-separated poolings, e.g. mean,last (default: every stored one)")
    p.add_argument("--layers", default="all", help="'all' (default) or e.g. 0,6,12")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (default: 1)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap resamples of Val clips for the CI (default: 1000)")
    p.add_argument("--weighted-sum", action="store_true",
                   help="also train a SUPERB-style head on a softmax-weighted sum of all layers "
                        "(torch, CPU) and report / plot the learned layer weights")
    p.add_argument("--epochs", type=int, default=40,
                   help="most epochs of the weighted-sum head and of the text probe's CTC heads "
                        "(early stopping, patience 5)")
    p.add_argument("--name", help="folder name under WORKDIR/probes (default: settings + time)")
    p.add_argument("--jobs", type=int, default=1,
                   help="CPU threads for BLAS / torch (default 1: fastest on a shared machine)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from data.corpus import CorpusError
    from data.tasks import TaskError
    from heads.features import FeatureError
    from heads.probe import ProbeConfig, WeightedSumConfig, run_probe
    from reports.plots import plot_layer_curve, plot_layer_weights

    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    if args.n_boot < 1:
        raise UsageError(f"--n-boot must be at least 1, got {args.n_boot}")
    if args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    layers = parse_int_list(args.layers, "--layers")
    poolings = tuple(p.strip() for p in (args.poolings or "").split(",") if p.strip())
    try:
        cfg = ProbeConfig(workdir=args.workdir, features=args.features, task=args.task,
                          head=args.head, poolings=poolings, layers=layers, seeds=args.seeds,
                          n_boot=args.n_boot, weighted_sum=args.weighted_sum,
                          weighted=WeightedSumConfig(epochs=args.epochs), name=args.name,
                          n_jobs=args.jobs)
        if args.task == "text":
            from heads.probe.text import run_text_probe

            if args.head != "ridge" or args.weighted_sum:
                raise UsageError("probe --task text trains its own linear CTC head per layer; "
                                 "drop --head and --weighted-sum")
            result = run_text_probe(cfg, progress=step_progress("probe", "fit"))
        else:
            result = run_probe(cfg, progress=step_progress("probe", "fit"))
    except (FeatureError, TaskError, CorpusError, FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    s = result.summary
    plots = [plot_layer_curve(s, result.probe_dir / "probe.png")]
    if s.get("weighted_sum"):
        plots.append(plot_layer_weights(s, result.probe_dir / "layer_weights.png"))
    _print_table(s)
    b = s["best"]
    if s.get("split_rule"):
        say(f"split: {s['split_rule']}")
    say(f"best layer: {b['layer']} ({b['pooling']} pooling), Val {s['metric']} = "
        f"{b['score']:.4f} (95% CI {b['ci'][0]:.4f} to {b['ci'][1]:.4f})")
    if "test_score" in b:
        say(f"  that layer on Test: {s['metric']} = {b['test_score']:.4f} (chosen on Val, "
            f"mean over {cfg.seeds} seed(s))")
    nxt = b.get("next")
    if nxt is not None and b.get("separated"):
        say(f"  * its CI does not overlap that of the next best, layer {nxt['layer']} "
            f"({nxt['pooling']}) {_f(nxt['score'])} [{_f(nxt['ci'][0])}, {_f(nxt['ci'][1])}]")
    elif nxt is not None:
        say(f"  not starred: its CI overlaps that of the next best, layer {nxt['layer']} "
            f"({nxt['pooling']}) {_f(nxt['score'])} [{_f(nxt['ci'][0])}, {_f(nxt['ci'][1])}]; "
            f"the data do not separate them")
    for pooling, ws in (s.get("weighted_sum") or {}).items():
        top = sorted(zip(ws["weights"], ws["layers"]), reverse=True)[:3]
        say(f"weighted sum ({pooling}): Val {s['metric']} = {ws['score']:.4f} (95% CI "
            f"{ws['ci'][0]:.4f} to {ws['ci'][1]:.4f}); largest weights: "
            + ", ".join(f"layer {layer} {w:.3f}" for w, layer in top))
    say(f"CI: {s['ci_method']}; std: over {cfg.seeds} seed(s) ({s['seed_meaning']})")
    say(f"written to {result.probe_dir} (probe.json, probe.csv, "
        + ", ".join(p.name for p in plots) + f") in {s['seconds']:.1f} s")
    return EXIT_OK


def _print_table(s: dict) -> None:
    poolings = s["poolings"]
    by = {(r["layer"], r["pooling"]): r for r in s["results"]}
    widths = (9, 20, 7)  # score (+ best mark), CI, std
    head = ["layer"]
    for p in poolings:
        head += [f"{p} {s['metric']}".rjust(widths[0]), "95% CI".center(widths[1]),
                 "std".rjust(widths[2])]
    say("  ".join(head))
    for layer in s["layers"]:
        cells = [str(layer).rjust(5)]
        for p in poolings:
            r = by.get((layer, p))
            if r is None:
                cells += [" " * w for w in widths]
                continue
            best = (layer, p) == (s["best"]["layer"], s["best"]["pooling"])
            mark = "*" if best and s["best"].get("separated") else " "
            cells += [(_f(r["score"]) + mark).rjust(widths[0]),
                      f"[{_f(r['ci'][0])}, {_f(r['ci'][1])}]".center(widths[1]),
                      _f(r["std"]).rjust(widths[2])]
        say("  ".join(cells))


def _f(x: float) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.4f}"
